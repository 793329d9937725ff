#include "seqlab/kv_attention.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::kLanes;
using I64 = std::int64_t;

// Multiply-adds (scores and weighted values) below which the call stays on one thread.
constexpr double kParallelWork = 1 << 16;

// y[0:n) += a * x[0:n)
inline void add_scaled(float* y, float a, const float* x, int n) {
  const Batch ab(a);
  int i = 0;
  for (; i + static_cast<int>(kLanes) <= n; i += kLanes)
    xsimd::fma(ab, Batch::load_unaligned(x + i), Batch::load_unaligned(y + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

void kv_cache_attention(const KvShape& s, float scale, AttnView q, AttnView k, AttnView v,
                        float* key_cache, float* value_cache, AttnMutView o) {
  const I64 kstride = static_cast<I64>(s.Tmax) * s.D;   // one (b, h) block of the key cache
  const I64 vstride = static_cast<I64>(s.Tmax) * s.Dv;  // and of the value cache
  const std::size_t items = static_cast<std::size_t>(s.B) * s.H;
  const auto body = [&](const ClaimFn& next) {
    std::vector<float> scores(static_cast<std::size_t>(s.pos + s.Tn));
    for (std::size_t bh = 0; next(bh);) {
      const I64 b = static_cast<I64>(bh) / s.H, h = static_cast<I64>(bh) % s.H;
      float* kc = key_cache + static_cast<I64>(bh) * kstride;
      float* vc = value_cache + static_cast<I64>(bh) * vstride;
      for (int i = 0; i < s.Tn; ++i) {  // append the new rows
        const float* ki = k.data + b * k.sb + h * k.sh + i * k.st;
        const float* vi = v.data + b * v.sb + h * v.sh + i * v.st;
        std::copy(ki, ki + s.D, kc + static_cast<I64>(s.pos + i) * s.D);
        std::copy(vi, vi + s.Dv, vc + static_cast<I64>(s.pos + i) * s.Dv);
      }
      for (int i = 0; i < s.Tn; ++i) {
        const float* qi = q.data + b * q.sb + h * q.sh + i * q.st;
        float* oi = o.data + b * o.sb + h * o.sh + i * o.st;
        const int len = s.pos + i + 1;  // keys this query sees
        for (int j = 0; j < len; ++j) scores[j] = scale * simd::row_dot(qi, kc + static_cast<I64>(j) * s.D, s.D);
        simd::softmax_row(scores.data(), len);
        std::fill(oi, oi + s.Dv, 0.0f);
        for (int j = 0; j < len; ++j) add_scaled(oi, scores[j], vc + static_cast<I64>(j) * s.Dv, s.Dv);
      }
    }
  };
  // One generated token attends over at most a few thousand cached rows: less work than
  // waking the pool's threads costs, so a small call runs on the calling thread.
  const double work = static_cast<double>(items) * s.Tn * (s.pos + s.Tn) * (s.D + s.Dv);
  if (work < kParallelWork) {
    std::size_t claimed = 0;
    body([&](std::size_t& i) {
      i = claimed++;
      return i < items;
    });
  } else {
    parallel_claim(items, body);
  }
}

SEQLAB_LEVEL_END
}  // namespace seqlab
