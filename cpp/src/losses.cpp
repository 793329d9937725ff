// The masked cosine + MSE loss (see losses.hpp): one SIMD pass per token forward
// (dot product, both squared norms and the squared error together), one backward.
#include "seqlab/losses.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace {

using simd::Batch;
using simd::kLanes;
using usize = std::size_t;

struct TokenSums {
  float dot = 0.0f, pp = 0.0f, yy = 0.0f, sq = 0.0f;
};

TokenSums token_sums(const float* p, const float* y, int E) {
  Batch dot(0.0f), pp(0.0f), yy(0.0f), sq(0.0f);
  int e = 0;
  for (; e + static_cast<int>(kLanes) <= E; e += static_cast<int>(kLanes)) {
    const Batch a = Batch::load_unaligned(p + e), b = Batch::load_unaligned(y + e);
    const Batch d = a - b;
    dot = xsimd::fma(a, b, dot);
    pp = xsimd::fma(a, a, pp);
    yy = xsimd::fma(b, b, yy);
    sq = xsimd::fma(d, d, sq);
  }
  TokenSums s{xsimd::hadd(dot), xsimd::hadd(pp), xsimd::hadd(yy), xsimd::hadd(sq)};
  for (; e < E; ++e) {
    const float d = p[e] - y[e];
    s.dot += p[e] * y[e];
    s.pp += p[e] * p[e];
    s.yy += y[e] * y[e];
    s.sq += d * d;
  }
  return s;
}

int length_of(const std::int64_t* lengths, int b, int T) {
  return lengths ? static_cast<int>(lengths[b]) : T;
}

usize grain_for(int E) { return std::max<usize>(1, 16384 / static_cast<usize>(std::max(E, 1))); }

}  // namespace

double cosine_mse_forward(const float* pred, const float* target, const std::int64_t* lengths,
                          int B, int T, int E, const CosineMseConfig& cfg, float* token_loss,
                          std::int64_t* count) {
  const usize BT = static_cast<usize>(B) * T;
  const float cw = cfg.cosine_weight / cfg.temperature, mw = cfg.mse_weight / static_cast<float>(E);
  parallel_for(BT, grain_for(E), [&](usize r0, usize r1) {
    for (usize r = r0; r < r1; ++r) {
      const int b = static_cast<int>(r / T), t = static_cast<int>(r % T);
      if (t >= length_of(lengths, b, T)) {
        token_loss[r] = 0.0f;
        continue;
      }
      const TokenSums s = token_sums(pred + r * E, target + r * E, E);
      const float np = std::max(std::sqrt(s.pp), cfg.eps), ny = std::max(std::sqrt(s.yy), cfg.eps);
      token_loss[r] = cw * (1.0f - s.dot / (np * ny)) + mw * s.sq;
    }
  });
  double total = 0.0;
  std::int64_t n = 0;
  for (int b = 0; b < B; ++b) {
    const int len = std::min(length_of(lengths, b, T), T);
    n += len;
    for (int t = 0; t < len; ++t) total += token_loss[static_cast<usize>(b) * T + t];
  }
  *count = n;
  return total;
}

void cosine_mse_backward(const float* pred, const float* target, const std::int64_t* lengths,
                         int B, int T, int E, const CosineMseConfig& cfg, const float* token_grad,
                         float scale, float* d_pred, float* d_target) {
  const usize BT = static_cast<usize>(B) * T;
  const float cw = cfg.cosine_weight / cfg.temperature, mw = cfg.mse_weight / static_cast<float>(E);
  parallel_for(BT, grain_for(E), [&](usize r0, usize r1) {
    for (usize r = r0; r < r1; ++r) {
      const int b = static_cast<int>(r / T), t = static_cast<int>(r % T);
      float* dp = d_pred ? d_pred + r * E : nullptr;
      float* dy = d_target ? d_target + r * E : nullptr;
      if (t >= length_of(lengths, b, T)) {
        if (dp) std::fill(dp, dp + E, 0.0f);
        if (dy) std::fill(dy, dy + E, 0.0f);
        continue;
      }
      const float g = token_grad ? token_grad[r] : scale;
      const float* p = pred + r * E;
      const float* y = target + r * E;
      const TokenSums s = token_sums(p, y, E);
      const float lp = std::sqrt(s.pp), ly = std::sqrt(s.yy);
      const float np = std::max(lp, cfg.eps), ny = std::max(ly, cfg.eps);
      const float cos = s.dot / (np * ny);
      // As torch (the clamp is applied outside autograd, so the norm's own gradient
      // p / |p| is kept even where it is clamped; it is 0 at p = 0):
      // d cos/dp = y / (np ny) - cos p / (|p| np), and symmetrically for y.
      const float a = -g * cw / (np * ny);
      const float cp = lp > 0.0f ? g * cw * cos / (lp * np) : 0.0f;
      const float cy = ly > 0.0f ? g * cw * cos / (ly * ny) : 0.0f;
      const float m = 2.0f * g * mw;
      const Batch va(a), vcp(cp), vcy(cy), vm(m);
      int e = 0;
      for (; e + static_cast<int>(kLanes) <= E; e += static_cast<int>(kLanes)) {
        const Batch vp = Batch::load_unaligned(p + e), vy = Batch::load_unaligned(y + e);
        const Batch diff = vm * (vp - vy);
        if (dp) (va * vy + vcp * vp + diff).store_unaligned(dp + e);
        if (dy) (va * vp + vcy * vy - diff).store_unaligned(dy + e);
      }
      for (; e < E; ++e) {
        const float diff = m * (p[e] - y[e]);
        if (dp) dp[e] = a * y[e] + cp * p[e] + diff;
        if (dy) dy[e] = a * p[e] + cy * y[e] - diff;
      }
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
