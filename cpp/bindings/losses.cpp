// Bindings of the masked cosine + MSE loss: cosine_mse_forward / cosine_mse_backward.
#include <cmath>
#include <cstdint>
#include <string>

#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "checks.hpp"
#include "seqlab/losses.hpp"

namespace seqlab::bind {
namespace {

namespace py = pybind11;

CosineMseConfig make_config(float cosine_weight, float mse_weight, float temperature) {
  if (!std::isfinite(cosine_weight) || !std::isfinite(mse_weight))
    throw py::value_error("cosine_weight, mse_weight: expected finite numbers");
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    throw py::value_error("temperature: expected a positive finite number, got " + std::to_string(temperature));
  CosineMseConfig cfg;
  cfg.cosine_weight = cosine_weight;
  cfg.mse_weight = mse_weight;
  cfg.temperature = temperature;
  return cfg;
}

struct Checked {
  py::array_t<float, py::array::c_style> pred, target;
  py::array_t<std::int64_t, py::array::c_style> lengths;
  const std::int64_t* len = nullptr;
  int B = 0, T = 0, E = 0;
};

Checked check(const py::object& pred_obj, const py::object& target_obj, const py::object& lengths_obj) {
  Checked c;
  c.pred = require<float>(pred_obj, "pred", {-1, -1, -1});
  c.B = static_cast<int>(c.pred.shape(0));
  c.T = static_cast<int>(c.pred.shape(1));
  c.E = static_cast<int>(c.pred.shape(2));
  if (c.E < 1) throw py::value_error("pred: expected at least one feature, got shape " + shape_str(c.pred));
  c.target = require<float>(target_obj, "target", {c.B, c.T, c.E});
  if (!lengths_obj.is_none()) {
    c.lengths = require<std::int64_t>(lengths_obj, "lengths", {c.B});
    c.len = c.lengths.data();
    for (int b = 0; b < c.B; ++b)
      if (c.len[b] < 0 || c.len[b] > c.T)
        throw py::value_error("lengths: every length must be in [0, " + std::to_string(c.T) + "], got " +
                              std::to_string(c.len[b]) + " at index " + std::to_string(b));
  }
  return c;
}

py::tuple forward(const py::object& pred, const py::object& target, const py::object& lengths,
                  float cosine_weight, float mse_weight, float temperature) {
  const CosineMseConfig cfg = make_config(cosine_weight, mse_weight, temperature);
  Checked c = check(pred, target, lengths);
  py::array_t<float> tokens({static_cast<py::ssize_t>(c.B), static_cast<py::ssize_t>(c.T)});
  double total = 0.0;
  std::int64_t count = 0;
  {
    py::gil_scoped_release release;
    total = kernels().cosine_mse_forward(c.pred.data(), c.target.data(), c.len, c.B, c.T, c.E, cfg, tokens.mutable_data(),
                               &count);
  }
  return py::make_tuple(total, count, tokens);
}

py::tuple backward(const py::object& pred, const py::object& target, const py::object& lengths,
                   float cosine_weight, float mse_weight, float temperature, const py::object& token_grad_obj,
                   float scale, bool need_pred, bool need_target) {
  const CosineMseConfig cfg = make_config(cosine_weight, mse_weight, temperature);
  Checked c = check(pred, target, lengths);
  const float* token_grad = nullptr;
  py::array_t<float, py::array::c_style> tg;
  if (!token_grad_obj.is_none()) {
    tg = require<float>(token_grad_obj, "token_grad", {c.B, c.T});
    token_grad = tg.data();
  }
  const std::vector<py::ssize_t> shape = {c.B, c.T, c.E};
  py::object dp_obj = py::none(), dy_obj = py::none();
  float* dp = nullptr;
  float* dy = nullptr;
  if (need_pred) {
    py::array_t<float> a(shape);
    dp = a.mutable_data();
    dp_obj = a;
  }
  if (need_target) {
    py::array_t<float> a(shape);
    dy = a.mutable_data();
    dy_obj = a;
  }
  {
    py::gil_scoped_release release;
    kernels().cosine_mse_backward(c.pred.data(), c.target.data(), c.len, c.B, c.T, c.E, cfg, token_grad, scale, dp, dy);
  }
  return py::make_tuple(dp_obj, dy_obj);
}

}  // namespace

void bind_losses(py::module_& m) {
  m.def("cosine_mse_forward", &forward, py::arg("pred"), py::arg("target"), py::arg("lengths"),
        py::arg("cosine_weight"), py::arg("mse_weight"), py::arg("temperature"),
        R"doc(Masked cosine + MSE loss per token.

pred, target (B, T, E) float32; lengths (B,) int64 in [0, T] or None.
Returns (sum over real tokens (float), number of real tokens, per-token losses (B, T)
with zeros at padding).)doc");
  m.def("cosine_mse_backward", &backward, py::arg("pred"), py::arg("target"), py::arg("lengths"),
        py::arg("cosine_weight"), py::arg("mse_weight"), py::arg("temperature"), py::arg("token_grad"),
        py::arg("scale"), py::arg("need_pred") = true, py::arg("need_target") = false,
        R"doc(Backward of cosine_mse_forward.

token_grad (B, T): d objective / d per-token loss, or None for the constant `scale` on
every real token. Returns (grad_pred or None, grad_target or None), each (B, T, E).)doc");
}

}  // namespace seqlab::bind
