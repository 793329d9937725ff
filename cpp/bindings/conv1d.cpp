// seqlab._core.conv1d_forward / conv1d_backward and the fused TCN temporal_block_forward / _backward.
#include <algorithm>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/conv1d.hpp"

namespace seqlab::bind {

namespace {

// The kernel cache plus a reference keeping the forward's input alive until backward.
// After its backward (or conv1d_release) it is `released`: the reference is dropped, its
// workspaces may be handed to a later forward (conv1d_forward(reuse=...)), and a second
// backward through it is refused (as PyTorch frees a graph after backward).
struct PyConv1dCache {
  Conv1dCache cache;
  py::object x, y;
  bool released = false;
};

void release(PyConv1dCache& pc) {
  pc.released = true;
  pc.x = pc.y = py::none();
  pc.cache.x = pc.cache.y = nullptr;
}

// The checked shape of a convolution of x (B, T, Cin) with w (Cout, Cin, K).
Conv1dShape checked_shape(const py::array_t<float, py::array::c_style>& x,
                          const py::array_t<float, py::array::c_style>& w, const char* w_name,
                          py::ssize_t dilation, py::ssize_t pad_left, py::ssize_t pad_right) {
  if (dilation < 1) throw py::value_error("dilation: expected >= 1, got " + std::to_string(dilation));
  if (pad_left < 0 || pad_right < 0)
    throw py::value_error("padding: expected non-negative left and right padding, got (" +
                          std::to_string(pad_left) + ", " + std::to_string(pad_right) + ")");
  if (w.shape(2) < 1)
    throw py::value_error(std::string(w_name) + ": kernel size must be >= 1, got shape " + shape_str(w));
  if (w.shape(0) < 1 || w.shape(1) < 1)
    throw py::value_error(std::string(w_name) + ": expected at least one output and one input channel, got shape " +
                          shape_str(w));
  if (x.shape(2) != w.shape(1))
    throw py::value_error("input: expected " + std::to_string(w.shape(1)) + " channels in the last dimension (" +
                          "in_channels of " + w_name + " " + shape_str(w) + "), got shape " + shape_str(x));
  Conv1dShape s;
  s.B = static_cast<std::size_t>(x.shape(0));
  s.T = static_cast<std::size_t>(x.shape(1));
  s.Cin = static_cast<std::size_t>(x.shape(2));
  s.Cout = static_cast<std::size_t>(w.shape(0));
  s.K = static_cast<std::size_t>(w.shape(2));
  s.dilation = static_cast<std::size_t>(dilation);
  s.pad_left = static_cast<std::size_t>(pad_left);
  s.pad_right = static_cast<std::size_t>(pad_right);
  const std::size_t To = s.out_len();
  if (To == 0)
    throw py::value_error("input: sequence length " + std::to_string(s.T) + " with padding (" +
                          std::to_string(pad_left) + ", " + std::to_string(pad_right) +
                          ") is shorter than the receptive field dilation*(K-1)+1 = " +
                          std::to_string(s.dilation * (s.K - 1) + 1));
  constexpr std::size_t kMaxDim = static_cast<std::size_t>(std::numeric_limits<int>::max());
  if (s.B * std::max(To, s.T) > kMaxDim || s.K * std::max(s.Cin, s.Cout) > kMaxDim)
    throw py::value_error("input: " + std::to_string(s.B * To) + " output rows x " +
                          std::to_string(s.K * s.Cin) + " taps exceeds the BLAS limit of 2^31 - 1");
  return s;
}

// An optional (n,) float32 array (None -> null); `keep` holds it.
const float* optional_vector(const py::object& obj, const char* name, std::size_t n,
                             py::array_t<float, py::array::c_style>& keep) {
  if (obj.is_none()) return nullptr;
  keep = require<float>(obj, name, {static_cast<py::ssize_t>(n)});
  return keep.data();
}

py::tuple forward(const py::handle& x_obj, const py::handle& w_obj, const py::object& b_obj,
                  py::ssize_t dilation, py::ssize_t pad_left, py::ssize_t pad_right, const py::object& reuse,
                  const std::string& activation) {
  auto x = require<float>(x_obj, "input", {-1, -1, -1});
  auto w = require<float>(w_obj, "weight", {-1, -1, -1});
  if (activation != "none" && activation != "relu")
    throw py::value_error("activation: expected 'none' or 'relu', got '" + activation + "'");
  Conv1dShape s = checked_shape(x, w, "weight", dilation, pad_left, pad_right);
  s.relu = activation == "relu";
  const std::size_t To = s.out_len();
  py::array_t<float, py::array::c_style> b;
  const float* bias = optional_vector(b_obj, "bias", s.Cout, b);
  py::array_t<float> y({x.shape(0), static_cast<py::ssize_t>(To), w.shape(0)});
  auto pc = std::make_unique<PyConv1dCache>();
  if (!reuse.is_none()) {
    auto& old = reuse.cast<PyConv1dCache&>();  // TypeError if not a Conv1dCache
    if (!old.released)
      throw py::value_error("reuse: the cache's backward has not run yet (or call conv1d_release first)");
    pc->cache = std::move(old.cache);
  }
  pc->x = x;
  if (s.relu) pc->y = y;
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release unlocked;
    kernels().conv1d_forward(s, x.data(), w.data(), bias, yp, pc->cache);
  }
  return py::make_tuple(y, py::cast(std::move(pc)));
}

py::object backward(PyConv1dCache& pc, const py::handle& gy_obj, const py::object& gw_obj,
                    const py::object& gb_obj, bool need_grad_input) {
  if (pc.released)
    throw std::runtime_error(
        "conv1d_backward: this cache was already used by a backward pass (its buffers are freed "
        "for reuse, as PyTorch frees a graph after backward); run the forward again");
  const Conv1dShape& s = pc.cache.shape;
  const auto B = static_cast<py::ssize_t>(s.B), To = static_cast<py::ssize_t>(s.out_len()),
             Cout = static_cast<py::ssize_t>(s.Cout), Cin = static_cast<py::ssize_t>(s.Cin),
             K = static_cast<py::ssize_t>(s.K);
  auto gy = require<float>(gy_obj, "grad_output", {B, To, Cout});
  float* gw = nullptr;
  float* gb = nullptr;
  py::array_t<float, py::array::c_style> gwa, gba;
  if (!gw_obj.is_none()) {
    gwa = require_writeable<float>(gw_obj, "grad_weight", {Cout, Cin, K});
    gw = gwa.mutable_data();
  }
  if (!gb_obj.is_none()) {
    gba = require_writeable<float>(gb_obj, "grad_bias", {Cout});
    gb = gba.mutable_data();
  }
  py::array_t<float> gx;
  float* gxp = nullptr;
  if (need_grad_input) {
    gx = py::array_t<float>({B, static_cast<py::ssize_t>(s.T), Cin});
    gxp = gx.mutable_data();
  }
  {
    py::gil_scoped_release unlocked;
    kernels().conv1d_backward(pc.cache, gy.data(), gxp, gw, gb, false);
  }
  release(pc);
  if (!need_grad_input) return py::none();
  return std::move(gx);
}

// ------------------------------------------------------------------ TCN temporal block

struct PyTemporalBlockCache {
  TemporalBlockCache cache;
  py::object x, y, wd;
  bool released = false;
};

void block_release(PyTemporalBlockCache& pc) {
  pc.released = true;
  pc.x = pc.y = pc.wd = py::none();
  pc.cache.x = pc.cache.y = pc.cache.wd = nullptr;
  pc.cache.conv1.x = pc.cache.conv1.y = nullptr;
}

py::tuple block_forward(const py::handle& x_obj, const py::handle& w1_obj, const py::object& b1_obj,
                        const py::handle& w2_obj, const py::object& b2_obj, const py::object& wd_obj,
                        const py::object& bd_obj, py::ssize_t dilation, const py::object& reuse) {
  auto x = require<float>(x_obj, "input", {-1, -1, -1});
  auto w1 = require<float>(w1_obj, "conv1_weight", {-1, -1, -1});
  if (w1.shape(2) < 1)
    throw py::value_error("conv1_weight: kernel size must be >= 1, got shape " + shape_str(w1));
  const py::ssize_t pad = (w1.shape(2) - 1) * std::max<py::ssize_t>(dilation, 1);
  const Conv1dShape s = checked_shape(x, w1, "conv1_weight", dilation, pad, 0);
  const auto C = static_cast<py::ssize_t>(s.Cout), Cin = static_cast<py::ssize_t>(s.Cin);
  auto w2 = require<float>(w2_obj, "conv2_weight", {C, C, static_cast<py::ssize_t>(s.K)});
  TemporalBlockWeights w;
  w.w1 = w1.data();
  w.w2 = w2.data();
  py::array_t<float, py::array::c_style> b1, b2, wd, bd;
  w.b1 = optional_vector(b1_obj, "conv1_bias", s.Cout, b1);
  w.b2 = optional_vector(b2_obj, "conv2_bias", s.Cout, b2);
  if (!wd_obj.is_none()) {
    wd = require<float>(wd_obj, "downsample_weight", {C, Cin});
    w.wd = wd.data();
    w.bd = optional_vector(bd_obj, "downsample_bias", s.Cout, bd);
  } else if (Cin != C) {
    throw py::value_error("downsample_weight: required when the block changes the channels (input has " +
                          std::to_string(Cin) + ", the convolutions give " + std::to_string(C) + ")");
  } else if (!bd_obj.is_none()) {
    throw py::value_error("downsample_bias: given without downsample_weight");
  }
  py::array_t<float> y({x.shape(0), x.shape(1), C});
  auto pc = std::make_unique<PyTemporalBlockCache>();
  if (!reuse.is_none()) {
    auto& old = reuse.cast<PyTemporalBlockCache&>();  // TypeError if not a TemporalBlockCache
    if (!old.released)
      throw py::value_error("reuse: the cache's backward has not run yet (or call temporal_block_release first)");
    pc->cache = std::move(old.cache);
  }
  pc->x = x;
  pc->y = y;
  if (w.wd != nullptr) pc->wd = wd;
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release unlocked;
    kernels().temporal_block_forward(s, w, x.data(), yp, pc->cache);
  }
  return py::make_tuple(y, py::cast(std::move(pc)));
}

py::object block_backward(PyTemporalBlockCache& pc, const py::handle& gy_obj, const py::object& gw1_obj,
                          const py::object& gb1_obj, const py::object& gw2_obj, const py::object& gb2_obj,
                          const py::object& gwd_obj, const py::object& gbd_obj, bool need_grad_input) {
  if (pc.released)
    throw std::runtime_error(
        "temporal_block_backward: this cache was already used by a backward pass (its buffers are "
        "freed for reuse, as PyTorch frees a graph after backward); run the forward again");
  const Conv1dShape& s = pc.cache.conv1.shape;
  const auto B = static_cast<py::ssize_t>(s.B), T = static_cast<py::ssize_t>(s.T),
             C = static_cast<py::ssize_t>(s.Cout), Cin = static_cast<py::ssize_t>(s.Cin),
             K = static_cast<py::ssize_t>(s.K);
  auto gy = require<float>(gy_obj, "grad_output", {B, T, C});
  std::vector<py::array_t<float, py::array::c_style>> keep;
  auto grad = [&](const py::object& obj, const char* name, std::initializer_list<py::ssize_t> shape) -> float* {
    if (obj.is_none()) return nullptr;
    keep.push_back(require_writeable<float>(obj, name, shape));
    return keep.back().mutable_data();
  };
  TemporalBlockGrads g;
  g.w1 = grad(gw1_obj, "grad_conv1_weight", {C, Cin, K});
  g.b1 = grad(gb1_obj, "grad_conv1_bias", {C});
  g.w2 = grad(gw2_obj, "grad_conv2_weight", {C, C, K});
  g.b2 = grad(gb2_obj, "grad_conv2_bias", {C});
  if (pc.cache.wd != nullptr) {
    g.wd = grad(gwd_obj, "grad_downsample_weight", {C, Cin});
    g.bd = grad(gbd_obj, "grad_downsample_bias", {C});
  }
  py::array_t<float> gx;
  float* gxp = nullptr;
  if (need_grad_input) {
    gx = py::array_t<float>({B, T, Cin});
    gxp = gx.mutable_data();
  }
  {
    py::gil_scoped_release unlocked;
    kernels().temporal_block_backward(pc.cache, gy.data(), gxp, g);
  }
  block_release(pc);
  if (!need_grad_input) return py::none();
  return std::move(gx);
}

}  // namespace

void bind_conv1d(py::module_& m) {
  py::class_<PyConv1dCache>(m, "Conv1dCache",
                            "Opaque state kept by conv1d_forward for conv1d_backward (and its workspaces).");
  m.def("conv1d_forward", &forward, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("dilation") = 1, py::arg("pad_left") = 0, py::arg("pad_right") = 0, py::arg("reuse") = py::none(),
        py::arg("activation") = "none",
        R"doc(1-d convolution over channels-last sequences, stride 1, groups 1.

input (B, T, Cin) float32, weight (Cout, Cin, K) (torch's layout), bias (Cout,) or None;
zero padding pad_left / pad_right (causal: pad_left = dilation*(K-1), pad_right = 0).
Returns (output (B, To, Cout) with To = T + pad_left + pad_right - dilation*(K-1), cache).
activation 'relu' applies max(y, 0) inside the kernel (and its gradient in backward).
The cache references the input (and with 'relu' the output) until backward. reuse: a cache whose backward has run (or
that was released); its workspaces are recycled.)doc");
  m.def("conv1d_backward", &backward, py::arg("cache"), py::arg("grad_output"),
        py::arg("grad_weight") = py::none(), py::arg("grad_bias") = py::none(),
        py::arg("need_grad_input") = true,
        "Backward of conv1d_forward: returns grad_input (B, T, Cin) (or None) and ACCUMULATES "
        "grad_weight (Cout, Cin, K) and grad_bias (Cout,) in place when given; then releases the "
        "cache (a second backward through it raises RuntimeError).");
  py::class_<PyTemporalBlockCache>(m, "TemporalBlockCache",
                                   "Opaque state of one TCN temporal block forward (and its workspaces).");
  m.def("temporal_block_forward", &block_forward, py::arg("input"), py::arg("conv1_weight"),
        py::arg("conv1_bias"), py::arg("conv2_weight"), py::arg("conv2_bias"),
        py::arg("downsample_weight") = py::none(), py::arg("downsample_bias") = py::none(),
        py::arg("dilation") = 1, py::arg("reuse") = py::none(),
        R"doc(A TCN temporal block: relu(relu(conv2(relu(conv1(x)))) + res), causal dilated convolutions.

input (B, T, Cin); conv1_weight (C, Cin, K), conv2_weight (C, C, K), biases (C,) or None;
downsample_weight (C, Cin) and downsample_bias (C,) for the residual projection (None: the
identity, Cin == C). Returns (output (B, T, C), cache); the cache references input and
output until backward. reuse: a released cache whose workspaces are recycled.)doc");
  m.def("temporal_block_backward", &block_backward, py::arg("cache"), py::arg("grad_output"),
        py::arg("grad_conv1_weight") = py::none(), py::arg("grad_conv1_bias") = py::none(),
        py::arg("grad_conv2_weight") = py::none(), py::arg("grad_conv2_bias") = py::none(),
        py::arg("grad_downsample_weight") = py::none(), py::arg("grad_downsample_bias") = py::none(),
        py::arg("need_grad_input") = true,
        "Backward of temporal_block_forward: returns grad_input (B, T, Cin) (or None) and ACCUMULATES "
        "the parameter gradients given; then releases the cache.");
  m.def("temporal_block_release", &block_release, py::arg("cache"),
        "Drops the cache's references without a backward, so its workspaces can be reused.");
  m.def("conv1d_release", &release, py::arg("cache"),
        "Drops the cache's reference to its input without a backward (no gradient needed), so its "
        "workspaces can be reused by a later forward.");
}

}  // namespace seqlab::bind
