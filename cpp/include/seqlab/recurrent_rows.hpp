// Row helpers shared by the recurrent time-loop drivers (recurrent.cpp, decoder.cpp):
// workspace shaping, the parallel grain of per-row passes, and SIMD row sums.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cstddef>

#include "seqlab/recurrent_cells.hpp"

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
