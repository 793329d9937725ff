// Level selection (see cpu_dispatch.hpp and kernels.hpp). Compiled once, at the baseline.
#include "seqlab/cpu_dispatch.hpp"

#include <cstdlib>
#include <stdexcept>

#include "seqlab/kernels.hpp"

#ifdef SEQLAB_NATIVE_BUILD
namespace seqlab::native {
const Kernels& kernel_table();
}
#else
namespace seqlab::v2 {
const Kernels& kernel_table();
}
namespace seqlab::v3 {
const Kernels& kernel_table();
}
namespace seqlab::v4 {
const Kernels& kernel_table();
}
namespace seqlab::v4bf16 {
const Kernels& kernel_table();
}
#endif

namespace seqlab {
namespace {

struct Level {
  const char* name;
  const Kernels& (*table)();
};

// The levels this build holds, lowest first; x86-64-v4-bf16 is x86-64-v4 + AVX512_BF16
// (the bf16 GEMM paths).
const std::vector<Level>& built_levels() {
#ifdef SEQLAB_NATIVE_BUILD
  static const std::vector<Level> levels{{"native", &native::kernel_table}};
#else
  static const std::vector<Level> levels{
      {"x86-64-v2", &v2::kernel_table}, {"x86-64-v3", &v3::kernel_table}, {"x86-64-v4", &v4::kernel_table},
      {"x86-64-v4-bf16", &v4bf16::kernel_table}};
#endif
  return levels;
}

std::vector<std::string> level_names() {
  std::vector<std::string> names;
  for (const Level& l : built_levels()) names.emplace_back(l.name);
  return names;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

DispatchInfo choose() {
  DispatchInfo info;
  info.levels = level_names();
#ifdef SEQLAB_NATIVE_BUILD
  info.build = "native";
#else
  info.build = "dispatch";
#endif
  const char* arch = std::getenv("SEQLAB_ARCH");
  const std::string requested = arch ? arch : "";
  info.forced = !requested.empty();
  if (info.forced && info.build == "native")
    throw std::runtime_error("SEQLAB_ARCH=" + requested +
                             ": this seqlab is a native build (SEQLAB_NATIVE=ON), compiled for the building "
                             "machine alone, with no levels to choose from; unset SEQLAB_ARCH or install the "
                             "default (dispatched) build");
  std::set<std::string> features;
  for (const auto& [name, present] : cpu_features())
    if (present) features.insert(name);
  info.level = select_level(requested, info.levels, features);
  return info;
}

}  // namespace

std::map<std::string, bool> cpu_features() {
  __builtin_cpu_init();
  // __builtin_cpu_supports reads cpuid and, for AVX and AVX-512, XGETBV (the OS saves
  // the registers); AMX is reported as the CPU has it.
  return {
      {"sse3", __builtin_cpu_supports("sse3") != 0},
      {"ssse3", __builtin_cpu_supports("ssse3") != 0},
      {"sse4_1", __builtin_cpu_supports("sse4.1") != 0},
      {"sse4_2", __builtin_cpu_supports("sse4.2") != 0},
      {"popcnt", __builtin_cpu_supports("popcnt") != 0},
      {"cx16", __builtin_cpu_supports("cmpxchg16b") != 0},
      {"avx", __builtin_cpu_supports("avx") != 0},
      {"avx2", __builtin_cpu_supports("avx2") != 0},
      {"fma", __builtin_cpu_supports("fma") != 0},
      {"bmi1", __builtin_cpu_supports("bmi") != 0},
      {"bmi2", __builtin_cpu_supports("bmi2") != 0},
      {"f16c", __builtin_cpu_supports("f16c") != 0},
      {"lzcnt", __builtin_cpu_supports("lzcnt") != 0},
      {"movbe", __builtin_cpu_supports("movbe") != 0},
      {"avx512f", __builtin_cpu_supports("avx512f") != 0},
      {"avx512bw", __builtin_cpu_supports("avx512bw") != 0},
      {"avx512cd", __builtin_cpu_supports("avx512cd") != 0},
      {"avx512dq", __builtin_cpu_supports("avx512dq") != 0},
      {"avx512vl", __builtin_cpu_supports("avx512vl") != 0},
      {"avx512_vnni", __builtin_cpu_supports("avx512vnni") != 0},
      {"avx512_bf16", __builtin_cpu_supports("avx512bf16") != 0},
      {"amx_tile", __builtin_cpu_supports("amx-tile") != 0},
      {"amx_int8", __builtin_cpu_supports("amx-int8") != 0},
      {"amx_bf16", __builtin_cpu_supports("amx-bf16") != 0},
  };
}

const std::vector<std::string>& level_requirements(const std::string& level) {
  static const std::map<std::string, std::vector<std::string>> needs = [] {
    std::map<std::string, std::vector<std::string>> m;
    m["native"] = {};
    m["x86-64-v2"] = {"sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16"};
    m["x86-64-v3"] = m["x86-64-v2"];
    for (const char* f : {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt", "movbe"}) m["x86-64-v3"].push_back(f);
    m["x86-64-v4"] = m["x86-64-v3"];
    for (const char* f : {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}) m["x86-64-v4"].push_back(f);
    m["x86-64-v4-bf16"] = m["x86-64-v4"];
    m["x86-64-v4-bf16"].push_back("avx512_bf16");
    return m;
  }();
  const auto it = needs.find(level);
  if (it == needs.end()) throw std::invalid_argument("unknown level: " + level);
  return it->second;
}

std::string select_level(const std::string& requested, const std::vector<std::string>& built,
                         const std::set<std::string>& features) {
  auto missing = [&](const std::string& level) {
    std::vector<std::string> lacks;
    for (const std::string& f : level_requirements(level))
      if (!features.count(f)) lacks.push_back(f);
    return lacks;
  };
  std::string best;
  for (const std::string& level : built)
    if (missing(level).empty()) best = level;
  if (requested.empty()) {
    if (best.empty())
      throw std::runtime_error("this CPU lacks " + join(missing(built.front()), ", ") + ", which the lowest level, " +
                               built.front() + ", needs");
    return best;
  }
  bool known = false;
  for (const std::string& level : built) known = known || level == requested;
  if (!known)
    throw std::runtime_error("SEQLAB_ARCH=" + requested + " is not a level of this build; valid values: " +
                             join(built, ", "));
  const std::vector<std::string> lacks = missing(requested);
  if (!lacks.empty())
    throw std::runtime_error("SEQLAB_ARCH=" + requested + " asks for a level this CPU lacks (no " + join(lacks, ", ") +
                             "); the CPU's best level is " + (best.empty() ? std::string("none") : best));
  return requested;
}

const DispatchInfo& dispatch_info() {
  static const DispatchInfo info = choose();
  return info;
}

const Kernels& kernels() {
  static const Kernels* const table = []() -> const Kernels* {
    const std::string& level = dispatch_info().level;
    for (const Level& l : built_levels())
      if (level == l.name) return &l.table();
    throw std::logic_error("no kernel table for level " + level);
  }();
  return *table;
}

}  // namespace seqlab
