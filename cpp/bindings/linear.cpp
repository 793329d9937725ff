// seqlab._core.linear_forward / linear_backward.
#include <limits>
#include <stdexcept>
#include <string>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/cpu_dispatch.hpp"
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

// The kernels of the GEMM precision asked for: fp32, or bf16 operands with fp32
// accumulation where the selected level has them.
struct LinearKernels {
  decltype(Kernels::linear_forward) forward;
  decltype(Kernels::linear_backward) backward;
};

LinearKernels linear_kernels(bool bf16) {
  const Kernels& k = kernels();
  if (!bf16) return {k.linear_forward, k.linear_backward};
  if (!k.bf16_gemm_supported()) {
    const DispatchInfo& info = dispatch_info();
    const auto features = cpu_features();
    const bool cpu_has = features.count("avx512_bf16") && features.at("avx512_bf16");
    throw std::runtime_error(
        "bf16: the bf16 GEMMs need AVX512_BF16 (kernel level x86-64-v4-bf16); the kernels run at level " +
        info.level + (cpu_has ? std::string(" (forced by SEQLAB_ARCH; this CPU has AVX512_BF16)")
                              : std::string(" and this CPU lacks AVX512_BF16")));
  }
  return {k.linear_bf16_forward, k.linear_bf16_backward};
}

}  // namespace

void bind_linear(py::module_& m) {
  m.def(
      "linear_forward",
      [](const py::handle& x_obj, const py::handle& w_obj, const py::object& b_obj, const std::string& activation,
         const py::object& pre_obj, bool bf16) {
        const Activation act = parse_activation(activation);
        const LinearKernels kern = linear_kernels(bf16);
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
          kern.forward(a.x.data(), a.w.data(), bias, yp, a.M, a.K, a.N, act, pre);
        }
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("activation") = "none",
      py::arg("pre") = py::none(), py::arg("bf16") = false,
      "y = act(input @ weight.T + bias). input (*, K) float32, weight (N, K), bias (N,) or None -> (*, N).\n"
      "activation: 'none', 'relu', 'gelu' (exact) or 'gelu_tanh'. pre (*, N), written in place, receives\n"
      "input @ weight.T + bias (required for gelu, whose backward needs it).\n"
      "bf16: the GEMM's operands rounded to bf16 (nearest even), fp32 accumulation (x86-64-v4-bf16 level;\n"
      "RuntimeError elsewhere).");

  m.def(
      "linear_backward",
      [](const py::handle& gy_obj, const py::handle& x_obj, const py::handle& w_obj,
         const py::object& gw_obj, const py::object& gb_obj, bool need_grad_input, const std::string& activation,
         const py::object& saved_obj, bool bf16) -> py::object {
        const Activation act = parse_activation(activation);
        const LinearKernels kern = linear_kernels(bf16);
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
          kern.backward(gy.data(), a.x.data(), a.w.data(), gxp, gw, gb, a.M, a.K, a.N, act, saved);
        }
        if (!need_grad_input) return py::none();
        return std::move(gx);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_weight") = py::none(),
      py::arg("grad_bias") = py::none(), py::arg("need_grad_input") = true, py::arg("activation") = "none",
      py::arg("saved") = py::none(), py::arg("bf16") = false,
      "Backward of linear_forward: returns grad_input (*, K) (or None) and ACCUMULATES "
      "grad_weight (N, K) and grad_bias (N,) in place when given. With an activation, saved is\n"
      "the forward's output (relu) or its pre array (gelu). bf16: both GEMMs in bf16 as linear_forward's.");
  m.def(
      "bf16_gemm_supported", [] { return kernels().bf16_gemm_supported(); },
      "Whether the selected kernel level has the bf16 GEMMs (AVX512_BF16: level x86-64-v4-bf16).");
  m.def(
      "bf16_gemm_engine", [] { return std::string(kernels().bf16_gemm_engine()); },
      "What runs the bf16 GEMMs: 'amx' (AMX-BF16 tiles; SEQLAB_BF16_AMX=0 turns them off), 'avx512_bf16'\n"
      "(vdpbf16ps register tiles) or 'none' (a kernel level without AVX512_BF16).");
}

}  // namespace seqlab::bind
