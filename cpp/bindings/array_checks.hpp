// Checks for arrays of any rank (dense layers flatten leading dimensions), built on
// checks.hpp's dtype messages. Every error names the argument and the shapes seen.
#pragma once
#include <string>
#include <vector>

#include "checks.hpp"

namespace seqlab::bind {

// A C-contiguous array of dtype T with at least min_ndim dimensions.
template <typename T>
py::array_t<T, py::array::c_style> require_nd(const py::handle& obj, const char* name,
                                              py::ssize_t min_ndim) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array of " + dtype_name<T>() +
                         ", got " + std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<T>>(a) || a.dtype().itemsize() != sizeof(T))
    throw py::type_error(std::string(name) + ": expected dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() < min_ndim)
    throw py::value_error(std::string(name) + ": expected at least " + std::to_string(min_ndim) +
                          " dimension(s), got shape " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": array of shape " + shape_str(a) +
                          " is not C-contiguous (pass np.ascontiguousarray(...))");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

// Same shape as `ref` (named ref_name in the message).
inline void require_same_shape(const py::array& a, const char* name, const py::array& ref,
                               const char* ref_name) {
  bool ok = a.ndim() == ref.ndim();
  for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == ref.shape(i);
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(ref) + " (that of " +
                          ref_name + "), got " + shape_str(a));
}

inline void require_writeable_array(const py::array& a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
}

// The shape of `a` with its last dimension replaced by `last`.
inline std::vector<py::ssize_t> shape_with_last(const py::array& a, py::ssize_t last) {
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  shape.back() = last;
  return shape;
}

}  // namespace seqlab::bind
