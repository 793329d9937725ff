// seqlab._core.linear_forward / linear_backward.
#include <limits>
#include <string>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
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

Activation parse_activation(const std::string& name) {
  if (name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_tanh") return Activation::kGeluTanh;
  throw py::value_error("activation: expected 'none', 'relu', 'gelu' or 'gelu_tanh', got '" + name + "'");
}

}  // namespace

void bind_linear(py::module_& m) {
  m.def(
      "linear_forward",
      [](const py::handle& x_obj, const py::handle& w_obj, const py::object& b_obj, const std::string& activation,
         const py::object& pre_obj) {
        const Activation act = parse_activation(activation);
        auto a = check_linear(x_obj, w_obj);
        const float* bias = nullptr;
        py::array_t<float, py::array::c_style> b;
        if (!b_obj.is_none()) {
          b = require<float>(b_obj, "bias", {static_cast<py::ssize_t>(a.N)});
          bias = b.data();
        }
        py::array_t<float> y(shape_with_last(a.x, static_cast<py::ssize_t>(a.N)));
        float* pre = nullptr;
        py::array_t<float, py::array::c_style> pre_arr;
        if (!pre_obj.is_none()) {
          pre_arr = require_nd<float>(pre_obj, "pre", 1);
          require_same_shape(pre_arr, "pre", y, "the output");
          require_writeable_array(pre_arr, "pre");
          pre = pre_arr.mutable_data();
        }
        if ((act == Activation::kGelu || act == Activation::kGeluTanh) && pre == nullptr)
          throw py::value_error("pre: gelu's backward needs the pre-activation; pass an output array");
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().linear_forward(a.x.data(), a.w.data(), bias, yp, a.M, a.K, a.N, act, pre);
        }
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = "none",
      py::arg("pre") = py::none(),
      "y = act(input @ weight.T + bias). input (*, K) float32, weight (N, K), bias (N,) or None -> (*, N).\n"
      "activation: 'none', 'relu', 'gelu' (exact) or 'gelu_tanh'. pre (*, N), written in place, receives\n"
      "input @ weight.T + bias (required for gelu, whose backward needs it).");

  m.def(
      "linear_backward",
      [](const py::handle& gy_obj, const py::handle& x_obj, const py::handle& w_obj,
         const py::object& gw_obj, const py::object& gb_obj, bool need_grad_input, const std::string& activation,
         const py::object& saved_obj) -> py::object {
        const Activation act = parse_activation(activation);
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
        const float* saved = nullptr;
        py::array_t<float, py::array::c_style> saved_arr;
        if (act != Activation::kNone) {
          if (saved_obj.is_none())
            throw py::value_error("saved: the activation's backward needs the forward's output (relu) or "
                                  "pre-activation (gelu)");
          saved_arr = require_nd<float>(saved_obj, "saved", 1);
          require_same_shape(saved_arr, "saved", gy, "grad_output");
          saved = saved_arr.data();
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
          kernels().linear_backward(gy.data(), a.x.data(), a.w.data(), gxp, gw, gb, a.M, a.K, a.N, act, saved);
        }
        if (!need_grad_input) return py::none();
        return std::move(gx);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_weight") = py::none(),
      py::arg("grad_bias") = py::none(), py::arg("need_grad_input") = true, py::arg("activation") = "none",
      py::arg("saved") = py::none(),
      "Backward of linear_forward: returns grad_input (*, K) (or None) and ACCUMULATES "
      "grad_weight (N, K) and grad_bias (N,) in place when given. With an activation, saved is\n"
      "the forward's output (relu) or its pre array (gelu).");
}

}  // namespace seqlab::bind
