// seqlab._core.sgd_step / adam_step: one update over flat float32 buffers.
#include <cmath>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/adam.hpp"
#include "seqlab/sgd.hpp"

namespace seqlab::bind {

namespace {

using FlatArray = py::array_t<float, py::array::c_style>;

FlatArray flat(const py::handle& obj, const char* name, py::ssize_t n, bool writeable) {
  auto a = writeable ? require_writeable<float>(obj, name, {n}) : require<float>(obj, name, {n});
  return a;
}

void require_nonneg(double v, const char* name) {
  if (!(v >= 0.0) || std::isinf(v))
    throw py::value_error(std::string(name) + ": expected a finite value >= 0, got " + std::to_string(v));
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def(
      "sgd_step",
      [](const py::handle& p_obj, const py::handle& g_obj, const py::object& buf_obj, double lr,
         double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
         bool first) {
        auto p = require_writeable<float>(p_obj, "param", {-1});
        const py::ssize_t n = p.shape(0);
        auto g = flat(g_obj, "grad", n, false);
        require_nonneg(lr, "lr");
        require_nonneg(momentum, "momentum");
        require_nonneg(weight_decay, "weight_decay");
        FlatArray buf;
        float* bp = nullptr;
        if (momentum != 0.0) {
          if (buf_obj.is_none()) throw py::value_error("momentum_buffer: required when momentum != 0");
          buf = flat(buf_obj, "momentum_buffer", n, true);
          bp = buf.mutable_data();
        }
        SgdOptions o;
        o.lr = static_cast<float>(lr);
        o.momentum = static_cast<float>(momentum);
        o.dampening = static_cast<float>(dampening);
        o.weight_decay = static_cast<float>(weight_decay);
        o.nesterov = nesterov;
        o.maximize = maximize;
        float* pp = p.mutable_data();
        py::gil_scoped_release release;
        kernels().sgd_step(pp, g.data(), bp, static_cast<std::size_t>(n), o, first);
      },
      py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"),
      py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
      py::arg("nesterov") = false, py::arg("maximize") = false, py::arg("first") = false,
      "torch.optim.SGD's update in place over flat (n,) float32 buffers.");

  m.def(
      "adam_step",
      [](const py::handle& p_obj, const py::handle& g_obj, const py::handle& m_obj,
         const py::handle& v_obj, const py::object& vmax_obj, std::int64_t step, double lr,
         double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
         bool decoupled_weight_decay, bool maximize) {
        auto p = require_writeable<float>(p_obj, "param", {-1});
        const py::ssize_t n = p.shape(0);
        auto g = flat(g_obj, "grad", n, false);
        auto ma = flat(m_obj, "exp_avg", n, true);
        auto va = flat(v_obj, "exp_avg_sq", n, true);
        if (step < 1) throw py::value_error("step: expected >= 1, got " + std::to_string(step));
        require_nonneg(lr, "lr");
        require_nonneg(eps, "eps");
        require_nonneg(weight_decay, "weight_decay");
        if (!(beta1 >= 0.0 && beta1 < 1.0)) throw py::value_error("beta1: expected in [0, 1), got " + std::to_string(beta1));
        if (!(beta2 >= 0.0 && beta2 < 1.0)) throw py::value_error("beta2: expected in [0, 1), got " + std::to_string(beta2));
        FlatArray vmax;
        float* vmp = nullptr;
        if (amsgrad) {
          if (vmax_obj.is_none()) throw py::value_error("max_exp_avg_sq: required when amsgrad=True");
          vmax = flat(vmax_obj, "max_exp_avg_sq", n, true);
          vmp = vmax.mutable_data();
        }
        AdamOptions o;
        o.lr = lr;
        o.beta1 = beta1;
        o.beta2 = beta2;
        o.eps = eps;
        o.weight_decay = weight_decay;
        o.amsgrad = amsgrad;
        o.decoupled_weight_decay = decoupled_weight_decay;
        o.maximize = maximize;
        float* pp = p.mutable_data();
        float* mp = ma.mutable_data();
        float* vp = va.mutable_data();
        py::gil_scoped_release release;
        kernels().adam_step(pp, g.data(), mp, vp, vmp, static_cast<std::size_t>(n), o, step);
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
      py::arg("max_exp_avg_sq"), py::arg("step"), py::arg("lr"), py::arg("beta1") = 0.9,
      py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
      py::arg("amsgrad") = false, py::arg("decoupled_weight_decay") = false,
      py::arg("maximize") = false,
      "torch.optim.Adam/AdamW's update in place over flat (n,) float32 buffers; step counts from 1.");
}

}  // namespace seqlab::bind
