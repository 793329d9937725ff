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
         bool need_grad, bool bf16, const py::object& gx_obj, const py::object& gw_obj,
         const py::object& ws_obj) {
        auto x = require<float>(x_obj, "hidden", {-1, -1});
        const py::ssize_t N = x.shape(0), D = x.shape(1);
        auto w = require<float>(w_obj, "weight", {-1, D});
        const py::ssize_t V = w.shape(0);
        if (V < 1) throw py::value_error("weight: expected at least one class (row), got shape " + shape_str(w));
        auto t = require<std::int64_t>(t_obj, "target", {N});
        if (bf16 && std::string(kernels().bf16_gemm_engine()) != "amx")
          throw py::value_error(std::string("bf16: the fused bf16 op runs on AMX tiles; bf16_gemm_engine() is '") +
                                kernels().bf16_gemm_engine() + "' (use the unfused linear and cross_entropy)");
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
          py::array_t<float, py::array::c_style> gx =
              gx_obj.is_none() ? py::array_t<float, py::array::c_style>({N, D})
                               : require_writeable<float>(gx_obj, "grad_hidden", {N, D});
          py::array_t<float, py::array::c_style> gw =
              gw_obj.is_none() ? py::array_t<float, py::array::c_style>({V, D})
                               : require_writeable<float>(gw_obj, "grad_weight", {V, D});
          dxp = gx.mutable_data();
          dwp = gw.mutable_data();
          dx = gx;
          dw = gw;
        }
        void* wsp = nullptr;
        std::size_t ws_bytes = 0;
        if (!ws_obj.is_none()) {
          auto ws = require_writeable<float>(ws_obj, "workspace", {-1});
          wsp = ws.mutable_data();
          ws_bytes = static_cast<std::size_t>(ws.size()) * sizeof(float);
        }
        float* lp = loss.mutable_data();
        const float scale = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
        {
          py::gil_scoped_release release;
          kernels().linear_cross_entropy(x.data(), w.data(), tp, lp, dxp, dwp, static_cast<std::size_t>(N),
                                         static_cast<std::size_t>(D), static_cast<std::size_t>(V), ignore_index,
                                         scale, bf16, wsp, ws_bytes);
        }
        return py::make_tuple(loss, count, dx, dw);
      },
      py::arg("hidden"), py::arg("weight"), py::arg("target"), py::arg("ignore_index"), py::arg("need_grad"),
      py::arg("bf16") = false, py::arg("grad_hidden") = py::none(), py::arg("grad_weight") = py::none(),
      py::arg("workspace") = py::none(),
      "hidden (N, D), weight (V, D), target (N,) int64 -> (loss (N,) per row, 0 when ignored; count of "
      "non-ignored rows; grad_hidden (N, D) and grad_weight (V, D) of the MEAN loss, or None without "
      "need_grad). bf16: the three products on AMX tiles, operands rounded to bf16, fp32 accumulation "
      "(needs bf16_gemm_engine() == 'amx'). grad_hidden / grad_weight: float32 arrays of those shapes to "
      "write the gradients into (else new ones); workspace: a float32 1-D scratch array of at least "
      "linear_cross_entropy_workspace(...) bytes, reused between calls (else the kernel allocates).");
  m.def(
      "linear_cross_entropy_workspace",
      [](py::ssize_t N, py::ssize_t D, py::ssize_t V, bool need_grad, bool bf16) {
        if (N < 0 || D < 0 || V < 0) throw py::value_error("linear_cross_entropy_workspace: negative shape");
        return kernels().linear_cross_entropy_workspace(static_cast<std::size_t>(N), static_cast<std::size_t>(D),
                                                        static_cast<std::size_t>(V), need_grad, bf16);
      },
      py::arg("N"), py::arg("D"), py::arg("V"), py::arg("need_grad"), py::arg("bf16") = false,
      "Bytes of scratch linear_cross_entropy uses for hidden (N, D) and weight (V, D) at the current thread "
      "count.");
}

}  // namespace seqlab::bind
