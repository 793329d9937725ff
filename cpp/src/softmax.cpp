#include "seqlab/softmax.hpp"

#include <algorithm>
#include <limits>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::kLanes;
constexpr std::size_t kGrain = 1 << 14;

float row_max(const float* x, std::size_t n) {
  std::size_t i = 0;
  float m = -std::numeric_limits<float>::infinity();
  if (n >= kLanes) {
    Batch acc = Batch::load_unaligned(x);
    for (i = kLanes; i + kLanes <= n; i += kLanes) acc = xsimd::max(acc, Batch::load_unaligned(x + i));
    alignas(64) float lanes[kLanes];
    acc.store_aligned(lanes);
    m = *std::max_element(lanes, lanes + kLanes);
  }
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

float row_sum(const float* x, std::size_t n) {
  std::size_t i = 0;
  Batch acc(0.0f);
  for (; i + kLanes <= n; i += kLanes) acc += Batch::load_unaligned(x + i);
  float s = xsimd::hadd(acc);
  for (; i < n; ++i) s += x[i];
  return s;
}

float row_dot(const float* a, const float* b, std::size_t n) {
  std::size_t i = 0;
  Batch acc(0.0f);
  for (; i + kLanes <= n; i += kLanes) acc += Batch::load_unaligned(a + i) * Batch::load_unaligned(b + i);
  float s = xsimd::hadd(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

std::size_t row_grain(std::size_t cols) { return std::max<std::size_t>(1, kGrain / std::max<std::size_t>(cols, 1)); }

}  // namespace

void softmax_forward(const float* x, float* y, std::size_t rows, std::size_t cols) {
  if (cols == 0) return;
  parallel_for(rows, row_grain(cols), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      const Batch m(row_max(xr, cols));
      simd::map1(xr, yr, cols, [&](Batch v) { return xsimd::exp(v - m); });
      const Batch inv(1.0f / row_sum(yr, cols));
      simd::map1(yr, yr, cols, [&](Batch v) { return v * inv; });
    }
  });
}

void softmax_backward(const float* grad_y, const float* y, float* grad_x, std::size_t rows,
                      std::size_t cols) {
  if (cols == 0) return;
  parallel_for(rows, row_grain(cols), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* gr = grad_y + r * cols;
      const float* yr = y + r * cols;
      const Batch dot(row_dot(gr, yr, cols));
      simd::map2(gr, yr, grad_x + r * cols, cols, [&](Batch g, Batch s) { return s * (g - dot); });
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
