// seqlab._core.layer_norm_forward / layer_norm_backward over the last axis.
#include <cmath>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/layer_norm.hpp"

namespace seqlab::bind {

namespace {

const float* optional_vector(const py::object& obj, const char* name, py::ssize_t C,
                             py::array_t<float, py::array::c_style>& hold, bool writeable) {
  if (obj.is_none()) return nullptr;
  hold = writeable ? require_writeable<float>(obj, name, {C}) : require<float>(obj, name, {C});
  return hold.data();
}

}  // namespace

void bind_layer_norm(py::module_& m) {
  m.def(
      "layer_norm_forward",
      [](const py::handle& x_obj, const py::object& w_obj, const py::object& b_obj, double eps) {
        auto x = require_nd<float>(x_obj, "input", 1);
        const py::ssize_t C = x.shape(x.ndim() - 1);
        if (C < 1) throw py::value_error("input: the normalised axis is empty, shape " + shape_str(x));
        if (!(eps >= 0.0) || !std::isfinite(eps)) throw py::value_error("eps: expected a finite value >= 0");
        py::array_t<float, py::array::c_style> wh, bh;
        const float* w = optional_vector(w_obj, "weight", C, wh, false);
        const float* b = optional_vector(b_obj, "bias", C, bh, false);
        const auto M = static_cast<std::size_t>(x.size() / C);
        py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        py::array_t<float> mean(static_cast<py::ssize_t>(M)), rstd(static_cast<py::ssize_t>(M));
        float *yp = y.mutable_data(), *mp = mean.mutable_data(), *rp = rstd.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().layer_norm_forward(x.data(), w, b, yp, mp, rp, M, static_cast<std::size_t>(C), static_cast<float>(eps));
        }
        return py::make_tuple(y, mean, rstd);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
      "LayerNorm over the last axis: input (*, C), weight/bias (C,) or None -> (y, mean (M,), rstd (M,)).");
  m.def(
      "layer_norm_backward",
      [](const py::handle& g_obj, const py::handle& x_obj, const py::object& w_obj, const py::handle& mean_obj,
         const py::handle& rstd_obj, const py::object& dw_obj, const py::object& db_obj, bool need_input_grad) {
        auto x = require_nd<float>(x_obj, "input", 1);
        auto g = require_nd<float>(g_obj, "grad_output", 1);
        require_same_shape(g, "grad_output", x, "input");
        const py::ssize_t C = x.shape(x.ndim() - 1);
        if (C < 1) throw py::value_error("input: the normalised axis is empty, shape " + shape_str(x));
        const auto M = static_cast<py::ssize_t>(x.size() / C);
        auto mean = require<float>(mean_obj, "mean", {M});
        auto rstd = require<float>(rstd_obj, "rstd", {M});
        py::array_t<float, py::array::c_style> wh, dwh, dbh;
        const float* w = optional_vector(w_obj, "weight", C, wh, false);
        float* dw = const_cast<float*>(optional_vector(dw_obj, "grad_weight", C, dwh, true));
        float* db = const_cast<float*>(optional_vector(db_obj, "grad_bias", C, dbh, true));
        py::object dx_obj = py::none();
        float* dx = nullptr;
        if (need_input_grad) {
          py::array_t<float> dxa(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
          dx = dxa.mutable_data();
          dx_obj = dxa;
        }
        {
          py::gil_scoped_release release;
          kernels().layer_norm_backward(g.data(), x.data(), w, mean.data(), rstd.data(), dx, dw, db,
                              static_cast<std::size_t>(M), static_cast<std::size_t>(C));
        }
        return dx_obj;
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("mean"), py::arg("rstd"),
      py::arg("grad_weight"), py::arg("grad_bias"), py::arg("need_input_grad"),
      "Returns grad_input (or None); adds into grad_weight / grad_bias (each may be None).");
}

}  // namespace seqlab::bind
