#include "seqlab/layer_norm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::kLanes;
constexpr std::size_t kGrain = 1 << 14;

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
  if (C == 0) return;
  if (dx) {
    parallel_for(M, row_grain(C), [&](std::size_t r0, std::size_t r1) {
      std::vector<float> g(C);  // grad_y * gamma for one row (allocated once per chunk)
      for (std::size_t r = r0; r < r1; ++r) {
        const float* gy = grad_y + r * C;
        const float* xr = x + r * C;
        const float mu = mean[r], rs = rstd[r];
        const Batch mb(mu), rb(rs);
        if (gamma)
          simd::map2(gy, gamma, g.data(), C, [](Batch a, Batch b) { return a * b; });
        else
          std::copy(gy, gy + C, g.data());
        // a = mean(g), c = mean(g * xhat);  dx = rstd (g - a - xhat c)
        Batch sa(0.0f), sc(0.0f);
        std::size_t i = 0;
        for (; i + kLanes <= C; i += kLanes) {
          const Batch gi = Batch::load_unaligned(g.data() + i);
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
        float* dxr = dx + r * C;
        simd::map2(g.data(), xr, dxr, C, [&](Batch gi, Batch xi) {
          const Batch xh = (xi - mb) * rb;
          return rb * (gi - ab - xh * cb);
        });
      }
    });
  }
  if (dgamma || dbeta) {
    // Parallel over blocks of kLanes columns (so the SIMD/scalar split of the columns is
    // the same for any thread count); every column sums its rows in order.
    const std::size_t blocks = (C + kLanes - 1) / kLanes;
    parallel_for(blocks, std::max<std::size_t>(1, 64 / kLanes), [&](std::size_t b0, std::size_t b1) {
      const std::size_t c0 = b0 * kLanes, c1 = std::min(C, b1 * kLanes);
      const std::size_t n = c1 - c0;
      for (std::size_t r = 0; r < M; ++r) {
        const float* gy = grad_y + r * C + c0;
        const float* xr = x + r * C + c0;
        const Batch mb(mean[r]), rb(rstd[r]);
        if (dbeta) simd::map2(dbeta + c0, gy, dbeta + c0, n, [](Batch a, Batch g) { return a + g; });
        if (dgamma) {
          std::size_t i = 0;
          float* dg = dgamma + c0;
          for (; i + kLanes <= n; i += kLanes) {
            const Batch xh = (Batch::load_unaligned(xr + i) - mb) * rb;
            xsimd::fma(Batch::load_unaligned(gy + i), xh, Batch::load_unaligned(dg + i)).store_unaligned(dg + i);
          }
          for (; i < n; ++i) dg[i] += gy[i] * (xr[i] - mean[r]) * rstd[r];
        }
      }
    });
  }
}

SEQLAB_LEVEL_END
}  // namespace seqlab
