// seqlab._core.clip_grad_norm: global gradient-norm clipping in one pass.
#include <cmath>

#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/clip.hpp"

namespace seqlab::bind {

void bind_clip(py::module_& m) {
  m.def(
      "clip_grad_norm",
      [](const py::sequence& grads, double max_norm, double norm_type) {
        if (std::isnan(max_norm) || max_norm < 0.0)
          throw py::value_error("max_norm: expected a value >= 0, got " + std::to_string(max_norm));
        if (std::isnan(norm_type) || norm_type <= 0.0)
          throw py::value_error("norm_type: expected a value > 0 (or inf), got " + std::to_string(norm_type));
        std::vector<FloatSpan> spans;
        std::vector<py::array_t<float, py::array::c_style>> keep;
        keep.reserve(grads.size());
        for (std::size_t i = 0; i < grads.size(); ++i) {
          const std::string name = "grads[" + std::to_string(i) + "]";
          auto a = require_nd<float>(grads[i], name.c_str(), 0);
          require_writeable_array(a, name.c_str());
          keep.push_back(a);
          spans.push_back({keep.back().mutable_data(), static_cast<std::size_t>(a.size())});
        }
        py::gil_scoped_release release;
        const float total = kernels().grad_total_norm(spans, norm_type);
        kernels().grad_clip_scale(spans, total, static_cast<float>(max_norm));
        return total;
      },
      py::arg("grads"), py::arg("max_norm"), py::arg("norm_type") = 2.0,
      "Scales every array in grads in place by min(1, max_norm / (total + 1e-6)) where total is "
      "the norm_type-norm over all of them; returns total.");
}

}  // namespace seqlab::bind
