// Row helpers shared by the recurrent time-loop drivers (recurrent.cpp, decoder.cpp):
// workspace shaping, the parallel grain of per-row passes and of the time loop's split
// over the batch rows, and SIMD row sums.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cstddef>

#include "seqlab/recurrent_cells.hpp"
#include "seqlab/recurrent_gemm.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace recurrent {

// Gives `a` the shape (rows, cols) / (n,), keeping its buffer when the shape already fits.
inline void ensure_shape(xt::xtensor<float, 2>& a, std::size_t rows, std::size_t cols) {
  if (a.shape()[0] != rows || a.shape()[1] != cols) a.resize({rows, cols});
}
inline void ensure_shape(xt::xtensor<float, 1>& a, std::size_t n) {
  if (a.shape()[0] != n) a.resize({n});
}

// Rows per parallel chunk so that a chunk holds at least ~32k values of work: below
// that the pool's wake-up costs more than the pointwise work it would split.
inline std::size_t row_grain(std::size_t row_work) {
  return std::max<std::size_t>(1, 32768 / std::max<std::size_t>(1, row_work));
}

// Packed weights up to this size, streamed by every step, stay in each core's L2 next to a
// thread's rows of state.
constexpr std::size_t kBatchSplitMaxBytes = std::size_t{512} << 10;

// A time loop runs in one of two ways. Per step: each step's products split their column
// panels over the pool, and the pool joins once per product and step. Per batch: each
// thread runs every step for its own contiguous rows of the batch, and the pool joins once
// per sequence. Rows are independent of each other, and each row's arithmetic is the same
// either way (the packed kernel computes every row alone), so both give the same numbers.
// Per batch wins when every thread gets at least one full register block of rows and the
// packed weights each step streams (`step_bytes`) stay below `max_bytes` (by default: fit
// in its L2; small hidden sizes, where a per-step join costs as much as the step's work);
// the row grain is returned, or 0 for per step.
inline std::size_t batch_split_grain(int B, std::size_t step_bytes,
                                     std::size_t max_bytes = kBatchSplitMaxBytes) {
  const std::size_t block = static_cast<std::size_t>(PackedMatrix::row_block());
  const auto threads = static_cast<std::size_t>(get_num_threads());
  if (threads < 2 || step_bytes > max_bytes) return 0;
  return static_cast<std::size_t>(B) >= threads * block ? block : 0;
}

// dst[j] += src[j] for j < n.
inline void add_row(float* dst, const float* src, int n) {
  simd_for(n, [&](int j, auto v) {
    using V = decltype(v);
    store(dst + j, load<V>(dst + j) + load<V>(src + j));
  });
}

// dst[j] += a * src[j] for j < n.
inline void axpy(float* dst, float a, const float* src, int n) {
  simd_for(n, [&](int j, auto v) {
    using V = decltype(v);
    store(dst + j, load<V>(dst + j) + V(a) * load<V>(src + j));
  });
}

// out[j] += sum over rows r of a[r * lda + j].
inline void add_column_sums(float* out, const float* a, std::size_t rows, int n, std::size_t lda) {
  for (std::size_t r = 0; r < rows; ++r) add_row(out, a + r * lda, n);
}

}  // namespace recurrent
SEQLAB_LEVEL_END
}  // namespace seqlab
