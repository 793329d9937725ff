// seqlab._core.conv1d_forward / conv1d_backward.
#include <limits>
#include <memory>
#include <string>

#include "array_checks.hpp"
#include "bindings.hpp"
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

py::tuple forward(const py::handle& x_obj, const py::handle& w_obj, const py::object& b_obj,
                  py::ssize_t dilation, py::ssize_t pad_left, py::ssize_t pad_right, const py::object& reuse,
                  const std::string& activation) {
  auto x = require<float>(x_obj, "input", {-1, -1, -1});
  auto w = require<float>(w_obj, "weight", {-1, -1, -1});
  if (dilation < 1) throw py::value_error("dilation: expected >= 1, got " + std::to_string(dilation));
  if (pad_left < 0 || pad_right < 0)
    throw py::value_error("padding: expected non-negative left and right padding, got (" +
                          std::to_string(pad_left) + ", " + std::to_string(pad_right) + ")");
  if (w.shape(2) < 1) throw py::value_error("weight: kernel size must be >= 1, got shape " + shape_str(w));
  if (x.shape(2) != w.shape(1))
    throw py::value_error("input: expected " + std::to_string(w.shape(1)) +
                          " channels in the last dimension (in_channels of weight " + shape_str(w) +
                          "), got shape " + shape_str(x));
  if (activation != "none" && activation != "relu")
    throw py::value_error("activation: expected 'none' or 'relu', got '" + activation + "'");
  Conv1dShape s;
  s.relu = activation == "relu";
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
  if (s.B * To > kMaxDim || s.K * s.Cin > kMaxDim)
    throw py::value_error("input: " + std::to_string(s.B * To) + " output rows x " +
                          std::to_string(s.K * s.Cin) + " taps exceeds the BLAS limit of 2^31 - 1");
  const float* bias = nullptr;
  py::array_t<float, py::array::c_style> b;
  if (!b_obj.is_none()) {
    b = require<float>(b_obj, "bias", {static_cast<py::ssize_t>(s.Cout)});
    bias = b.data();
  }
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
    conv1d_forward(s, x.data(), w.data(), bias, yp, pc->cache);
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
    conv1d_backward(pc.cache, gy.data(), gxp, gw, gb);
  }
  release(pc);
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
  m.def("conv1d_release", &release, py::arg("cache"),
        "Drops the cache's reference to its input without a backward (no gradient needed), so its "
        "workspaces can be reused by a later forward.");
}

}  // namespace seqlab::bind
