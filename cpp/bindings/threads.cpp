#include "bindings.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab::bind {

void bind_threads(pybind11::module_& m) {
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw pybind11::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
        pybind11::gil_scoped_release release;
        seqlab::set_num_threads(n);
      },
      pybind11::arg("n"), "Set the kernel thread pool and OpenBLAS to n threads.");
  m.def("get_num_threads", &seqlab::get_num_threads, "Threads used by kernels and OpenBLAS.");
  m.def("hardware_threads", &seqlab::hardware_threads, "Cores available to this process.");
  m.def("blas_kernel_family", &seqlab::blas_kernel_family,
        "The kernel family OpenBLAS chose for this CPU (its openblas_get_corename).");
}

}  // namespace seqlab::bind
