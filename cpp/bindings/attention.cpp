// Bindings of scaled dot-product attention: attention_forward / attention_backward and
// the opaque AttentionCache. Tensors are strided numpy views (B, H, T, D) whose last
// axis is contiguous, so packed projections and merged-head outputs need no copies.
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "checks.hpp"
#include "seqlab/attention.hpp"
#include "seqlab/kv_attention.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;

// The kernel cache plus references keeping the forward's inputs and output alive.
// After its backward (or attention_release) it is `released`: the references are dropped,
// its buffers may be handed to a later forward (attention_forward(reuse=...)), and a
// second backward through it is refused (as PyTorch frees a graph after backward).
struct PyAttentionCache {
  AttentionCache cache;
  py::object q, k, v, o, mask, key_bias;
  AttnView qv, kv, vv, ov;
  bool released = false;
};

struct View4 {
  py::array arr;
  float* data = nullptr;
  std::int64_t shape[4] = {0, 0, 0, 0};
  std::int64_t stride[4] = {0, 0, 0, 0};  // in elements
};

std::string shape4(const View4& v) {
  return "(" + std::to_string(v.shape[0]) + ", " + std::to_string(v.shape[1]) + ", " + std::to_string(v.shape[2]) +
         ", " + std::to_string(v.shape[3]) + ")";
}

// A 4-d float32 array, any non-negative element strides, last axis contiguous.
View4 view4(const py::handle& obj, const char* name, bool writeable) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array of float32, got " +
                         std::string(Py_TYPE(obj.ptr())->tp_name));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array_t<float>>(a) || a.dtype().itemsize() != sizeof(float))
    throw py::type_error(std::string(name) + ": expected dtype float32, got " + std::string(py::str(a.dtype())));
  if (a.ndim() != 4)
    throw py::value_error(std::string(name) + ": expected shape (batch, heads, seq, features), got " + shape_str(a));
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  View4 v;
  v.arr = a;
  v.data = static_cast<float*>(const_cast<void*>(a.data()));
  for (int i = 0; i < 4; ++i) {
    v.shape[i] = a.shape(i);
    const py::ssize_t st = a.strides(i);
    if (st < 0 || st % static_cast<py::ssize_t>(sizeof(float)) != 0)
      throw py::value_error(std::string(name) + ": strides must be non-negative multiples of 4 bytes");
    v.stride[i] = st / static_cast<py::ssize_t>(sizeof(float));
    if (v.stride[i] > std::numeric_limits<int>::max())
      throw py::value_error(std::string(name) + ": stride beyond the BLAS int range");
  }
  if (v.shape[3] > 1 && v.stride[3] != 1)
    throw py::value_error(std::string(name) + ": the last axis of an array of shape " + shape4(v) +
                          " must be contiguous");
  return v;
}

void expect(const View4& v, const char* name, std::int64_t b, std::int64_t h, std::int64_t t, std::int64_t d,
            const char* what) {
  if (v.shape[0] != b || v.shape[1] != h || v.shape[2] != t || (d >= 0 && v.shape[3] != d))
    throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(b) + ", " + std::to_string(h) +
                          ", " + std::to_string(t) + ", " + (d >= 0 ? std::to_string(d) : std::string("*")) +
                          ") " + what + ", got " + shape4(v));
}

void release(PyAttentionCache& pc) {
  pc.released = true;
  pc.q = pc.k = pc.v = pc.o = pc.mask = pc.key_bias = py::none();
  pc.qv = pc.kv = pc.vv = pc.ov = AttnView{};
  pc.cache.opts.mask = nullptr;
  pc.cache.opts.key_bias = nullptr;
}

AttnView cview(const View4& v) { return {v.data, v.stride[0], v.stride[1], v.stride[2]}; }
AttnMutView mview(const View4& v) { return {v.data, v.stride[0], v.stride[1], v.stride[2]}; }

py::tuple forward(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj,
                  const py::handle& out_obj, const py::object& mask_obj, const py::object& kb_obj, double scale,
                  bool causal, double dropout_p, std::uint64_t seed, bool flash, bool need_weights,
                  const py::object& reuse) {
  View4 q = view4(q_obj, "query", false);
  const std::int64_t B = q.shape[0], H = q.shape[1], Tq = q.shape[2], D = q.shape[3];
  View4 k = view4(k_obj, "key", false);
  if (k.shape[0] != B || k.shape[1] != H || k.shape[3] != D)
    throw py::value_error("key: expected shape (" + std::to_string(B) + ", " + std::to_string(H) + ", *, " +
                          std::to_string(D) + ") to match query " + shape4(q) + ", got " + shape4(k));
  const std::int64_t Tk = k.shape[2];
  View4 v = view4(v_obj, "value", false);
  expect(v, "value", B, H, Tk, -1, "to match key");
  const std::int64_t Dv = v.shape[3];
  View4 o = view4(out_obj, "out", true);
  expect(o, "out", B, H, Tq, Dv, "(query's batch, heads, seq and value's features)");
  if (!(dropout_p >= 0.0 && dropout_p < 1.0))
    throw py::value_error("dropout_p: expected a probability in [0, 1), got " + std::to_string(dropout_p));
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  if (Tq > kIntMax || Tk > kIntMax || D > kIntMax || Dv > kIntMax || Tq * Tk > kIntMax * 8LL)
    throw py::value_error("query/key: sequence lengths beyond the supported range");

  auto pc = std::make_unique<PyAttentionCache>();
  if (!reuse.is_none()) {
    auto& old = reuse.cast<PyAttentionCache&>();  // TypeError if not an AttentionCache
    if (!old.released)
      throw py::value_error("reuse: the cache's backward has not run yet (or call attention_release first)");
    pc->cache.probs = std::move(old.cache.probs);
    pc->cache.lse = std::move(old.cache.lse);
  }
  AttnOptions opts;
  opts.scale = static_cast<float>(scale);
  opts.causal = causal;
  opts.dropout_p = static_cast<float>(dropout_p);
  opts.seed = seed;
  opts.flash = flash && !need_weights;
  if (!mask_obj.is_none()) {
    View4 m = view4(mask_obj, "attn_mask", false);
    expect(m, "attn_mask", B, H, Tq, Tk, "(broadcast to batch, heads, query seq, key seq)");
    opts.mask = m.data;
    opts.mb = m.stride[0];
    opts.mh = m.stride[1];
    opts.mq = m.stride[2];
    pc->mask = m.arr;
  }
  if (!kb_obj.is_none()) {
    auto kb = require<float>(kb_obj, "key_padding_bias", {B, Tk});
    opts.key_bias = kb.data();
    pc->key_bias = kb;
  }
  AttnShape s;
  s.B = static_cast<int>(B);
  s.H = static_cast<int>(H);
  s.Tq = static_cast<int>(Tq);
  s.Tk = static_cast<int>(Tk);
  s.D = static_cast<int>(D);
  s.Dv = static_cast<int>(Dv);
  py::object weights_obj = py::none();
  float* weights = nullptr;
  if (need_weights) {
    py::array_t<float> w({B, H, Tq, Tk});
    weights = w.mutable_data();
    weights_obj = w;
  }
  pc->q = q.arr;
  pc->k = k.arr;
  pc->v = v.arr;
  pc->o = o.arr;
  pc->qv = cview(q);
  pc->kv = cview(k);
  pc->vv = cview(v);
  pc->ov = cview(o);
  {
    py::gil_scoped_release release;
    kernels().attention_forward(s, opts, pc->qv, pc->kv, pc->vv, mview(o), weights, pc->cache);
  }
  return py::make_tuple(weights_obj, py::cast(std::move(pc)));
}

void backward(PyAttentionCache& pc, const py::handle& g_obj, const py::object& dq_obj, const py::object& dk_obj,
              const py::object& dv_obj, const py::object& overwrite) {
  AttnOverwrite ow;
  if (!overwrite.is_none()) {
    const auto flags = overwrite.cast<py::tuple>();  // TypeError for anything but a tuple
    if (flags.size() != 3)
      throw py::value_error("overwrite: expected 3 flags (grad_query, grad_key, grad_value), got " +
                            std::to_string(flags.size()));
    ow = {flags[0].cast<bool>(), flags[1].cast<bool>(), flags[2].cast<bool>()};
  }
  if (pc.released)
    throw std::runtime_error(
        "attention_backward: this cache was already used by a backward pass (its buffers are "
        "freed for reuse, as PyTorch frees a graph after backward); run the forward again");
  const AttnShape& s = pc.cache.shape;
  View4 g = view4(g_obj, "grad_output", false);
  expect(g, "grad_output", s.B, s.H, s.Tq, s.Dv, "(that of the output)");
  AttnMutView dq, dk, dv;
  View4 dqa, dka, dva;
  if (!dq_obj.is_none()) {
    dqa = view4(dq_obj, "grad_query", true);
    expect(dqa, "grad_query", s.B, s.H, s.Tq, s.D, "(that of query)");
    dq = mview(dqa);
  }
  if (!dk_obj.is_none()) {
    dka = view4(dk_obj, "grad_key", true);
    expect(dka, "grad_key", s.B, s.H, s.Tk, s.D, "(that of key)");
    dk = mview(dka);
  }
  if (!dv_obj.is_none()) {
    dva = view4(dv_obj, "grad_value", true);
    expect(dva, "grad_value", s.B, s.H, s.Tk, s.Dv, "(that of value)");
    dv = mview(dva);
  }
  {
    py::gil_scoped_release unlocked;
    kernels().attention_backward(pc.cache, pc.qv, pc.kv, pc.vv, pc.ov, cview(g), dq, dk, dv, ow);
  }
  release(pc);
}

// Incremental attention against a key/value cache (generation); see kv_attention.hpp.
void kv_forward(const py::handle& q_obj, const py::handle& k_obj, const py::handle& v_obj,
                const py::handle& kc_obj, const py::handle& vc_obj, std::int64_t pos, const py::handle& out_obj,
                double scale) {
  View4 q = view4(q_obj, "query", false);
  const std::int64_t B = q.shape[0], H = q.shape[1], Tn = q.shape[2], D = q.shape[3];
  View4 k = view4(k_obj, "key", false);
  expect(k, "key", B, H, Tn, D, "(that of query)");
  View4 v = view4(v_obj, "value", false);
  expect(v, "value", B, H, Tn, -1, "(query's batch, heads and seq)");
  const std::int64_t Dv = v.shape[3];
  View4 kc = view4(kc_obj, "key_cache", true);
  const std::int64_t Tmax = kc.shape[2];
  expect(kc, "key_cache", B, H, Tmax, D, "(query's batch, heads and features)");
  View4 vc = view4(vc_obj, "value_cache", true);
  expect(vc, "value_cache", B, H, Tmax, Dv, "(key_cache's batch, heads and length, value's features)");
  for (const View4* c : {&kc, &vc})
    if (c->stride[2] != c->shape[3] || c->stride[1] != c->shape[2] * c->shape[3] ||
        c->stride[0] != c->shape[1] * c->stride[1])
      throw py::value_error("key_cache/value_cache: must be C-contiguous arrays");
  View4 o = view4(out_obj, "out", true);
  expect(o, "out", B, H, Tn, Dv, "(query's batch, heads, seq and value's features)");
  if (pos < 0 || pos + Tn > Tmax)
    throw py::value_error("pos: " + std::to_string(pos) + " cached positions plus " + std::to_string(Tn) +
                          " new ones exceed the cache length " + std::to_string(Tmax));
  if (!std::isfinite(scale)) throw py::value_error("scale: must be finite");
  if (Tmax > std::numeric_limits<int>::max() || D > std::numeric_limits<int>::max())
    throw py::value_error("key_cache: sizes beyond the supported range");
  KvShape s;
  s.B = static_cast<int>(B);
  s.H = static_cast<int>(H);
  s.Tn = static_cast<int>(Tn);
  s.Tmax = static_cast<int>(Tmax);
  s.D = static_cast<int>(D);
  s.Dv = static_cast<int>(Dv);
  s.pos = static_cast<int>(pos);
  py::gil_scoped_release unlocked;
  kernels().kv_cache_attention(s, static_cast<float>(scale), cview(q), cview(k), cview(v), kc.data, vc.data, mview(o));
}

}  // namespace

void bind_attention(py::module_& m) {
  py::class_<PyAttentionCache>(m, "AttentionCache",
                               "Opaque state of one attention forward (probabilities or row logsumexp).")
      .def_property_readonly("flash", [](const PyAttentionCache& c) { return c.cache.opts.flash; })
      .def_property_readonly("workspace_bytes", [](const PyAttentionCache& c) {
        return (c.cache.probs.size() + c.cache.lse.size()) * sizeof(float);
      });
  m.def("attention_forward", &forward, py::arg("query"), py::arg("key"), py::arg("value"), py::arg("out"),
        py::arg("attn_mask") = py::none(), py::arg("key_padding_bias") = py::none(), py::arg("scale") = 1.0,
        py::arg("causal") = false, py::arg("dropout_p") = 0.0, py::arg("seed") = 0, py::arg("flash") = false,
        py::arg("need_weights") = false, py::arg("reuse") = py::none(),
        "Scaled dot-product attention. query (B, H, Tq, D), key (B, H, Tk, D), value (B, H, Tk, Dv) and\n"
        "out (B, H, Tq, Dv), written in place, are float32 views with a contiguous last axis;\n"
        "attn_mask an additive float view broadcast to (B, H, Tq, Tk); key_padding_bias additive (B, Tk).\n"
        "Returns (weights (B, H, Tq, Tk) after dropout or None, cache). need_weights forces the plain path.\n"
        "reuse: a cache whose backward has run; its buffer is recycled and it is released.");
  m.def("attention_backward", &backward, py::arg("cache"), py::arg("grad_output"), py::arg("grad_query"),
        py::arg("grad_key"), py::arg("grad_value"), py::arg("overwrite") = py::none(),
        "Adds the gradients into grad_query/grad_key/grad_value views (each may be None), then\n"
        "releases the cache (a second backward through it raises RuntimeError). overwrite: None or a\n"
        "tuple of three bools; a flagged gradient is written instead of added to (its buffer may be uninitialised).");
  m.def("attention_release", &release, py::arg("cache"),
        "Drops the cache's references to its inputs without a backward (no gradient needed), so its\n"
        "buffer can be reused by a later forward.");
  m.def("kv_cache_attention", &kv_forward, py::arg("query"), py::arg("key"), py::arg("value"),
        py::arg("key_cache"), py::arg("value_cache"), py::arg("pos"), py::arg("out"), py::arg("scale"),
        "Incremental causal attention for generation. Writes key (B, H, Tn, D) and value (B, H, Tn, Dv)\n"
        "into key_cache (B, H, Tmax, D) / value_cache (B, H, Tmax, Dv) at positions [pos, pos + Tn), then\n"
        "writes out (B, H, Tn, Dv): query i attends over cached positions 0 .. pos + i. query, key,\n"
        "value and out are float32 views with a contiguous last axis; the caches are C-contiguous.");
}

}  // namespace seqlab::bind
