// seqlab._core.linear_forward / linear_backward.
#include <limits>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/linear.hpp"

namespace seqlab::bind {

namespace {

struct LinearArgs {
  py::array_t<float, py::array::c_style> x, w;
  std::size_t M, K, N;
};

LinearArgs check_linear(const py::handle& x_obj, const py::handle& w_obj) {
  auto w = require<float>(w_obj, "weight", {-1, -1});
  auto x = require_nd<float>(x_obj, "input", 1);
  const py::ssize_t K = w.shape(1);
  if (x.shape(x.ndim() - 1) != K)
    throw py::value_error("input: expected last dimension " + std::to_string(K) +
                          " (in_features of weight " + shape_str(w) + "), got shape " + shape_str(x));
  const std::size_t M = K > 0 ? static_cast<std::size_t>(x.size() / K) : [&] {
    std::size_t m = 1;
    for (py::ssize_t i = 0; i + 1 < x.ndim(); ++i) m *= static_cast<std::size_t>(x.shape(i));
    return m;
  }();
  const auto N = static_cast<std::size_t>(w.shape(0));
  constexpr std::size_t kMaxDim = static_cast<std::size_t>(std::numeric_limits<int>::max());
  if (M > kMaxDim || N > kMaxDim || static_cast<std::size_t>(K) > kMaxDim)
    throw py::value_error("input: " + std::to_string(M) + " rows x " + std::to_string(K) +
                          " features exceeds the BLAS limit of 2^31 - 1 per dimension");
  return {x, w, M, static_cast<std::size_t>(K), N};
}

}  // namespace

void bind_linear(py::module_& m) {
  m.def(
      "linear_forward",
      [](const py::handle& x_obj, const py::handle& w_obj, const py::object& b_obj) {
        auto a = check_linear(x_obj, w_obj);
        const float* bias = nullptr;
        py::array_t<float, py::array::c_style> b;
        if (!b_obj.is_none()) {
          b = require<float>(b_obj, "bias", {static_cast<py::ssize_t>(a.N)});
          bias = b.data();
        }
        py::array_t<float> y(shape_with_last(a.x, static_cast<py::ssize_t>(a.N)));
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          linear_forward(a.x.data(), a.w.data(), bias, yp, a.M, a.K, a.N);
        }
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(),
      "y = input @ weight.T + bias. input (*, K) float32, weight (N, K), bias (N,) or None -> (*, N).");

  m.def(
      "linear_backward",
      [](const py::handle& gy_obj, const py::handle& x_obj, const py::handle& w_obj,
         const py::object& gw_obj, const py::object& gb_obj, bool need_grad_input) -> py::object {
        auto a = check_linear(x_obj, w_obj);
        auto gy = require_nd<float>(gy_obj, "grad_output", 1);
        auto expected = shape_with_last(a.x, static_cast<py::ssize_t>(a.N));
        bool ok = gy.ndim() == static_cast<py::ssize_t>(expected.size());
        for (py::ssize_t i = 0; ok && i < gy.ndim(); ++i) ok = gy.shape(i) == expected[i];
        if (!ok) {
          py::array_t<float> shape_of(expected);
          throw py::value_error("grad_output: expected shape " + shape_str(shape_of) + ", got " +
                                shape_str(gy));
        }
        float* gw = nullptr;
        float* gb = nullptr;
        py::array_t<float, py::array::c_style> gwa, gba;
        if (!gw_obj.is_none()) {
          gwa = require_writeable<float>(gw_obj, "grad_weight",
                                         {static_cast<py::ssize_t>(a.N), static_cast<py::ssize_t>(a.K)});
          gw = gwa.mutable_data();
        }
        if (!gb_obj.is_none()) {
          gba = require_writeable<float>(gb_obj, "grad_bias", {static_cast<py::ssize_t>(a.N)});
          gb = gba.mutable_data();
        }
        py::array_t<float> gx;
        float* gxp = nullptr;
        if (need_grad_input) {
          gx = py::array_t<float>(std::vector<py::ssize_t>(a.x.shape(), a.x.shape() + a.x.ndim()));
          gxp = gx.mutable_data();
        }
        {
          py::gil_scoped_release release;
          linear_backward(gy.data(), a.x.data(), a.w.data(), gxp, gw, gb, a.M, a.K, a.N);
        }
        if (!need_grad_input) return py::none();
        return std::move(gx);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_weight") = py::none(),
      py::arg("grad_bias") = py::none(), py::arg("need_grad_input") = true,
      "Backward of linear_forward: returns grad_input (*, K) (or None) and ACCUMULATES "
      "grad_weight (N, K) and grad_bias (N,) in place when given.");
}

}  // namespace seqlab::bind
