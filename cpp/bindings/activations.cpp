// seqlab._core elementwise activations: sigmoid, tanh, relu, gelu (forward/backward).
#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/activations.hpp"

namespace seqlab::bind {

namespace {

using Forward = void (*)(const float*, float*, std::size_t);
using Backward = void (*)(const float*, const float*, float*, std::size_t);

py::array_t<float> run_forward(const py::handle& x_obj, Forward f) {
  auto x = require_nd<float>(x_obj, "input", 0);
  py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    f(x.data(), yp, static_cast<std::size_t>(x.size()));
  }
  return y;
}

py::array_t<float> run_backward(const py::handle& g_obj, const py::handle& s_obj, const char* saved,
                                Backward f) {
  auto s = require_nd<float>(s_obj, saved, 0);
  auto g = require_nd<float>(g_obj, "grad_output", 0);
  require_same_shape(g, "grad_output", s, saved);
  py::array_t<float> gx(std::vector<py::ssize_t>(s.shape(), s.shape() + s.ndim()));
  float* gp = gx.mutable_data();
  {
    py::gil_scoped_release release;
    f(g.data(), s.data(), gp, static_cast<std::size_t>(s.size()));
  }
  return gx;
}

// y = kernel(a, b) of two same-shape arrays (add_relu_forward, add_forward).
template <class Kernel>
py::array_t<float> same_shape_binary(const py::handle& a_obj, const py::handle& b_obj, Kernel kernel) {
  auto a = require_nd<float>(a_obj, "input", 0);
  auto b = require_nd<float>(b_obj, "other", 0);
  require_same_shape(b, "other", a, "input");
  py::array_t<float> y(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(a.data(), b.data(), yp, static_cast<std::size_t>(a.size()));
  }
  return y;
}

py::array_t<float> add_relu(const py::handle& a_obj, const py::handle& b_obj) {
  return same_shape_binary(a_obj, b_obj, kernels().add_relu_forward);
}

py::array_t<float> add(const py::handle& a_obj, const py::handle& b_obj) {
  return same_shape_binary(a_obj, b_obj, kernels().add_forward);
}

bool gelu_mode(const std::string& approximate) {
  if (approximate == "none") return false;
  if (approximate == "tanh") return true;
  throw py::value_error("approximate: expected 'none' or 'tanh', got '" + approximate + "'");
}

}  // namespace

void bind_activations(py::module_& m) {
  m.def("sigmoid_forward", [](const py::handle& x) { return run_forward(x, kernels().sigmoid_forward); },
        py::arg("input"), "1 / (1 + exp(-x)), any shape float32.");
  m.def("sigmoid_backward",
        [](const py::handle& g, const py::handle& y) { return run_backward(g, y, "output", kernels().sigmoid_backward); },
        py::arg("grad_output"), py::arg("output"), "grad * y * (1 - y).");
  m.def("tanh_forward", [](const py::handle& x) { return run_forward(x, kernels().tanh_forward); },
        py::arg("input"), "tanh(x), any shape float32.");
  m.def("tanh_backward",
        [](const py::handle& g, const py::handle& y) { return run_backward(g, y, "output", kernels().tanh_backward); },
        py::arg("grad_output"), py::arg("output"), "grad * (1 - y^2).");
  m.def("relu_forward", [](const py::handle& x) { return run_forward(x, kernels().relu_forward); },
        py::arg("input"), "max(x, 0), any shape float32.");
  m.def("add_relu_forward", &add_relu, py::arg("input"), py::arg("other"),
        "max(input + other, 0) for two float32 arrays of the same shape (backward: relu_backward).");
  m.def("add_forward", &add, py::arg("input"), py::arg("other"),
        "input + other for two C-contiguous float32 arrays of the same shape, split over the thread pool.");
  m.def("relu_backward",
        [](const py::handle& g, const py::handle& y) { return run_backward(g, y, "output", kernels().relu_backward); },
        py::arg("grad_output"), py::arg("output"), "grad where y > 0, else 0.");
  m.def(
      "gelu_forward",
      [](const py::handle& x_obj, const std::string& approximate) {
        const bool tanh_mode = gelu_mode(approximate);
        auto x = require_nd<float>(x_obj, "input", 0);
        py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().gelu_forward(x.data(), yp, static_cast<std::size_t>(x.size()), tanh_mode);
        }
        return y;
      },
      py::arg("input"), py::arg("approximate") = "none",
      "GELU, exact (erf-based) or approximate='tanh' as torch, any shape float32.");
  m.def(
      "gelu_backward",
      [](const py::handle& g_obj, const py::handle& x_obj, const std::string& approximate) {
        const bool tanh_mode = gelu_mode(approximate);
        auto x = require_nd<float>(x_obj, "input", 0);
        auto g = require_nd<float>(g_obj, "grad_output", 0);
        require_same_shape(g, "grad_output", x, "input");
        py::array_t<float> gx(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        float* gp = gx.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().gelu_backward(g.data(), x.data(), gp, static_cast<std::size_t>(x.size()), tanh_mode);
        }
        return gx;
      },
      py::arg("grad_output"), py::arg("input"), py::arg("approximate") = "none",
      "Backward of gelu_forward from the saved input.");
}

}  // namespace seqlab::bind
