// CPU-time measurement shared by the stand-alone C++ benchmarks of benchmarks/.
#pragma once

#include <time.h>

#include <algorithm>
#include <functional>
#include <vector>

namespace seqlab_bench {

// CPU seconds of this process (all its threads).
inline double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Median CPU seconds of fn over `repeats` calls after one untimed call.
inline double median_seconds(const std::function<void()>& fn, int repeats) {
  fn();
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = cpu_seconds();
    fn();
    t.push_back(cpu_seconds() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace seqlab_bench
