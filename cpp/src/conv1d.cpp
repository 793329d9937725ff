#include "seqlab/conv1d.hpp"

#include <algorithm>
#include <cstring>

#include "seqlab/linear.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {

namespace {
constexpr std::size_t kElementGrain = 1 << 15;  // elements per task for memory-bound loops

std::size_t row_grain(std::size_t row_elems) {
  return std::max<std::size_t>(1, kElementGrain / std::max<std::size_t>(row_elems, 1));
}
}  // namespace

std::size_t Conv1dShape::out_len() const {
  const std::size_t span = dilation * (K - 1);
  const std::size_t padded = T + pad_left + pad_right;
  return padded > span ? padded - span : 0;
}

void conv1d_forward(const Conv1dShape& s, const float* x, const float* w, const float* b, float* y,
                    Conv1dCache& cache) {
  const std::size_t To = s.out_len(), KC = s.K * s.Cin, rows = s.B * To;
  cache.shape = s;
  cache.weight.resize({s.Cout, KC});
  cache.unfolded.resize({rows, KC});
  // Wr[co, k, ci] = w[co, ci, k]
  float* wr = cache.weight.data();
  for (std::size_t co = 0; co < s.Cout; ++co)
    for (std::size_t ci = 0; ci < s.Cin; ++ci)
      for (std::size_t k = 0; k < s.K; ++k) wr[(co * s.K + k) * s.Cin + ci] = w[(co * s.Cin + ci) * s.K + k];
  // U[b*To + t, k*Cin : (k+1)*Cin] = x[b, t + d*k - pad_left, :] or zeros.
  float* u = cache.unfolded.data();
  parallel_for(rows, row_grain(KC), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const std::size_t bi = r / To, t = r % To;
      float* dst = u + r * KC;
      for (std::size_t k = 0; k < s.K; ++k, dst += s.Cin) {
        const std::size_t src = t + s.dilation * k;  // index into the padded input
        if (src < s.pad_left || src - s.pad_left >= s.T)
          std::fill(dst, dst + s.Cin, 0.0f);
        else
          std::memcpy(dst, x + (bi * s.T + (src - s.pad_left)) * s.Cin, s.Cin * sizeof(float));
      }
    }
  });
  linear_forward(u, wr, b, y, rows, KC, s.Cout);
}

void conv1d_backward(const Conv1dCache& cache, const float* grad_y, float* dx, float* dw, float* db) {
  const Conv1dShape& s = cache.shape;
  const std::size_t To = s.out_len(), KC = s.K * s.Cin, rows = s.B * To;
  xt::xtensor<float, 2> du;
  xt::xtensor<float, 2> dwr;
  if (dx != nullptr) du.resize({rows, KC});
  if (dw != nullptr) {
    dwr.resize({s.Cout, KC});
    std::fill(dwr.begin(), dwr.end(), 0.0f);
  }
  linear_backward(grad_y, cache.unfolded.data(), cache.weight.data(), dx ? du.data() : nullptr,
                  dw ? dwr.data() : nullptr, db, rows, KC, s.Cout);
  if (dw != nullptr) {
    const float* g = dwr.data();
    for (std::size_t co = 0; co < s.Cout; ++co)
      for (std::size_t ci = 0; ci < s.Cin; ++ci)
        for (std::size_t k = 0; k < s.K; ++k) dw[(co * s.Cin + ci) * s.K + k] += g[(co * s.K + k) * s.Cin + ci];
  }
  if (dx == nullptr) return;
  // dx[b, tau, :] = sum over (t, k) with t + d*k - pad_left == tau of dU[b*To + t, k*Cin : ...].
  // Each task owns whole sequences, so every dx row is written by one thread in a fixed order.
  const float* g = du.data();
  parallel_for(s.B, std::max<std::size_t>(1, row_grain(s.T * s.Cin)), [&](std::size_t b0, std::size_t b1) {
    for (std::size_t bi = b0; bi < b1; ++bi) {
      float* dxb = dx + bi * s.T * s.Cin;
      std::fill(dxb, dxb + s.T * s.Cin, 0.0f);
      for (std::size_t t = 0; t < To; ++t) {
        const float* src = g + (bi * To + t) * KC;
        for (std::size_t k = 0; k < s.K; ++k, src += s.Cin) {
          const std::size_t p = t + s.dilation * k;
          if (p < s.pad_left || p - s.pad_left >= s.T) continue;
          float* dst = dxb + (p - s.pad_left) * s.Cin;
          simd::map2(dst, src, dst, s.Cin, [](simd::Batch a, simd::Batch v) { return a + v; });
        }
      }
    }
  });
}

}  // namespace seqlab
