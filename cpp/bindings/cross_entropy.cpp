// seqlab._core.cross_entropy_forward / cross_entropy_backward: fused softmax cross-entropy.
#include <cmath>
#include <string>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/cross_entropy.hpp"

namespace seqlab::bind {

void bind_cross_entropy(py::module_& m) {
  m.def(
      "cross_entropy_forward",
      [](const py::handle& x_obj, const py::handle& t_obj, std::int64_t ignore_index, double label_smoothing) {
        auto x = require<float>(x_obj, "input", {-1, -1});
        const py::ssize_t N = x.shape(0), V = x.shape(1);
        auto t = require<std::int64_t>(t_obj, "target", {N});
        if (V < 1) throw py::value_error("input: expected at least one class, got shape " + shape_str(x));
        if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
          throw py::value_error("label_smoothing: expected a value in [0, 1], got " + std::to_string(label_smoothing));
        const std::int64_t* tp = t.data();
        for (py::ssize_t i = 0; i < N; ++i)
          if (tp[i] != ignore_index && (tp[i] < 0 || tp[i] >= V))
            throw py::value_error("target: class index " + std::to_string(tp[i]) + " at position " + std::to_string(i) +
                                  " is out of range [0, " + std::to_string(V) + ") (ignore_index is " +
                                  std::to_string(ignore_index) + ")");
        py::array_t<float> loss(N), logsum(N);
        float *lp = loss.mutable_data(), *sp = logsum.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().cross_entropy_forward(x.data(), tp, lp, sp, static_cast<std::size_t>(N), static_cast<std::size_t>(V),
                                ignore_index, static_cast<float>(label_smoothing));
        }
        return py::make_tuple(loss, logsum);
      },
      py::arg("input"), py::arg("target"), py::arg("ignore_index"), py::arg("label_smoothing"),
      "input (N, V) logits, target (N,) int64 -> (loss (N,), logsumexp (N,)); ignored rows give 0.");
  m.def(
      "cross_entropy_backward",
      [](const py::handle& x_obj, const py::handle& t_obj, const py::handle& logsum_obj, const py::handle& g_obj,
         std::int64_t ignore_index, double label_smoothing) {
        auto x = require<float>(x_obj, "input", {-1, -1});
        const py::ssize_t N = x.shape(0), V = x.shape(1);
        auto t = require<std::int64_t>(t_obj, "target", {N});
        auto logsum = require<float>(logsum_obj, "logsum", {N});
        auto g = require<float>(g_obj, "grad_loss", {N});
        const std::int64_t* tp = t.data();
        for (py::ssize_t i = 0; i < N; ++i)
          if (tp[i] != ignore_index && (tp[i] < 0 || tp[i] >= V))
            throw py::value_error("target: class index " + std::to_string(tp[i]) + " out of range");
        py::array_t<float> gx({N, V});
        float* gp = gx.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().cross_entropy_backward(x.data(), tp, logsum.data(), g.data(), gp, static_cast<std::size_t>(N),
                                 static_cast<std::size_t>(V), ignore_index, static_cast<float>(label_smoothing));
        }
        return gx;
      },
      py::arg("input"), py::arg("target"), py::arg("logsum"), py::arg("grad_loss"), py::arg("ignore_index"),
      py::arg("label_smoothing"), "grad_input (N, V) = grad_loss * (softmax - smoothed one-hot).");
}

}  // namespace seqlab::bind
