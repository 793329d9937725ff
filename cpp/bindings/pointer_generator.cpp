// Bindings of the teacher-forced pointer-generator decoder: pointer_generator_forward /
// pointer_generator_backward and the opaque cache between them.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "checks.hpp"
#include "seqlab/pointer_generator.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;
using farray = py::array_t<float, py::array::c_style>;
using iarray = py::array_t<std::int64_t, py::array::c_style>;

struct PyPointerGeneratorCache {
  PointerGeneratorCache cache;
  std::vector<py::object> keep_alive;
  bool released = false;
};

void release(PyPointerGeneratorCache& pc) {
  pc.released = true;
  pc.keep_alive.clear();
  pc.cache.dec.memory = nullptr;
  pc.cache.dec.w = DecoderWeights{};
  pc.cache.w_out = nullptr;
  pc.cache.b_out = nullptr;
  pc.cache.w_gen = nullptr;
}

const float* keep(const py::handle& obj, const char* name, std::initializer_list<py::ssize_t> shape,
                  PyPointerGeneratorCache& pc, bool optional = false) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::type_error(std::string(name) + ": expected a numpy array of float32, got None");
  }
  auto a = require<float>(obj, name, shape);
  pc.keep_alive.push_back(a);
  return a.data();
}

std::string extended_what(std::int64_t V, std::int64_t extended_size) {
  return "extended ids: vocabulary " + std::to_string(V) + " + " + std::to_string(extended_size - V) +
         " out-of-vocabulary slots";
}

// Every id of `ids` in [0, limit); the message names the argument, the index and what the limit is.
void require_ids_below(const iarray& ids, const char* name, std::int64_t limit, const std::string& what) {
  const std::int64_t* p = ids.data();
  const py::ssize_t cols = ids.shape(1);
  for (py::ssize_t i = 0; i < ids.size(); ++i)
    if (p[i] < 0 || p[i] >= limit)
      throw py::value_error(std::string(name) + ": every id must be in [0, " + std::to_string(limit) + ") (" + what +
                            "), got " + std::to_string(p[i]) + " at [" + std::to_string(i / cols) + ", " +
                            std::to_string(i % cols) + "]");
}

// The arguments both the teacher-forced forward and the stepper take, checked; the
// arrays are appended to keep_alive.
struct Parsed {
  PointerGeneratorShape shape;
  DecoderWeights w;
  const float* w_gen = nullptr;
  const float* b_gen = nullptr;
  const float* memory = nullptr;
  const std::int64_t* lengths = nullptr;
  const std::int64_t* source = nullptr;
};

Parsed parse(const py::object& start, const py::object& w_ih, const py::object& w_hh, const py::object& b_ih,
             const py::object& b_hh, const py::object& attention, int num_heads, const py::object& w_out,
             const py::object& b_out, const py::object& w_gen, const py::object& b_gen,
             const py::object& memory_obj, const py::object& lengths_obj, const py::object& source_obj,
             std::int64_t extended_size, std::vector<py::object>& keep_alive) {
  Parsed r;
  DecoderShape& s = r.shape.dec;
  auto hold = [&](const py::handle& obj, const char* name, std::initializer_list<py::ssize_t> shape,
                  bool optional = false) -> const float* {
    if (obj.is_none()) {
      if (optional) return nullptr;
      throw py::type_error(std::string(name) + ": expected a numpy array of float32, got None");
    }
    auto a = require<float>(obj, name, shape);
    keep_alive.push_back(a);
    return a.data();
  };
  auto w_hh_arr = require<float>(w_hh, "w_hh", {-1, -1});
  s.H = static_cast<int>(w_hh_arr.shape(1));
  const py::ssize_t H = s.H;
  if (s.H < 1 || w_hh_arr.shape(0) != 4 * H)
    throw py::value_error("w_hh: expected shape (4*hidden, hidden) (an LSTM), got " + shape_str(w_hh_arr));
  keep_alive.push_back(w_hh_arr);
  r.w.w_hh = w_hh_arr.data();
  auto w_ih_arr = require<float>(w_ih, "w_ih", {4 * H, -1});
  s.E = static_cast<int>(w_ih_arr.shape(1));
  if (s.E < 1) throw py::value_error("w_ih: expected shape (4*hidden, input), got " + shape_str(w_ih_arr));
  keep_alive.push_back(w_ih_arr);
  r.w.w_ih = w_ih_arr.data();
  const py::ssize_t E = s.E;
  r.w.start = hold(start, "start", {E}, true);
  r.w.b_ih = hold(b_ih, "b_ih", {4 * H}, true);
  r.w.b_hh = hold(b_hh, "b_hh", {4 * H}, true);
  auto w_out_arr = require<float>(w_out, "w_out", {-1, 2 * H});
  s.O = static_cast<int>(w_out_arr.shape(0));
  if (s.O < 1)
    throw py::value_error("w_out: expected (vocabulary, 2*hidden) with a vocabulary of at least 1, got " +
                          shape_str(w_out_arr));
  keep_alive.push_back(w_out_arr);
  r.w.w_out = w_out_arr.data();
  const py::ssize_t V = s.O;
  r.w.b_out = hold(b_out, "b_out", {V}, true);
  r.w_gen = hold(w_gen, "w_gen", {1, 2 * H + E});
  r.b_gen = hold(b_gen, "b_gen", {1}, true);
  if (num_heads < 1 || s.H % num_heads != 0)
    throw py::value_error("num_heads: must be a positive divisor of the hidden size " + std::to_string(H) + ", got " +
                          std::to_string(num_heads));
  auto mem = require<float>(memory_obj, "memory", {-1, -1, -1});
  s.B = static_cast<int>(mem.shape(0));
  s.S = static_cast<int>(mem.shape(1));
  s.A = static_cast<int>(mem.shape(2));
  s.heads = num_heads;
  if (s.B < 1 || s.S < 1 || s.A < 1)
    throw py::value_error("memory: expected a non-empty (batch, S, A) array, got shape " + shape_str(mem));
  keep_alive.push_back(mem);
  r.memory = mem.data();
  const py::ssize_t A = s.A, S = s.S, B = s.B;
  if (!py::isinstance<py::sequence>(attention) || py::len(attention) != 8)
    throw py::type_error("attention: expected a sequence of 8 arrays (w_q, w_k, w_v, b_q, b_k, b_v, w_o, b_o)");
  auto a = py::reinterpret_borrow<py::sequence>(attention);
  r.w.w_q = hold(a[0], "w_q", {H, H});
  r.w.w_k = hold(a[1], "w_k", {H, A});
  r.w.w_v = hold(a[2], "w_v", {H, A});
  r.w.b_q = hold(a[3], "b_q", {H}, true);
  r.w.b_k = hold(a[4], "b_k", {H}, true);
  r.w.b_v = hold(a[5], "b_v", {H}, true);
  r.w.w_o = hold(a[6], "w_o", {H, H});
  r.w.b_o = hold(a[7], "b_o", {H}, true);
  if (!lengths_obj.is_none()) {
    auto len_arr = require<std::int64_t>(lengths_obj, "memory_lengths", {B});
    keep_alive.push_back(len_arr);
    r.lengths = len_arr.data();
    for (py::ssize_t b = 0; b < B; ++b)
      if (r.lengths[b] < 1 || r.lengths[b] > s.S)
        throw py::value_error("memory_lengths: every length must be in [1, " + std::to_string(s.S) +
                              "] (the memory's length), got " + std::to_string(r.lengths[b]) + " at index " +
                              std::to_string(b));
  }
  if (extended_size < V)
    throw py::value_error("extended_size: must be at least the vocabulary size " + std::to_string(V) +
                          " (w_out's rows), got " + std::to_string(extended_size));
  r.shape.extended = static_cast<int>(extended_size);
  auto source = require<std::int64_t>(source_obj, "source_ids", {B, S});
  keep_alive.push_back(source);
  require_ids_below(source, "source_ids", extended_size, extended_what(V, extended_size));
  r.source = source.data();
  return r;
}

py::tuple forward(const py::object& inputs_obj, const py::object& start, const py::object& w_ih,
                  const py::object& w_hh, const py::object& b_ih, const py::object& b_hh,
                  const py::object& attention, int num_heads, const py::object& w_out,
                  const py::object& b_out, const py::object& w_gen, const py::object& b_gen,
                  const py::object& memory_obj, const py::object& lengths_obj,
                  const py::object& source_obj, const py::object& target_obj, const py::object& mask_obj,
                  std::int64_t extended_size, const py::object& h0_obj, const py::object& c0_obj,
                  const py::object& reuse) {
  auto pc = std::make_unique<PyPointerGeneratorCache>();
  if (!reuse.is_none()) {
    auto& old = reuse.cast<PyPointerGeneratorCache&>();
    if (old.released) pc->cache = std::move(old.cache);
  }
  if (start.is_none()) throw py::type_error("start: expected a numpy array of float32, got None");
  Parsed p = parse(start, w_ih, w_hh, b_ih, b_hh, attention, num_heads, w_out, b_out, w_gen, b_gen, memory_obj,
                   lengths_obj, source_obj, extended_size, pc->keep_alive);
  DecoderShape& s = p.shape.dec;
  const py::ssize_t B = s.B, E = s.E, H = s.H;
  auto inputs = require<float>(inputs_obj, "inputs", {B, -1, E});
  s.T = static_cast<int>(inputs.shape(1));
  if (s.T < 1) throw py::value_error("inputs: expected at least one step, got shape " + shape_str(inputs));
  pc->keep_alive.push_back(inputs);
  const py::ssize_t T = s.T;
  auto target = require<std::int64_t>(target_obj, "target_ids", {B, T});
  auto mask = require<std::uint8_t>(mask_obj, "target_mask", {B, T});
  require_ids_below(target, "target_ids", extended_size, extended_what(s.O, extended_size));
  const float* h0 = keep(h0_obj, "h0", {B, H}, *pc, true);
  const float* c0 = keep(c0_obj, "c0", {B, H}, *pc, true);
  float loss = 0.0f;
  {
    py::gil_scoped_release unlocked;
    loss = kernels().pointer_generator_forward(p.shape, p.w, p.w_gen, p.b_gen, inputs.data(), h0, c0, p.memory, p.lengths,
                                     p.source, target.data(), mask.data(), pc->cache);
  }
  return py::make_tuple(loss, py::cast(std::move(pc)));
}

// A stepper plus the arrays its pointers read.
struct PyStepper {
  std::vector<py::object> keep_alive;
  std::unique_ptr<PointerGeneratorStepper> stepper;
};

std::unique_ptr<PyStepper> make_stepper(const py::object& w_ih, const py::object& w_hh, const py::object& b_ih,
                                        const py::object& b_hh, const py::object& attention, int num_heads,
                                        const py::object& w_out, const py::object& b_out, const py::object& w_gen,
                                        const py::object& b_gen, const py::object& memory,
                                        const py::object& lengths, const py::object& source,
                                        std::int64_t extended_size, const std::string& precision) {
  if (precision != "fp32" && precision != "bf16")
    throw py::value_error("precision: expected \"fp32\" or \"bf16\" (the vocabulary logits' weight), got \"" +
                          precision + "\"");
  auto ps = std::make_unique<PyStepper>();
  Parsed p = parse(py::none(), w_ih, w_hh, b_ih, b_hh, attention, num_heads, w_out, b_out, w_gen, b_gen, memory,
                   lengths, source, extended_size, ps->keep_alive);
  py::gil_scoped_release unlocked;
  ps->stepper = kernels().make_pointer_generator_stepper(p.shape, p.w, p.w_gen, p.b_gen, p.memory, p.lengths,
                                                        p.source, precision == "bf16");
  return ps;
}

// The checked arguments of a step: rows (N,) naming examples, x (N, E), h, c (N, H).
struct StepArgs {
  iarray rows;
  farray x, h, c;
  py::ssize_t N = 0;
};

StepArgs step_args(const PyStepper& ps, const py::object& rows_obj, const py::object& x_obj,
                   const py::object& h_obj, const py::object& c_obj) {
  const PointerGeneratorShape& shape = ps.stepper->shape();
  const py::ssize_t E = shape.dec.E, H = shape.dec.H;
  StepArgs a;
  a.rows = require<std::int64_t>(rows_obj, "rows", {-1});
  a.N = a.rows.shape(0);
  if (a.N < 1) throw py::value_error("rows: expected at least one row to advance");
  for (py::ssize_t n = 0; n < a.N; ++n)
    if (a.rows.data()[n] < 0 || a.rows.data()[n] >= shape.dec.B)
      throw py::value_error("rows: every row must name an example in [0, " + std::to_string(shape.dec.B) +
                            "), got " + std::to_string(a.rows.data()[n]) + " at index " + std::to_string(n));
  a.x = require<float>(x_obj, "x", {a.N, E});
  a.h = require<float>(h_obj, "h", {a.N, H});
  a.c = require<float>(c_obj, "c", {a.N, H});
  return a;
}

py::tuple step(PyStepper& ps, const py::object& rows_obj, const py::object& x_obj, const py::object& h_obj,
               const py::object& c_obj, bool need_attention) {
  const PointerGeneratorShape& shape = ps.stepper->shape();
  const py::ssize_t H = shape.dec.H, X = shape.extended, S = shape.dec.S;
  StepArgs in = step_args(ps, rows_obj, x_obj, h_obj, c_obj);
  const py::ssize_t N = in.N;
  const iarray& rows = in.rows;
  const farray &x = in.x, &h = in.h, &c = in.c;
  py::array_t<float> log_probs({N, X}), h_new({N, H}), c_new({N, H});
  py::object att_obj = py::none();
  float* att = nullptr;
  if (need_attention) {
    py::array_t<float> a({N, S});
    att = a.mutable_data();
    att_obj = a;
  }
  {
    py::gil_scoped_release unlocked;
    ps.stepper->step(static_cast<int>(N), rows.data(), x.data(), h.data(), c.data(), h_new.mutable_data(),
                     c_new.mutable_data(), log_probs.mutable_data(), att);
  }
  return py::make_tuple(log_probs, h_new, c_new, att_obj);
}

py::tuple step_top_k(PyStepper& ps, const py::object& rows_obj, const py::object& x_obj, const py::object& h_obj,
                     const py::object& c_obj, int k) {
  const PointerGeneratorShape& shape = ps.stepper->shape();
  const py::ssize_t H = shape.dec.H;
  if (k < 1 || k > shape.extended)
    throw py::value_error("k: expected a count in [1, " + std::to_string(shape.extended) +
                          "] (the extended vocabulary), got " + std::to_string(k));
  StepArgs in = step_args(ps, rows_obj, x_obj, h_obj, c_obj);
  const py::ssize_t N = in.N;
  py::array_t<float> values({N, static_cast<py::ssize_t>(k)}), h_new({N, H}), c_new({N, H});
  py::array_t<std::int64_t> ids({N, static_cast<py::ssize_t>(k)});
  {
    py::gil_scoped_release unlocked;
    ps.stepper->step(static_cast<int>(N), in.rows.data(), in.x.data(), in.h.data(), in.c.data(),
                     h_new.mutable_data(), c_new.mutable_data(), nullptr, nullptr, k, values.mutable_data(),
                     ids.mutable_data());
  }
  return py::make_tuple(values, ids, h_new, c_new);
}

constexpr int kGradCount = 17;

py::tuple backward(PyPointerGeneratorCache& pc, float d_loss, const py::object& grads_obj, bool need_inputs_grad,
                   bool need_memory_grad) {
  if (pc.released)
    throw std::runtime_error(
        "pointer_generator_backward: this cache was already used by a backward pass; run the forward again");
  PointerGeneratorCache& c = pc.cache;
  const DecoderShape& s = c.shape.dec;
  const py::ssize_t B = s.B, T = s.T, H = s.H, E = s.E, A = s.A, V = s.O, S = s.S;
  static const char* names[kGradCount] = {"start", "w_ih", "w_hh", "b_ih", "b_hh", "w_q", "w_k", "w_v", "b_q",
                                          "b_k", "b_v", "w_o", "b_o", "w_out", "b_out", "w_gen", "b_gen"};
  if (!py::isinstance<py::sequence>(grads_obj) || py::len(grads_obj) != kGradCount)
    throw py::type_error("grads: expected a sequence of 17 buffers or None (start, w_ih, w_hh, b_ih, b_hh, w_q, w_k, "
                         "w_v, b_q, b_k, b_v, w_o, b_o, w_out, b_out, w_gen, b_gen)");
  const std::vector<std::vector<py::ssize_t>> shapes = {{E}, {4 * H, E}, {4 * H, H}, {4 * H}, {4 * H}, {H, H},
                                                        {H, A}, {H, A}, {H}, {H}, {H}, {H, H}, {H}, {V, 2 * H},
                                                        {V}, {1, 2 * H + E}, {1}};
  auto seq = py::reinterpret_borrow<py::sequence>(grads_obj);
  float* ptr[kGradCount] = {};
  std::vector<farray> held;
  for (int i = 0; i < kGradCount; ++i) {
    py::object gi = seq[i];
    if (gi.is_none()) continue;
    const std::string name = std::string("grad_") + names[i];
    const auto& sh = shapes[i];
    farray arr = sh.size() == 1 ? require_writeable<float>(gi, name.c_str(), {sh[0]})
                                : require_writeable<float>(gi, name.c_str(), {sh[0], sh[1]});
    ptr[i] = arr.mutable_data();
    held.push_back(arr);
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
  if (!c.dec.w.b_ih) g.b_ih = nullptr;
  if (!c.dec.w.b_hh) g.b_hh = nullptr;
  py::array_t<float> dh0({B, H}), dc0({B, H});
  py::object d_in_obj = py::none(), dmem_obj = py::none();
  float* d_in = nullptr;
  float* dmem = nullptr;
  if (need_inputs_grad) {
    py::array_t<float> arr({B, T, E});
    d_in = arr.mutable_data();
    d_in_obj = arr;
  }
  if (need_memory_grad) {
    py::array_t<float> arr({B, S, A});
    dmem = arr.mutable_data();
    dmem_obj = arr;
  }
  {
    py::gil_scoped_release unlocked;
    kernels().pointer_generator_backward(c, d_loss, g, ptr[15], ptr[16], d_in, dh0.mutable_data(), dc0.mutable_data(), dmem);
  }
  release(pc);
  return py::make_tuple(d_in_obj, dh0, dc0, dmem_obj);
}

}  // namespace

void bind_pointer_generator(py::module_& m) {
  py::class_<PyPointerGeneratorCache>(m, "PointerGeneratorCache",
                                      "Opaque state kept by pointer_generator_forward for its backward.");
  m.def("pointer_generator_forward", &forward, py::arg("inputs"), py::arg("start"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih"), py::arg("b_hh"), py::arg("attention"), py::arg("num_heads"), py::arg("w_out"),
        py::arg("b_out"), py::arg("w_gen"), py::arg("b_gen"), py::arg("memory"), py::arg("memory_lengths"),
        py::arg("source_ids"), py::arg("target_ids"), py::arg("target_mask"), py::arg("extended_size"),
        py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("reuse") = py::none(),
        R"doc(Teacher-forced pointer-generator decoder and its masked NLL (one fused op).

inputs (B, T, E) float32: step t reads inputs[:, t-1], step 0 start (E,). LSTM weights
w_ih (4H, E), w_hh (4H, H), b_ih, b_hh (4H,) or None; attention = (w_q (H, H), w_k (H, A),
w_v (H, A), b_q, b_k, b_v (H,) or None, w_o (H, H), b_o (H,) or None) with num_heads
dividing H over memory (B, S, A), memory_lengths (B,) int64 in [1, S] or None;
w_out (V, 2H), b_out (V,) or None; w_gen (1, 2H + E), b_gen (1,) or None; source_ids (B, S)
and target_ids (B, T) int64 extended ids in [0, extended_size); target_mask (B, T) uint8;
h0, c0 (B, H) or None. The copy distribution is the heads' mean attention.
Returns (mean NLL over the masked steps, cache).)doc");
  m.def("pointer_generator_backward", &backward, py::arg("cache"), py::arg("grad_loss"), py::arg("grads"),
        py::arg("need_inputs_grad") = true, py::arg("need_memory_grad") = true,
        R"doc(Backward of pointer_generator_forward for a loss gradient grad_loss.

grads: 17 float32 buffers (or None) the parameter gradients are ADDED into: start, w_ih,
w_hh, b_ih, b_hh, w_q, w_k, w_v, b_q, b_k, b_v, w_o, b_o, w_out, b_out, w_gen, b_gen.
Returns (grad_inputs (B, T, E) or None, grad_h0 (B, H), grad_c0 (B, H), grad_memory
(B, S, A) or None). The cache is released afterwards.)doc");
  m.def("pointer_generator_release", &release, py::arg("cache"),
        "Marks a cache whose backward will not run as reusable.");
  py::class_<PyStepper>(m, "PointerGeneratorStepper",
                        R"doc(Incremental pointer-generator decoding over a batch of encoded sources.

PointerGeneratorStepper(w_ih, w_hh, b_ih, b_hh, attention, num_heads, w_out, b_out, w_gen,
b_gen, memory (B, S, A), memory_lengths (B,) or None, source_ids (B, S), extended_size,
precision="fp32"): the weights as pointer_generator_forward's; keys and values are
projected once here. precision="bf16" streams a bf16 copy of w_out (made here) in every
step, half the bytes, and re-scores in fp32 every id that can rank among a row's top k
(top 1 for step), so the ids chosen are fp32's (up to near ties of a copied and a
vocabulary id); their log-probabilities differ only through the other ids' bf16 terms
in the log-sum-exp (~1e-6 on peaked rows, up to ~1e-4 on flat ones).)doc")
      .def(py::init(&make_stepper), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
           py::arg("attention"), py::arg("num_heads"), py::arg("w_out"), py::arg("b_out"), py::arg("w_gen"),
           py::arg("b_gen"), py::arg("memory"), py::arg("memory_lengths"), py::arg("source_ids"),
           py::arg("extended_size"), py::arg("precision") = "fp32")
      .def("step", &step, py::arg("rows"), py::arg("x"), py::arg("h"), py::arg("c"),
           py::arg("need_attention") = false,
           R"doc(One token for N rows: rows (N,) int64 example indices, x (N, E) input
embeddings, h, c (N, H). Returns (log_probs (N, X) over the extended ids, h (N, H),
c (N, H), attention (N, S) head-mean weights or None).)doc")
      .def("step_top_k", &step_top_k, py::arg("rows"), py::arg("x"), py::arg("h"), py::arg("c"), py::arg("k"),
           R"doc(The same step returning only each row's k most likely next ids: rows (N,),
x (N, E), h, c (N, H), k in [1, X]. Returns (log_probs (N, k) largest first, ids (N, k)
int64 extended ids (ties: the smaller id first), h (N, H), c (N, H)); the (N, X)
log-probabilities are never copied out (what beam search reads).)doc");
}

}  // namespace seqlab::bind
