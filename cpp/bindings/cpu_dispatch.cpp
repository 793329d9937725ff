#include <pybind11/stl.h>

#include "bindings.hpp"
#include "seqlab/cpu_dispatch.hpp"
#include "seqlab/kernels.hpp"

namespace seqlab::bind {

void bind_cpu_dispatch(pybind11::module_& m) {
  // The level is chosen here, at import: an impossible SEQLAB_ARCH fails the import.
  seqlab::kernels();
  m.def("cpu_features", &seqlab::cpu_features,
        "The CPU's features relevant to the kernel levels -> supported (cpuid and XGETBV).");
  m.def(
      "dispatch_info",
      [] {
        const DispatchInfo& info = seqlab::dispatch_info();
        pybind11::dict d;
        d["levels"] = info.levels;
        d["level"] = info.level;
        d["forced"] = info.forced;
        d["build"] = info.build;
        return d;
      },
      "The kernel levels this build holds, the one selected at import, whether SEQLAB_ARCH forced "
      "it, and the build (\"dispatch\" or \"native\").");
  m.def(
      "select_level",
      [](const std::string& requested, const std::vector<std::string>& built, const std::set<std::string>& features) {
        try {
          return seqlab::select_level(requested, built, features);
        } catch (const std::invalid_argument& e) {
          throw pybind11::value_error(e.what());
        }
      },
      pybind11::arg("requested"), pybind11::arg("built"), pybind11::arg("features"),
      "The level import would select for SEQLAB_ARCH=requested ('' for none) among the built levels, "
      "given a CPU's feature names; raises RuntimeError as import does.");
}

}  // namespace seqlab::bind
