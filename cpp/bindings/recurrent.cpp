// Bindings of the recurrent layers: recurrent_forward / recurrent_backward and the
// opaque RecurrentCache that carries the forward's state to the backward.
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "checks.hpp"
#include "seqlab/recurrent.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;

// The kernel cache plus references that keep x and the weights alive until backward.
// After its backward (or recurrent_release) it is `released`: its buffers may be
// moved into the next forward, and a second backward through it is refused.
struct PyRecurrentCache {
  RecurrentCache cache;
  std::vector<py::object> keep_alive;
  bool released = false;
};

void release(PyRecurrentCache& pc) {
  pc.released = true;
  pc.keep_alive.clear();
  pc.cache.x = nullptr;
  pc.cache.weights.clear();
}

CellKind parse_mode(const std::string& mode) {
  if (mode == "rnn_tanh") return CellKind::RnnTanh;
  if (mode == "rnn_relu") return CellKind::RnnRelu;
  if (mode == "lstm") return CellKind::Lstm;
  if (mode == "gru") return CellKind::Gru;
  throw py::value_error("mode: expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got '" + mode + "'");
}

std::string indexed(const char* name, int d) { return std::string(name) + "[" + std::to_string(d) + "]"; }

// A list of D arrays (or None when `optional`); returns D entries (None entries as empty handles).
std::vector<py::object> direction_list(const py::object& obj, const char* name, int D, bool optional) {
  std::vector<py::object> out(D, py::none());
  if (obj.is_none()) {
    if (optional) return out;
    throw py::type_error(std::string(name) + ": expected a list of " + std::to_string(D) + " arrays, got None");
  }
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    throw py::type_error(std::string(name) + ": expected a list of arrays, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  auto seq = py::reinterpret_borrow<py::sequence>(obj);
  if (static_cast<int>(seq.size()) != D)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(D) +
                          " entries (one per direction), got " + std::to_string(seq.size()));
  for (int d = 0; d < D; ++d) out[d] = seq[d];
  return out;
}

py::tuple forward(const std::string& mode, const py::object& input, const py::object& w_ih_list,
                  const py::object& w_hh_list, const py::object& b_ih_list,
                  const py::object& b_hh_list, const py::object& h0_obj, const py::object& c0_obj,
                  const py::object& lengths_obj, const py::object& reuse) {
  const CellKind kind = parse_mode(mode);
  const int G = gate_count(kind);
  auto x = require<float>(input, "input", {-1, -1, -1});
  if (!py::isinstance<py::list>(w_hh_list) && !py::isinstance<py::tuple>(w_hh_list))
    throw py::type_error("w_hh: expected a list of arrays (one per direction)");
  const int D = static_cast<int>(py::len(w_hh_list));
  if (D != 1 && D != 2)
    throw py::value_error("w_hh: expected 1 or 2 directions, got " + std::to_string(D));
  RecurrentShape s;
  s.B = static_cast<int>(x.shape(0));
  s.T = static_cast<int>(x.shape(1));
  s.C = static_cast<int>(x.shape(2));
  s.D = D;
  if (s.B < 1 || s.T < 1 || s.C < 1)
    throw py::value_error("input: expected a non-empty (batch, seq, features) array, got shape " + shape_str(x));
  auto w_hh_objs = direction_list(w_hh_list, "w_hh", D, false);
  auto w0 = require<float>(w_hh_objs[0], "w_hh[0]", {-1, -1});
  s.H = static_cast<int>(w0.shape(1));
  const py::ssize_t GH = static_cast<py::ssize_t>(G) * s.H, H = s.H;
  if (s.H < 1 || w0.shape(0) != GH)
    throw py::value_error("w_hh[0]: expected shape (" + std::to_string(G) + "*hidden, hidden) for mode '" +
                          mode + "', got " + shape_str(w0));
  auto w_ih_objs = direction_list(w_ih_list, "w_ih", D, false);
  auto b_ih_objs = direction_list(b_ih_list, "b_ih", D, true);
  auto b_hh_objs = direction_list(b_hh_list, "b_hh", D, true);

  auto cache = std::make_unique<PyRecurrentCache>();
  if (!reuse.is_none()) {
    auto& old = reuse.cast<PyRecurrentCache&>();  // TypeError if not a RecurrentCache
    if (old.released) cache->cache.dirs = std::move(old.cache.dirs);
  }
  std::vector<DirectionWeights> weights(D);
  cache->keep_alive.push_back(x);
  for (int d = 0; d < D; ++d) {
    auto wi = require<float>(w_ih_objs[d], indexed("w_ih", d).c_str(), {GH, s.C});
    auto wh = require<float>(w_hh_objs[d], indexed("w_hh", d).c_str(), {GH, H});
    weights[d].w_ih = wi.data();
    weights[d].w_hh = wh.data();
    cache->keep_alive.push_back(wi);
    cache->keep_alive.push_back(wh);
    if (!b_ih_objs[d].is_none()) {
      auto bi = require<float>(b_ih_objs[d], indexed("b_ih", d).c_str(), {GH});
      weights[d].b_ih = bi.data();
      cache->keep_alive.push_back(bi);
    }
    if (!b_hh_objs[d].is_none()) {
      auto bh = require<float>(b_hh_objs[d], indexed("b_hh", d).c_str(), {GH});
      weights[d].b_hh = bh.data();
      cache->keep_alive.push_back(bh);
    }
  }
  const float* h0 = nullptr;
  const float* c0 = nullptr;
  py::array_t<float, py::array::c_style> h0_arr, c0_arr;
  if (!h0_obj.is_none()) {
    h0_arr = require<float>(h0_obj, "h0", {D, s.B, H});
    h0 = h0_arr.data();
  }
  if (!c0_obj.is_none()) {
    if (kind != CellKind::Lstm) throw py::value_error("c0: only an LSTM has a cell state, got mode '" + mode + "'");
    c0_arr = require<float>(c0_obj, "c0", {D, s.B, H});
    c0 = c0_arr.data();
  }
  const std::int64_t* lengths = nullptr;
  py::array_t<std::int64_t, py::array::c_style> len_arr;
  if (!lengths_obj.is_none()) {
    len_arr = require<std::int64_t>(lengths_obj, "lengths", {s.B});
    lengths = len_arr.data();
    for (int b = 0; b < s.B; ++b)
      if (lengths[b] < 1 || lengths[b] > s.T)
        throw py::value_error("lengths: every length must be in [1, " + std::to_string(s.T) +
                              "] (the sequence length of input), got " + std::to_string(lengths[b]) +
                              " at index " + std::to_string(b));
  }

  py::array_t<float> y({static_cast<py::ssize_t>(s.B), static_cast<py::ssize_t>(s.T), D * H});
  py::array_t<float> h_n({static_cast<py::ssize_t>(D), static_cast<py::ssize_t>(s.B), H});
  py::object c_n_obj = py::none();
  float* c_n = nullptr;
  if (kind == CellKind::Lstm) {
    py::array_t<float> c_n_arr({static_cast<py::ssize_t>(D), static_cast<py::ssize_t>(s.B), H});
    c_n = c_n_arr.mutable_data();
    c_n_obj = c_n_arr;
  }
  {
    py::gil_scoped_release release;
    kernels().recurrent_forward(kind, s, x.data(), weights.data(), h0, c0, lengths, y.mutable_data(),
                      h_n.mutable_data(), c_n, cache->cache);
  }
  return py::make_tuple(y, h_n, c_n_obj, py::cast(std::move(cache)));
}

py::tuple backward(PyRecurrentCache& pc, const py::object& dy_obj, const py::object& dh_n_obj,
                   const py::object& dc_n_obj, const py::object& dw_ih_list,
                   const py::object& dw_hh_list, const py::object& db_ih_list,
                   const py::object& db_hh_list, bool need_input_grad) {
  if (pc.released)
    throw std::runtime_error(
        "recurrent_backward: this cache was already used by a backward pass (its buffers are "
        "freed for reuse, as PyTorch frees a graph after backward); run the forward again");
  RecurrentCache& c = pc.cache;
  const RecurrentShape& s = c.shape;
  const int D = s.D, G = gate_count(c.kind);
  const py::ssize_t B = s.B, T = s.T, H = s.H, GH = static_cast<py::ssize_t>(G) * s.H;
  if (c.dirs.empty()) throw py::value_error("cache: not filled by recurrent_forward");
  const float* dy = nullptr;
  const float* dh_n = nullptr;
  const float* dc_n = nullptr;
  py::array_t<float, py::array::c_style> dy_arr, dh_arr, dc_arr;
  if (!dy_obj.is_none()) {
    dy_arr = require<float>(dy_obj, "grad_output", {B, T, D * H});
    dy = dy_arr.data();
  }
  if (!dh_n_obj.is_none()) {
    dh_arr = require<float>(dh_n_obj, "grad_h_n", {D, B, H});
    dh_n = dh_arr.data();
  }
  if (!dc_n_obj.is_none()) {
    if (c.kind != CellKind::Lstm) throw py::value_error("grad_c_n: only an LSTM has a cell state");
    dc_arr = require<float>(dc_n_obj, "grad_c_n", {D, B, H});
    dc_n = dc_arr.data();
  }
  auto dwi = direction_list(dw_ih_list, "grad_w_ih", D, true);
  auto dwh = direction_list(dw_hh_list, "grad_w_hh", D, true);
  auto dbi = direction_list(db_ih_list, "grad_b_ih", D, true);
  auto dbh = direction_list(db_hh_list, "grad_b_hh", D, true);
  std::vector<DirectionGrads> grads(D);
  std::vector<py::array_t<float, py::array::c_style>> held;
  for (int d = 0; d < D; ++d) {
    if (!dwi[d].is_none()) {
      held.push_back(require_writeable<float>(dwi[d], indexed("grad_w_ih", d).c_str(), {GH, s.C}));
      grads[d].w_ih = held.back().mutable_data();
    }
    if (!dwh[d].is_none()) {
      held.push_back(require_writeable<float>(dwh[d], indexed("grad_w_hh", d).c_str(), {GH, H}));
      grads[d].w_hh = held.back().mutable_data();
    }
    if (!dbi[d].is_none()) {
      if (!c.weights[d].b_ih) throw py::value_error("grad_b_ih: the forward ran without b_ih");
      held.push_back(require_writeable<float>(dbi[d], indexed("grad_b_ih", d).c_str(), {GH}));
      grads[d].b_ih = held.back().mutable_data();
    }
    if (!dbh[d].is_none()) {
      if (!c.weights[d].b_hh) throw py::value_error("grad_b_hh: the forward ran without b_hh");
      held.push_back(require_writeable<float>(dbh[d], indexed("grad_b_hh", d).c_str(), {GH}));
      grads[d].b_hh = held.back().mutable_data();
    }
  }
  py::object dx_obj = py::none();
  float* dx = nullptr;
  if (need_input_grad) {
    py::array_t<float> dx_arr({B, T, static_cast<py::ssize_t>(s.C)});
    dx = dx_arr.mutable_data();
    dx_obj = dx_arr;
  }
  py::array_t<float> dh0({static_cast<py::ssize_t>(D), B, H});
  py::object dc0_obj = py::none();
  float* dc0 = nullptr;
  if (c.kind == CellKind::Lstm) {
    py::array_t<float> dc0_arr({static_cast<py::ssize_t>(D), B, H});
    dc0 = dc0_arr.mutable_data();
    dc0_obj = dc0_arr;
  }
  {
    py::gil_scoped_release release;
    kernels().recurrent_backward(c, dy, dh_n, dc_n, grads.data(), dx, dh0.mutable_data(), dc0);
  }
  release(pc);
  return py::make_tuple(dx_obj, dh0, dc0_obj);
}

}  // namespace

void bind_recurrent(py::module_& m) {
  py::class_<PyRecurrentCache>(m, "RecurrentCache",
                               "Opaque state kept by recurrent_forward for recurrent_backward.");
  m.def("recurrent_forward", &forward, py::arg("mode"), py::arg("input"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(),
        py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("lengths") = py::none(), py::arg("reuse") = py::none(),
        R"doc(One recurrent layer over whole sequences, one or two directions.

mode: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'. input (B, T, C) float32; w_ih, w_hh,
b_ih, b_hh: lists of D arrays (G*H, C), (G*H, H), (G*H,), (G*H,) (biases may be None);
h0, c0 (D, B, H) or None; lengths (B,) int64 in [1, T] or None; reuse: a released
cache whose buffers this call takes over (or None).
Returns (output (B, T, D*H), h_n (D, B, H), c_n (D, B, H) or None, cache).)doc");
  m.def("recurrent_backward", &backward, py::arg("cache"), py::arg("grad_output"),
        py::arg("grad_h_n"), py::arg("grad_c_n"), py::arg("grad_w_ih"), py::arg("grad_w_hh"),
        py::arg("grad_b_ih") = py::none(), py::arg("grad_b_hh") = py::none(),
        py::arg("need_input_grad") = true,
        R"doc(Backward of recurrent_forward.

grad_output (B, T, D*H), grad_h_n, grad_c_n (D, B, H): each may be None (zero).
grad_w_ih ... grad_b_hh: lists of D float32 buffers (entries may be None) that the
parameter gradients are ADDED into. Returns (grad_input (B, T, C) or None when
need_input_grad is False, grad_h0 (D, B, H), grad_c0 (D, B, H) or None).
The cache is released afterwards: a second backward through it raises RuntimeError.)doc");
  m.def("recurrent_release", &release, py::arg("cache"),
        "Marks a cache whose backward will not run (e.g. computed without grad) as reusable.");
}

}  // namespace seqlab::bind
