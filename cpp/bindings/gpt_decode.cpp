// seqlab._core.GptDecoder: the fused incremental step of a GPT decoder (gpt_decode.hpp)
// over a model's parameters and key/value caches, both held by reference (no copies).
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "checks.hpp"
#include "seqlab/gpt_decode.hpp"
#include "seqlab/kernels.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;

class PyGptDecoder {
 public:
  PyGptDecoder(const py::dict& params, const py::list& key_caches, const py::list& value_caches, int n_heads,
               double eps, bool gelu_tanh) {
    const auto wte = take(params, "wte.weight", {-1, -1});
    s_.V = static_cast<int>(wte.shape(0));
    s_.E = static_cast<int>(wte.shape(1));
    const py::ssize_t E = s_.E;
    if (n_heads < 1 || s_.E % n_heads)
      throw py::value_error("n_heads: " + std::to_string(n_heads) + " must be >= 1 and divide d_model " +
                            std::to_string(s_.E));
    if (!(eps >= 0.0) || !std::isfinite(eps)) throw py::value_error("eps: expected a finite value >= 0");
    s_.H = n_heads;
    s_.eps = static_cast<float>(eps);
    s_.gelu_tanh = gelu_tanh;
    w_.wte = wte.data();
    const auto wpe = take(params, "wpe.weight", {-1, E});
    s_.Tmax = static_cast<int>(wpe.shape(0));
    w_.wpe = wpe.data();
    w_.lnf_w = take(params, "ln_f.weight", {E}).data();
    w_.lnf_b = optional(params, "ln_f.bias", {E});
    if (key_caches.size() != value_caches.size() || key_caches.size() == 0)
      throw py::value_error("key_caches/value_caches: expected one array per block in each, got " +
                            std::to_string(key_caches.size()) + " and " + std::to_string(value_caches.size()));
    s_.L = static_cast<int>(key_caches.size());
    const py::ssize_t Dh = E / n_heads;
    for (int l = 0; l < s_.L; ++l) {
      const std::string p = "blocks." + std::to_string(l) + ".";
      GptBlockWeights b;
      b.ln1_w = take(params, p + "ln_1.weight", {E}).data();
      b.ln1_b = optional(params, p + "ln_1.bias", {E});
      b.qkv_w = take(params, p + "attn.in_proj_weight", {3 * E, E}).data();
      b.qkv_b = optional(params, p + "attn.in_proj_bias", {3 * E});
      b.out_w = take(params, p + "attn.out_proj.weight", {E, E}).data();
      b.out_b = optional(params, p + "attn.out_proj.bias", {E});
      b.ln2_w = take(params, p + "ln_2.weight", {E}).data();
      b.ln2_b = optional(params, p + "ln_2.bias", {E});
      const auto fc = take(params, p + "mlp.0.weight", {-1, E});
      s_.F = static_cast<int>(fc.shape(0));
      b.fc_w = fc.data();
      b.fc_b = optional(params, p + "mlp.0.bias", {s_.F});
      b.proj_w = take(params, p + "mlp.2.weight", {E, s_.F}).data();
      b.proj_b = optional(params, p + "mlp.2.bias", {E});
      w_.blocks.push_back(b);
      const std::string kn = "key_caches[" + std::to_string(l) + "]", vn = "value_caches[" + std::to_string(l) + "]";
      auto kc = require_writeable<float>(key_caches[static_cast<std::size_t>(l)], kn.c_str(),
                                               {l == 0 ? -1 : s_.B, n_heads, s_.Tmax, Dh});
      if (l == 0) s_.B = static_cast<int>(kc.shape(0));
      auto vc = require_writeable<float>(value_caches[static_cast<std::size_t>(l)], vn.c_str(),
                                               {s_.B, n_heads, s_.Tmax, Dh});
      held_.push_back(kc);
      held_.push_back(vc);
      keys_.push_back(kc.mutable_data());
      values_.push_back(vc.mutable_data());
    }
    if (s_.B < 1) throw py::value_error("key_caches[0]: the batch axis is empty");
  }

  void step(const py::handle& ids_obj, std::int64_t pos, const py::handle& logits_obj) {
    const auto ids = require<std::int64_t>(ids_obj, "ids", {s_.B, -1});
    const auto Tn = ids.shape(1);
    if (Tn < 1) throw py::value_error("ids: expected at least one new token per sequence, got shape " + shape_str(ids));
    if (pos < 0 || pos + Tn > s_.Tmax)
      throw py::value_error("pos: " + std::to_string(pos) + " cached positions plus " + std::to_string(Tn) +
                            " new ones exceed the maximum length " + std::to_string(s_.Tmax));
    const std::int64_t* id = ids.data();
    for (py::ssize_t i = 0; i < ids.size(); ++i)
      if (id[i] < 0 || id[i] >= s_.V)
        throw py::value_error("ids: token id " + std::to_string(id[i]) + " at flat index " + std::to_string(i) +
                              " is outside [0, " + std::to_string(s_.V) + ")");
    auto logits = require_writeable<float>(logits_obj, "logits", {s_.B, s_.V});
    GptDecodeShape s = s_;
    s.Tn = static_cast<int>(Tn);
    float* out = logits.mutable_data();
    py::gil_scoped_release unlocked;
    const std::lock_guard<std::mutex> one_step_at_a_time(mutex_);  // the buffers and caches are shared
    kernels().gpt_decode_step(s, w_, id, static_cast<int>(pos), keys_.data(), values_.data(), out, buffers_);
  }

  int batch() const { return s_.B; }
  int max_len() const { return s_.Tmax; }
  int vocab_size() const { return s_.V; }

 private:
  py::array_t<float, py::array::c_style> take(const py::dict& params, const std::string& name,
                                              std::initializer_list<py::ssize_t> shape) {
    if (!params.contains(name)) throw py::key_error("params: no parameter named '" + name + "'");
    auto a = require<float>(params[name.c_str()], ("params['" + name + "']").c_str(), shape);
    held_.push_back(a);
    return a;
  }
  const float* optional(const py::dict& params, const std::string& name, std::initializer_list<py::ssize_t> shape) {
    if (!params.contains(name) || params[name.c_str()].is_none()) return nullptr;
    return take(params, name, shape).data();
  }

  GptDecodeShape s_;
  GptWeights w_;
  std::vector<py::array> held_;  // keeps every parameter and cache alive while the pointers are used
  std::vector<float*> keys_, values_;
  GptDecodeBuffers buffers_;
  std::mutex mutex_;
};

}  // namespace

void bind_gpt_decode(py::module_& m) {
  py::class_<PyGptDecoder>(m, "GptDecoder",
                           "The fused incremental step of a GPT decoder over its parameters and key/value caches,\n"
                           "read and written in place (see seqlab.models.code_lm.FusedDecoder).")
      .def(py::init<const py::dict&, const py::list&, const py::list&, int, double, bool>(), py::arg("params"),
           py::arg("key_caches"), py::arg("value_caches"), py::arg("n_heads"), py::arg("eps") = 1e-5,
           py::arg("gelu_tanh") = true,
           "params: float32 arrays by nanoGPT name (wte.weight (V, E), wpe.weight (Tmax, E), blocks.N.ln_1.*,\n"
           "blocks.N.attn.in_proj_*, blocks.N.attn.out_proj.*, blocks.N.ln_2.*, blocks.N.mlp.0.*, blocks.N.mlp.2.*,\n"
           "ln_f.*; biases optional); key_caches/value_caches: one C-contiguous (B, H, Tmax, E / H) array per block.")
      .def("step", &PyGptDecoder::step, py::arg("ids"), py::arg("pos"), py::arg("logits"),
           "ids (B, Tn) int64, the tokens after the pos cached positions: appends their keys and values to the\n"
           "caches and writes logits (B, V) of each sequence's last new token.")
      .def_property_readonly("batch", &PyGptDecoder::batch)
      .def_property_readonly("max_len", &PyGptDecoder::max_len)
      .def_property_readonly("vocab_size", &PyGptDecoder::vocab_size);
}

}  // namespace seqlab::bind
