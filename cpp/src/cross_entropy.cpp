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

// Row max, sum of exp(x - max) and plain sum, in two passes over the row.
void row_stats(const float* x, std::size_t n, float& lse, float& sum) {
  Batch mx(-std::numeric_limits<float>::infinity());
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) mx = xsimd::max(mx, Batch::load_unaligned(x + i));
  float m = lane_max(mx);
  for (; i < n; ++i) m = std::max(m, x[i]);
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
  lse = m + std::log(e);
  sum = s;
}

}  // namespace

void cross_entropy_forward(const float* logits, const std::int64_t* target, float* loss, float* lse,
                           std::size_t N, std::size_t V, std::int64_t ignore_index, float label_smoothing) {
  if (V == 0) return;
  parallel_for(N, row_grain(V), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* x = logits + r * V;
      float l, s;
      row_stats(x, V, l, s);
      lse[r] = l;
      const std::int64_t t = target[r];
      if (t == ignore_index) {
        loss[r] = 0.0f;
        continue;
      }
      const float nll = l - x[t];
      loss[r] = label_smoothing > 0.0f
                    ? (1.0f - label_smoothing) * nll + label_smoothing * (l - s / static_cast<float>(V))
                    : nll;
    }
  });
}

void cross_entropy_backward(const float* logits, const std::int64_t* target, const float* lse,
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
      const Batch lb(lse[r]), gb(g), off(g * label_smoothing / static_cast<float>(V));
      simd::map1(logits + r * V, gx, V, [&](Batch v) { return xsimd::fms(gb, xsimd::exp(v - lb), off); });
      gx[t] -= g * (1.0f - label_smoothing);
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
