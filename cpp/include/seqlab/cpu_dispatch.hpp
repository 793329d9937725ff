// Which instruction-set level of the kernels runs: the CPU's features, the levels this
// build holds, and the choice made once at import (the best level the CPU has, or the
// one SEQLAB_ARCH names).
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

namespace seqlab {

// The CPU's features that matter to the levels (and to the bf16 level to come):
// sse4_2, avx2, fma, avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16, avx512_vnni,
// amx_tile, ... -> supported (by the CPU and, for AVX and AVX-512, the OS: cpuid plus XGETBV).
std::map<std::string, bool> cpu_features();

// The features a level needs (x86-64 psABI levels; "native" needs none).
const std::vector<std::string>& level_requirements(const std::string& level);

// The level to run: `requested` (a SEQLAB_ARCH value, "" for none) among `built`, given
// the CPU's `features`. Without a request: the last (highest) built level the features
// cover. Throws std::runtime_error naming the requested level and the CPU's best when the
// CPU lacks it, or listing the valid values when `requested` is none of them.
std::string select_level(const std::string& requested, const std::vector<std::string>& built,
                         const std::set<std::string>& features);

struct DispatchInfo {
  std::vector<std::string> levels;  // levels this build holds, lowest first
  std::string level;                // the level selected
  bool forced = false;              // selected by SEQLAB_ARCH
  std::string build;                // "dispatch" or "native"
};

// The choice made at first use (the module's import): SEQLAB_ARCH, the CPU's features.
const DispatchInfo& dispatch_info();

}  // namespace seqlab
