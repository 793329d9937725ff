// The kernel thread pool: the one piece of global state in the C++ core.
// set_num_threads() sets it and OpenBLAS together, so GEMMs and SIMD loops
// never oversubscribe the cores.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace seqlab {

// Sets the pool size and OpenBLAS's thread count; n >= 1.
void set_num_threads(int n);
int get_num_threads();
// Cores the process may use (the default thread count).
int hardware_threads();

// The kernel family OpenBLAS chose for this CPU ("SkylakeX", "Haswell", "Zen", ...).
std::string blas_kernel_family();

// Runs fn(begin, end) over [0, n) split into at most get_num_threads() contiguous
// chunks of at least `grain` items. The split depends only on n, grain and the
// thread count, so results are deterministic for a given thread count.
// Runs inline when one chunk suffices or when called from a pool worker.
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn);

// Dynamic schedule for independent items (each item's result must not depend on the
// thread that runs it): up to get_num_threads() threads each call body(next) once, where
// next(i) claims the next unclaimed item into i and returns false when none is left.
// Threads that finish early take over the rest, so uneven items (causal attention) and
// a core stolen by another process cost less than with parallel_for's fixed chunks.
// body typically allocates its scratch once, then loops `for (std::size_t i; next(i);)`.
using ClaimFn = std::function<bool(std::size_t&)>;
void parallel_claim(std::size_t n, const std::function<void(const ClaimFn& next)>& body);

// OpenBLAS runs single-threaded inside the scope and with the pool's thread count
// again after it. Kernels that split their GEMMs over the pool themselves
// (sgemm_rows_parallel) hold one, so OpenBLAS's own threads, which spin after each
// call, never compete with the pool's for the cores.
// Scopes nest: the destructor restores the count the constructor found.
class SerialBlas {
 public:
  SerialBlas();
  ~SerialBlas();
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int previous_ = 1;
};

}  // namespace seqlab
