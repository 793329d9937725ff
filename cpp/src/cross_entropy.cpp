#include "seqlab/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::kLanes;
constexpr std::size_t kGrain = 1 << 15;

std::size_t row_grain(std::size_t cols) { return std::max<std::size_t>(1, kGrain / std::max<std::size_t>(cols, 1)); }

// Largest lane of a batch.
float lane_max(const Batch& b) {
  alignas(64) float lanes[kLanes];
  b.store_aligned(lanes);
  return *std::max_element(lanes, lanes + kLanes);
}

// Row max.
float row_max(const float* x, std::size_t n) {
  Batch mx(-std::numeric_limits<float>::infinity());
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) mx = xsimd::max(mx, Batch::load_unaligned(x + i));
  float m = lane_max(mx);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// Row max m, log of the sum of exp(x - m) and plain sum, in two passes over the row.
void row_stats(const float* x, std::size_t n, float& m, float& logsum, float& sum) {
  m = row_max(x, n);
  std::size_t i = 0;
  const Batch mb(m);
  Batch se(0.0f), sx(0.0f);
  for (i = 0; i + kLanes <= n; i += kLanes) {
    const Batch v = Batch::load_unaligned(x + i);
    se += xsimd::exp(v - mb);
    sx += v;
  }
  float e = xsimd::hadd(se), s = xsimd::hadd(sx);
  for (; i < n; ++i) {
    e += std::exp(x[i] - m);
    s += x[i];
  }
  logsum = std::log(e);
  sum = s;
}

}  // namespace

void cross_entropy_forward(const float* logits, const std::int64_t* target, float* loss, float* logsum,
                           std::size_t N, std::size_t V, std::int64_t ignore_index, float label_smoothing) {
  if (V == 0) return;
  parallel_for(N, row_grain(V), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* x = logits + r * V;
      float m, l, s;
      row_stats(x, V, m, l, s);
      logsum[r] = l;
      const std::int64_t t = target[r];
      if (t == ignore_index) {
        loss[r] = 0.0f;
        continue;
      }
      const float nll = (m - x[t]) + l;
      loss[r] = label_smoothing > 0.0f
                    ? (1.0f - label_smoothing) * nll + label_smoothing * ((m - s / static_cast<float>(V)) + l)
                    : nll;
    }
  });
}

void cross_entropy_backward(const float* logits, const std::int64_t* target, const float* logsum,
                            const float* grad_loss, float* grad_logits, std::size_t N, std::size_t V,
                            std::int64_t ignore_index, float label_smoothing) {
  if (V == 0) return;
  parallel_for(N, row_grain(V), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      float* gx = grad_logits + r * V;
      const std::int64_t t = target[r];
      if (t == ignore_index) {
        std::fill(gx, gx + V, 0.0f);
        continue;
      }
      const float g = grad_loss[r];
      const float* x = logits + r * V;
      const Batch mb(row_max(x, V)), lb(logsum[r]), gb(g), off(g * label_smoothing / static_cast<float>(V));
      simd::map1(x, gx, V, [&](Batch v) { return xsimd::fms(gb, xsimd::exp((v - mb) - lb), off); });
      gx[t] -= g * (1.0f - label_smoothing);
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
