#include "seqlab/layer_norm.hpp"

#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::kLanes;
constexpr std::size_t kGrain = 1 << 14;
constexpr std::size_t kLineFloats = 64 / sizeof(float);  // floats per cache line

std::size_t row_grain(std::size_t cols) { return std::max<std::size_t>(1, kGrain / std::max<std::size_t>(cols, 1)); }

// Sum and sum of squares of (x - shift), the shift (first element) keeping the variance accurate.
void moments(const float* x, std::size_t n, float& mean, float& var) {
  const float shift = x[0];
  const Batch sb(shift);
  Batch s(0.0f), ss(0.0f);
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Batch d = Batch::load_unaligned(x + i) - sb;
    s += d;
    ss = xsimd::fma(d, d, ss);
  }
  float sum = xsimd::hadd(s), sq = xsimd::hadd(ss);
  for (; i < n; ++i) {
    const float d = x[i] - shift;
    sum += d;
    sq += d * d;
  }
  const float inv_n = 1.0f / static_cast<float>(n);
  const float md = sum * inv_n;
  mean = shift + md;
  var = std::max(sq * inv_n - md * md, 0.0f);
}

// Rows per block of the weight and bias gradients' partial sums. The blocks are fixed by M
// alone (not by the thread count), each summed in row order by one thread, then the blocks
// added in order: the same bits for any thread count and any timing.
constexpr std::size_t kParamRowBlock = 64;

// One row's input gradient (when dx) and its terms of the weight and bias gradients,
// added into pg and pb (when not null); g is scratch of C floats.
void row_backward(const float* gy, const float* xr, const float* gamma, float mu, float rs, float* dxr,
                  float* pg, float* pb, float* g, std::size_t C) {
  const Batch mb(mu), rb(rs);
  if (pb) simd::map2(pb, gy, pb, C, [](Batch a, Batch v) { return a + v; });
  if (pg) {
    std::size_t i = 0;
    for (; i + kLanes <= C; i += kLanes) {
      const Batch xh = (Batch::load_unaligned(xr + i) - mb) * rb;
      xsimd::fma(Batch::load_unaligned(gy + i), xh, Batch::load_unaligned(pg + i)).store_unaligned(pg + i);
    }
    for (; i < C; ++i) pg[i] += gy[i] * (xr[i] - mu) * rs;
  }
  if (!dxr) return;
  if (gamma)
    simd::map2(gy, gamma, g, C, [](Batch a, Batch b) { return a * b; });
  else
    std::copy(gy, gy + C, g);
  // a = mean(g), c = mean(g * xhat);  dx = rstd (g - a - xhat c)
  Batch sa(0.0f), sc(0.0f);
  std::size_t i = 0;
  for (; i + kLanes <= C; i += kLanes) {
    const Batch gi = Batch::load_unaligned(g + i);
    sa += gi;
    sc = xsimd::fma(gi, (Batch::load_unaligned(xr + i) - mb) * rb, sc);
  }
  float a = xsimd::hadd(sa), c = xsimd::hadd(sc);
  for (; i < C; ++i) {
    a += g[i];
    c += g[i] * (xr[i] - mu) * rs;
  }
  const float inv_c = 1.0f / static_cast<float>(C);
  const Batch ab(a * inv_c), cb(c * inv_c);
  simd::map2(g, xr, dxr, C, [&](Batch gi, Batch xi) {
    const Batch xh = (xi - mb) * rb;
    return rb * (gi - ab - xh * cb);
  });
}

}  // namespace

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                        float* rstd, std::size_t M, std::size_t C, float eps) {
  if (C == 0) return;
  parallel_for(M, row_grain(C), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * C;
      float* yr = y + r * C;
      float mu, var;
      moments(xr, C, mu, var);
      const float rs = 1.0f / std::sqrt(var + eps);
      mean[r] = mu;
      rstd[r] = rs;
      const Batch mb(mu), rb(rs);
      if (gamma && beta) {
        std::size_t i = 0;
        for (; i + kLanes <= C; i += kLanes) {
          const Batch xh = (Batch::load_unaligned(xr + i) - mb) * rb;
          xsimd::fma(xh, Batch::load_unaligned(gamma + i), Batch::load_unaligned(beta + i)).store_unaligned(yr + i);
        }
        for (; i < C; ++i) yr[i] = (xr[i] - mu) * rs * gamma[i] + beta[i];
      } else {
        simd::map1(xr, yr, C, [&](Batch v) { return (v - mb) * rb; });
        if (gamma) simd::map2(yr, gamma, yr, C, [](Batch a, Batch g) { return a * g; });
        if (beta) simd::map2(yr, beta, yr, C, [](Batch a, Batch c) { return a + c; });
      }
    }
  });
}

void layer_norm_backward(const float* grad_y, const float* x, const float* gamma, const float* mean,
                         const float* rstd, float* dx, float* dgamma, float* dbeta, std::size_t M,
                         std::size_t C) {
  if (C == 0 || M == 0 || (!dx && !dgamma && !dbeta)) return;
  // One pass over grad_y and x, in parallel over fixed blocks of kParamRowBlock rows: each
  // block writes its rows of dx and sums its rows' weight and bias gradient terms into its
  // own partial sums (zeroed by the block's thread; the partials start on cache lines and
  // span whole ones, so no two threads write one line); the partials are then added into
  // dgamma and dbeta block by block, in order.
  const std::size_t blocks = (M + kParamRowBlock - 1) / kParamRowBlock;
  const std::size_t stride = (C + kLineFloats - 1) / kLineFloats * kLineFloats;
  const bool params = dgamma || dbeta;
  auto storage = xt::xtensor<float, 1>::from_shape({params ? blocks * 2 * stride + kLineFloats : 0});
  float* partial = storage.data();
  if (params)  // to a cache-line boundary
    partial += (kLineFloats - reinterpret_cast<std::uintptr_t>(partial) / sizeof(float) % kLineFloats) % kLineFloats;
  const std::size_t grain = std::max<std::size_t>(1, row_grain(C) / kParamRowBlock);
  parallel_for(blocks, grain, [&](std::size_t b0, std::size_t b1) {
    std::vector<float> g(C);  // grad_y * gamma for one row (allocated once per chunk)
    for (std::size_t blk = b0; blk < b1; ++blk) {
      float* pg = dgamma ? partial + blk * 2 * stride : nullptr;
      float* pb = dbeta ? partial + blk * 2 * stride + stride : nullptr;
      if (pg) std::fill(pg, pg + C, 0.0f);
      if (pb) std::fill(pb, pb + C, 0.0f);
      const std::size_t r1 = std::min(M, (blk + 1) * kParamRowBlock);
      for (std::size_t r = blk * kParamRowBlock; r < r1; ++r)
        row_backward(grad_y + r * C, x + r * C, gamma, mean[r], rstd[r], dx ? dx + r * C : nullptr, pg, pb,
                     g.data(), C);
    }
  });
  const auto add = [](Batch a, Batch v) { return a + v; };
  for (std::size_t blk = 0; params && blk < blocks; ++blk) {
    const float* pg = partial + blk * 2 * stride;
    if (dgamma) simd::map2(dgamma, pg, dgamma, C, add);
    if (dbeta) simd::map2(dbeta, pg + stride, dbeta, C, add);
  }
}

SEQLAB_LEVEL_END
}  // namespace seqlab
