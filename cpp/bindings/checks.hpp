// Argument checks shared by the bindings: dtype, rank, shape, contiguity and
// finiteness, raising ValueError/TypeError that name the argument and the
// shapes seen and expected. No kernel logic lives here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

namespace seqlab::bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) os << ",";
  os << ")";
  return os.str();
}

// Expected shape: -1 means any size.
inline std::string expected_str(std::initializer_list<py::ssize_t> shape) {
  std::ostringstream os;
  os << "(";
  std::size_t i = 0;
  for (auto d : shape) {
    os << (i++ ? ", " : "");
    if (d < 0) os << "*"; else os << d;
  }
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

template <typename T>
const char* dtype_name();
template <> inline const char* dtype_name<float>() { return "float32"; }
template <> inline const char* dtype_name<std::int64_t>() { return "int64"; }
template <> inline const char* dtype_name<std::uint8_t>() { return "uint8"; }

// Checks that `obj` is a C-contiguous numpy array of dtype T and the given shape;
// returns it as array_t<T> (no copy).
template <typename T>
py::array_t<T, py::array::c_style> require(const py::handle& obj, const char* name,
                                           std::initializer_list<py::ssize_t> shape) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array of " + dtype_name<T>() +
                         ", got " + std::string(Py_TYPE(obj.ptr())->tp_name));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<T>>(a) || a.dtype().itemsize() != sizeof(T))
    throw py::type_error(std::string(name) + ": expected dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(a.dtype())));
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  if (ok) {
    py::ssize_t i = 0;
    for (auto d : shape) {
      if (d >= 0 && a.shape(i) != d) ok = false;
      ++i;
    }
  }
  if (!ok)
    throw py::value_error(std::string(name) + ": expected shape " + expected_str(shape) +
                          ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": array of shape " + shape_str(a) +
                          " is not C-contiguous (pass np.ascontiguousarray(...))");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

// Same as require<T>, and also checks the buffer is writeable (for gradients
// accumulated in place).
template <typename T>
py::array_t<T, py::array::c_style> require_writeable(const py::handle& obj, const char* name,
                                                     std::initializer_list<py::ssize_t> shape) {
  auto a = require<T>(obj, name, shape);
  if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return a;
}

// Raises ValueError naming `name` if any element is NaN or infinite.
inline void require_finite(const py::array_t<float, py::array::c_style>& a, const char* name) {
  const float* p = a.data();
  const py::ssize_t n = a.size();
  float acc = 0.0f;
  for (py::ssize_t i = 0; i < n; ++i) acc += p[i] * 0.0f;  // NaN/Inf propagate, finite give 0
  if (acc != 0.0f || std::isnan(acc)) {
    for (py::ssize_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i]))
        throw py::value_error(std::string(name) + ": contains a non-finite value (" +
                              std::to_string(p[i]) + ") at flat index " + std::to_string(i));
  }
}

}  // namespace seqlab::bind
