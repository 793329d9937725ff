// seqlab._core.embedding_forward / embedding_backward.
#include "array_checks.hpp"
#include "bindings.hpp"
#include "seqlab/kernels.hpp"
#include "seqlab/embedding.hpp"

namespace seqlab::bind {

namespace {

void check_indices(const py::array_t<std::int64_t, py::array::c_style>& idx, std::int64_t V) {
  std::int64_t bad;
  {
    py::gil_scoped_release release;
    bad = kernels().embedding_first_bad_index(idx.data(), static_cast<std::size_t>(idx.size()), V);
  }
  if (bad >= 0)
    throw py::value_error("input: index " + std::to_string(idx.data()[bad]) + " at flat position " +
                          std::to_string(bad) + " is out of range for an embedding with " +
                          std::to_string(V) + " rows (valid: 0.." + std::to_string(V - 1) + ")");
}

}  // namespace

void bind_embedding(py::module_& m) {
  m.def(
      "embedding_forward",
      [](const py::handle& idx_obj, const py::handle& w_obj) {
        auto w = require<float>(w_obj, "weight", {-1, -1});
        auto idx = require_nd<std::int64_t>(idx_obj, "input", 0);
        check_indices(idx, w.shape(0));
        std::vector<py::ssize_t> shape(idx.shape(), idx.shape() + idx.ndim());
        shape.push_back(w.shape(1));
        py::array_t<float> out(shape);
        float* op = out.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().embedding_forward(idx.data(), w.data(), op, static_cast<std::size_t>(idx.size()),
                            static_cast<std::size_t>(w.shape(1)));
        }
        return out;
      },
      py::arg("input"), py::arg("weight"),
      "Row lookup: input (*) int64 in [0, V), weight (V, D) float32 -> (*, D).");

  m.def(
      "embedding_backward",
      [](const py::handle& go_obj, const py::handle& idx_obj, const py::handle& gw_obj,
         std::int64_t padding_idx) {
        auto gw = require_writeable<float>(gw_obj, "grad_weight", {-1, -1});
        auto idx = require_nd<std::int64_t>(idx_obj, "input", 0);
        auto go = require_nd<float>(go_obj, "grad_output", 1);
        const std::size_t D = static_cast<std::size_t>(gw.shape(1));
        bool ok = go.ndim() == idx.ndim() + 1 && go.shape(go.ndim() - 1) == gw.shape(1);
        for (py::ssize_t i = 0; ok && i < idx.ndim(); ++i) ok = go.shape(i) == idx.shape(i);
        if (!ok) {
          std::vector<py::ssize_t> shape(idx.shape(), idx.shape() + idx.ndim());
          shape.push_back(gw.shape(1));
          throw py::value_error("grad_output: expected shape " + shape_str(py::array_t<float>(shape)) +
                                ", got " + shape_str(go));
        }
        check_indices(idx, gw.shape(0));
        float* gwp = gw.mutable_data();
        {
          py::gil_scoped_release release;
          kernels().embedding_backward(idx.data(), go.data(), gwp, static_cast<std::size_t>(idx.size()), D,
                             padding_idx);
        }
      },
      py::arg("grad_output"), py::arg("input"), py::arg("grad_weight"), py::arg("padding_idx") = -1,
      "ACCUMULATES grad_weight (V, D) += scatter-add of grad_output (*, D) by input (*), "
      "skipping rows whose index is padding_idx (-1: none).");
}

}  // namespace seqlab::bind
