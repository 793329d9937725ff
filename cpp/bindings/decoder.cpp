// Bindings of the autoregressive decoder: decoder_forward / decoder_backward and the
// opaque DecoderCache that carries the forward's state to the backward.
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "checks.hpp"
#include "seqlab/decoder.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;
using farray = py::array_t<float, py::array::c_style>;

// The kernel cache plus references that keep the memory and weights alive until
// backward. Released after its backward (or decoder_release): its buffers may then
// be taken over by the next forward, and a second backward through it is refused.
struct PyDecoderCache {
  DecoderCache cache;
  std::vector<py::object> keep_alive;
  bool released = false;
};

void release(PyDecoderCache& pc) {
  pc.released = true;
  pc.keep_alive.clear();
  pc.cache.memory = nullptr;
  pc.cache.w = DecoderWeights{};
}

CellKind parse_mode(const std::string& mode) {
  if (mode == "rnn_tanh") return CellKind::RnnTanh;
  if (mode == "rnn_relu") return CellKind::RnnRelu;
  if (mode == "lstm") return CellKind::Lstm;
  if (mode == "gru") return CellKind::Gru;
  throw py::value_error("mode: expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got '" + mode + "'");
}

// An optional float array of the given shape: its data pointer or null for None.
const float* optional_array(const py::object& obj, const char* name,
                            std::initializer_list<py::ssize_t> shape, PyDecoderCache& pc) {
  if (obj.is_none()) return nullptr;
  auto a = require<float>(obj, name, shape);
  pc.keep_alive.push_back(a);
  return a.data();
}

const float* required_array(const py::object& obj, const char* name,
                            std::initializer_list<py::ssize_t> shape, PyDecoderCache& pc) {
  if (obj.is_none()) throw py::type_error(std::string(name) + ": expected a numpy array of float32, got None");
  return optional_array(obj, name, shape, pc);
}

py::tuple forward(const std::string& mode, const py::object& targets_obj,
                  const py::object& teacher_obj, const py::object& start, const py::object& w_ih,
                  const py::object& w_hh, const py::object& b_ih, const py::object& b_hh,
                  const py::object& w_out, const py::object& b_out, const py::object& h0_obj,
                  const py::object& c0_obj, const py::object& memory_obj,
                  const py::object& lengths_obj, const py::object& attention, int num_heads,
                  const py::object& reuse, const py::object& gate_bias_obj) {
  const CellKind kind = parse_mode(mode);
  const py::ssize_t G = gate_count(kind);
  auto pc = std::make_unique<PyDecoderCache>();
  if (!reuse.is_none()) {
    auto& old = reuse.cast<PyDecoderCache&>();  // TypeError if not a DecoderCache
    if (old.released) pc->cache = std::move(old.cache);
  }
  auto targets = require<float>(targets_obj, "targets", {-1, -1, -1});
  DecoderShape s;
  s.B = static_cast<int>(targets.shape(0));
  s.T = static_cast<int>(targets.shape(1));
  s.E = static_cast<int>(targets.shape(2));
  if (s.B < 1 || s.T < 1 || s.E < 1)
    throw py::value_error("targets: expected a non-empty (batch, seq, features) array, got shape " + shape_str(targets));
  const py::ssize_t B = s.B, T = s.T, E = s.E;
  auto teacher = require<std::uint8_t>(teacher_obj, "teacher_forcing", {B, T});
  auto w_hh_arr = require<float>(w_hh, "w_hh", {-1, -1});
  s.H = static_cast<int>(w_hh_arr.shape(1));
  const py::ssize_t H = s.H, GH = G * s.H;
  if (s.H < 1 || w_hh_arr.shape(0) != GH)
    throw py::value_error("w_hh: expected shape (" + std::to_string(G) + "*hidden, hidden) for mode '" + mode +
                          "', got " + shape_str(w_hh_arr));
  DecoderWeights w;
  w.w_hh = w_hh_arr.data();
  pc->keep_alive.push_back(w_hh_arr);
  w.start = required_array(start, "start", {E}, *pc);
  w.w_ih = required_array(w_ih, "w_ih", {GH, E}, *pc);
  w.b_ih = optional_array(b_ih, "b_ih", {GH}, *pc);
  w.b_hh = optional_array(b_hh, "b_hh", {GH}, *pc);

  const bool att = !attention.is_none();
  if (!att && !memory_obj.is_none())
    throw py::value_error("memory: given, but the decoder has no attention (pass attention weights and num_heads)");
  if (!att && !lengths_obj.is_none())
    throw py::value_error("memory_lengths: given, but the decoder has no attention");
  const py::ssize_t Z = att ? 2 * H : H;
  auto w_out_arr = require<float>(w_out, "w_out", {-1, Z});
  s.O = static_cast<int>(w_out_arr.shape(0));
  const py::ssize_t O = s.O;
  if (s.O < 1) throw py::value_error("w_out: expected at least one output row, got shape " + shape_str(w_out_arr));
  w.w_out = w_out_arr.data();
  pc->keep_alive.push_back(w_out_arr);
  w.b_out = optional_array(b_out, "b_out", {O}, *pc);
  if (s.O != s.E) {
    const std::uint8_t* tf = teacher.data();
    for (py::ssize_t b = 0; b < B; ++b)
      for (py::ssize_t t = 1; t < T; ++t)
        if (!tf[b * T + t])
          throw py::value_error("teacher_forcing: step " + std::to_string(t) + " of row " + std::to_string(b) +
                                " feeds back the prediction, which needs output size (" + std::to_string(O) +
                                ") == input size (" + std::to_string(E) + ")");
  }

  const float* memory = nullptr;
  const std::int64_t* lengths = nullptr;
  py::array_t<std::int64_t, py::array::c_style> len_arr;
  if (att) {
    if (num_heads < 1 || s.H % num_heads != 0)
      throw py::value_error("num_heads: must be a positive divisor of the hidden size " + std::to_string(H) +
                            ", got " + std::to_string(num_heads));
    if (memory_obj.is_none()) throw py::value_error("memory: the decoder has attention and needs memory (B, S, A)");
    auto mem = require<float>(memory_obj, "memory", {B, -1, -1});
    s.S = static_cast<int>(mem.shape(1));
    s.A = static_cast<int>(mem.shape(2));
    s.heads = num_heads;
    if (s.S < 1 || s.A < 1) throw py::value_error("memory: expected a non-empty (batch, S, A) array, got shape " + shape_str(mem));
    memory = mem.data();
    pc->keep_alive.push_back(mem);
    const py::ssize_t A = s.A;
    if (!py::isinstance<py::sequence>(attention) || py::len(attention) != 8)
      throw py::type_error("attention: expected a sequence of 8 arrays (w_q, w_k, w_v, b_q, b_k, b_v, w_o, b_o)");
    auto a = py::reinterpret_borrow<py::sequence>(attention);
    w.w_q = required_array(a[0], "w_q", {H, H}, *pc);
    w.w_k = required_array(a[1], "w_k", {H, A}, *pc);
    w.w_v = required_array(a[2], "w_v", {H, A}, *pc);
    w.b_q = optional_array(a[3], "b_q", {H}, *pc);
    w.b_k = optional_array(a[4], "b_k", {H}, *pc);
    w.b_v = optional_array(a[5], "b_v", {H}, *pc);
    w.w_o = required_array(a[6], "w_o", {H, H}, *pc);
    w.b_o = optional_array(a[7], "b_o", {H}, *pc);
    if (!lengths_obj.is_none()) {
      len_arr = require<std::int64_t>(lengths_obj, "memory_lengths", {B});
      lengths = len_arr.data();
      for (py::ssize_t b = 0; b < B; ++b)
        if (lengths[b] < 1 || lengths[b] > s.S)
          throw py::value_error("memory_lengths: every length must be in [1, " + std::to_string(s.S) +
                                "] (the memory's length), got " + std::to_string(lengths[b]) + " at index " +
                                std::to_string(b));
    }
  }
  const float* h0 = nullptr;
  const float* c0 = nullptr;
  farray h0_arr, c0_arr;
  if (!h0_obj.is_none()) {
    h0_arr = require<float>(h0_obj, "h0", {B, H});
    h0 = h0_arr.data();
  }
  if (!c0_obj.is_none()) {
    if (kind != CellKind::Lstm) throw py::value_error("c0: only an LSTM has a cell state, got mode '" + mode + "'");
    c0_arr = require<float>(c0_obj, "c0", {B, H});
    c0 = c0_arr.data();
  }
  const float* gate_bias = nullptr;
  farray gate_bias_arr;
  if (!gate_bias_obj.is_none()) {
    gate_bias_arr = require<float>(gate_bias_obj, "gate_bias", {B, GH});
    gate_bias = gate_bias_arr.data();
  }
  py::array_t<float> pred({B, T, O});
  {
    py::gil_scoped_release release;
    kernels().decoder_forward(kind, s, w, targets.data(), teacher.data(), h0, c0, memory, lengths, gate_bias,
                    pred.mutable_data(), pc->cache);
  }
  return py::make_tuple(pred, py::cast(std::move(pc)));
}

constexpr const char* kGradNames[] = {"start", "w_ih", "w_hh", "b_ih", "b_hh", "w_q",  "w_k",  "w_v",
                                      "b_q",   "b_k",  "b_v",  "w_o",  "b_o",  "w_out", "b_out"};
constexpr int kGradCount = 15;

py::tuple backward(PyDecoderCache& pc, const py::object& grad_obj, const py::object& grads_obj,
                   bool need_memory_grad, bool need_gate_bias_grad) {
  if (pc.released)
    throw std::runtime_error(
        "decoder_backward: this cache was already used by a backward pass (its buffers are freed for "
        "reuse, as PyTorch frees a graph after backward); run the forward again");
  DecoderCache& c = pc.cache;
  const DecoderShape& s = c.shape;
  const py::ssize_t B = s.B, T = s.T, H = s.H;
  auto dpred = require<float>(grad_obj, "grad_output", {B, T, static_cast<py::ssize_t>(s.O)});
  if (!py::isinstance<py::sequence>(grads_obj) || py::len(grads_obj) != kGradCount)
    throw py::type_error("grads: expected a sequence of 15 buffers or None (start, w_ih, w_hh, b_ih, b_hh, "
                         "w_q, w_k, w_v, b_q, b_k, b_v, w_o, b_o, w_out, b_out)");
  auto seq = py::reinterpret_borrow<py::sequence>(grads_obj);
  const float* weights[kGradCount] = {c.w.start, c.w.w_ih, c.w.w_hh, c.w.b_ih, c.w.b_hh,
                                      c.w.w_q,   c.w.w_k,  c.w.w_v,  c.w.b_q,  c.w.b_k,
                                      c.w.b_v,   c.w.w_o,  c.w.b_o,  c.w.w_out, c.w.b_out};
  const py::ssize_t G = gate_count(c.kind), GH = G * H, E = s.E, A = s.A, O = s.O;
  const py::ssize_t Z = s.attention() ? 2 * H : H;
  const std::vector<std::vector<py::ssize_t>> shapes = {{E},     {GH, E}, {GH, H}, {GH}, {GH}, {H, H}, {H, A}, {H, A},
                                                        {H},     {H},     {H},     {H, H}, {H}, {O, Z}, {O}};
  float* ptr[kGradCount] = {};
  std::vector<farray> held;
  for (int i = 0; i < kGradCount; ++i) {
    py::object gi = seq[i];
    if (gi.is_none()) continue;
    const std::string name = std::string("grad_") + kGradNames[i];
    if (!weights[i]) throw py::value_error(name + ": the forward ran without " + kGradNames[i]);
    const auto& sh = shapes[i];
    farray a = sh.size() == 1 ? require_writeable<float>(gi, name.c_str(), {sh[0]})
                              : require_writeable<float>(gi, name.c_str(), {sh[0], sh[1]});
    ptr[i] = a.mutable_data();
    held.push_back(a);
  }
  DecoderGrads g;
  g.start = ptr[0];
  g.w_ih = ptr[1];
  g.w_hh = ptr[2];
  g.b_ih = ptr[3];
  g.b_hh = ptr[4];
  g.w_q = ptr[5];
  g.w_k = ptr[6];
  g.w_v = ptr[7];
  g.b_q = ptr[8];
  g.b_k = ptr[9];
  g.b_v = ptr[10];
  g.w_o = ptr[11];
  g.b_o = ptr[12];
  g.w_out = ptr[13];
  g.b_out = ptr[14];
  py::array_t<float> dh0({B, H});
  py::object dc0_obj = py::none(), dmem_obj = py::none();
  float* dc0 = nullptr;
  float* dmem = nullptr;
  if (c.kind == CellKind::Lstm) {
    py::array_t<float> a({B, H});
    dc0 = a.mutable_data();
    dc0_obj = a;
  }
  if (need_memory_grad && s.attention()) {
    py::array_t<float> a({B, static_cast<py::ssize_t>(s.S), A});
    dmem = a.mutable_data();
    dmem_obj = a;
  }
  py::object dbias_obj = py::none();
  float* dbias = nullptr;
  if (need_gate_bias_grad) {
    py::array_t<float> a({B, GH});
    dbias = a.mutable_data();
    dbias_obj = a;
  }
  {
    py::gil_scoped_release release;
    kernels().decoder_backward(c, dpred.data(), g, dh0.mutable_data(), dc0, dmem, dbias, {});
  }
  release(pc);
  return py::make_tuple(dh0, dc0_obj, dmem_obj, dbias_obj);
}

}  // namespace

void bind_decoder(py::module_& m) {
  py::class_<PyDecoderCache>(m, "DecoderCache", "Opaque state kept by decoder_forward for decoder_backward.");
  m.def("decoder_forward", &forward, py::arg("mode"), py::arg("targets"), py::arg("teacher_forcing"),
        py::arg("start"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("w_out"),
        py::arg("b_out"), py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("memory") = py::none(),
        py::arg("memory_lengths") = py::none(), py::arg("attention") = py::none(), py::arg("num_heads") = 0,
        py::arg("reuse") = py::none(), py::arg("gate_bias") = py::none(),
        R"doc(Autoregressive recurrent decoder over a whole sequence (one fused op).

mode: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'. targets (B, T, E) float32;
teacher_forcing (B, T) uint8 (nonzero: step t reads targets[:, t-1], else the previous
prediction; column 0 is ignored, step 0 reads start (E,)); w_ih (G*H, E), w_hh (G*H, H),
b_ih, b_hh (G*H,) or None; w_out (O, Z), b_out (O,) or None with Z = H, or 2H with
attention; h0, c0 (B, H) or None. Attention: attention = (w_q (H, H), w_k (H, A),
w_v (H, A), b_q, b_k, b_v (H,) or None, w_o (H, H), b_o (H,) or None), num_heads
dividing H, memory (B, S, A), memory_lengths (B,) int64 in [1, S] or None.
reuse: a released cache whose buffers this call takes over. gate_bias (B, G*H) or None:
added to the input part of every step's gate pre-activations (a per-row condition).
Returns (predictions (B, T, O), cache).)doc");
  m.def("decoder_backward", &backward, py::arg("cache"), py::arg("grad_output"), py::arg("grads"),
        py::arg("need_memory_grad") = true, py::arg("need_gate_bias_grad") = false,
        R"doc(Backward of decoder_forward.

grad_output (B, T, O). grads: 15 float32 buffers (or None) that the parameter gradients
are ADDED into, in the order start, w_ih, w_hh, b_ih, b_hh, w_q, w_k, w_v, b_q, b_k, b_v,
w_o, b_o, w_out, b_out. Returns (grad_h0 (B, H), grad_c0 (B, H) or None, grad_memory (B, S, A) or None,
grad_gate_bias (B, G*H) or None). The cache is released afterwards.)doc");
  m.def("decoder_release", &release, py::arg("cache"),
        "Marks a cache whose backward will not run (e.g. computed without grad) as reusable.");
}

}  // namespace seqlab::bind
