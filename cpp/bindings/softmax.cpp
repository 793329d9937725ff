// seqlab._core.softmax_forward / softmax_backward over the last axis.
#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/softmax.hpp"

namespace seqlab::bind {

void bind_softmax(py::module_& m) {
  m.def(
      "softmax_forward",
      [](const py::handle& x_obj) {
        auto x = require_nd<float>(x_obj, "input", 1);
        const auto cols = static_cast<std::size_t>(x.shape(x.ndim() - 1));
        const std::size_t rows = cols ? static_cast<std::size_t>(x.size()) / cols : 0;
        py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().softmax_forward(x.data(), yp, rows, cols);
        }
        return y;
      },
      py::arg("input"), "Softmax over the last axis: input (*, C) float32 -> (*, C).");
  m.def(
      "softmax_backward",
      [](const py::handle& g_obj, const py::handle& y_obj) {
        auto y = require_nd<float>(y_obj, "output", 1);
        auto g = require_nd<float>(g_obj, "grad_output", 1);
        require_same_shape(g, "grad_output", y, "output");
        const auto cols = static_cast<std::size_t>(y.shape(y.ndim() - 1));
        const std::size_t rows = cols ? static_cast<std::size_t>(y.size()) / cols : 0;
        py::array_t<float> gx(std::vector<py::ssize_t>(y.shape(), y.shape() + y.ndim()));
        float* gp = gx.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().softmax_backward(g.data(), y.data(), gp, rows, cols);
        }
        return gx;
      },
      py::arg("grad_output"), py::arg("output"), "grad_input = y * (g - sum(g * y, -1)).");
}

}  // namespace seqlab::bind
