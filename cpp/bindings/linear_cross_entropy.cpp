// seqlab._core.linear_cross_entropy: the tied output layer fused with its mean cross-entropy.
#include <string>

#include "bindings.hpp"
#include "checks.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/linear_cross_entropy.hpp"

namespace seqlab::bind {

void bind_linear_cross_entropy(py::module_& m) {
  m.def(
      "linear_cross_entropy",
      [](const py::handle& x_obj, const py::handle& w_obj, const py::handle& t_obj, std::int64_t ignore_index,
         bool need_grad) {
        auto x = require<float>(x_obj, "hidden", {-1, -1});
        const py::ssize_t N = x.shape(0), D = x.shape(1);
        auto w = require<float>(w_obj, "weight", {-1, D});
        const py::ssize_t V = w.shape(0);
        if (V < 1) throw py::value_error("weight: expected at least one class (row), got shape " + shape_str(w));
        auto t = require<std::int64_t>(t_obj, "target", {N});
        const std::int64_t* tp = t.data();
        py::ssize_t count = 0;
        for (py::ssize_t i = 0; i < N; ++i) {
          if (tp[i] == ignore_index) continue;
          if (tp[i] < 0 || tp[i] >= V)
            throw py::value_error("target: class index " + std::to_string(tp[i]) + " at position " + std::to_string(i) +
                                  " is out of range [0, " + std::to_string(V) + ") (ignore_index is " +
                                  std::to_string(ignore_index) + ")");
          ++count;
        }
        py::array_t<float> loss(N);
        py::object dx = py::none(), dw = py::none();
        float *dxp = nullptr, *dwp = nullptr;
        if (need_grad) {
          py::array_t<float> gx({N, D}), gw({V, D});
          dxp = gx.mutable_data();
          dwp = gw.mutable_data();
          dx = gx;
          dw = gw;
        }
        float* lp = loss.mutable_data();
        const float scale = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
        {
          py::gil_scoped_release release;
          kernels().linear_cross_entropy(x.data(), w.data(), tp, lp, dxp, dwp, static_cast<std::size_t>(N),
                                         static_cast<std::size_t>(D), static_cast<std::size_t>(V), ignore_index,
                                         scale);
        }
        return py::make_tuple(loss, count, dx, dw);
      },
      py::arg("hidden"), py::arg("weight"), py::arg("target"), py::arg("ignore_index"), py::arg("need_grad"),
      "hidden (N, D), weight (V, D), target (N,) int64 -> (loss (N,) per row, 0 when ignored; count of "
      "non-ignored rows; grad_hidden (N, D) and grad_weight (V, D) of the MEAN loss, or None without "
      "need_grad).");
}

}  // namespace seqlab::bind
