#include "seqlab/linear_cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqlab/blas.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {
using simd::Batch;
// Rows per block: about 4 MiB of logits, 64 to 256 rows. The block's rows are the inner
// dimension of its weight-gradient GEMM (dW (V, D) += G^T x), which reads and writes all
// of dW: below ~128 rows that traffic dominates. At 1 thread, V = 4096, D = 128 (process
// CPU time, the three products 6.4 GFLOP): 16 rows 100 ms, 64 rows 62 ms, 128 rows 57 ms,
// 256 rows 53 ms, 512 rows 53 ms, 1024 rows 60 ms. Each row's softmax passes run on the
// row alone (16 KiB at V = 4096, in L1).
constexpr std::size_t kBlockFloats = std::size_t{1} << 20;
constexpr std::size_t kMinBlockRows = 64, kMaxBlockRows = 256;
constexpr std::size_t kElementGrain = 1 << 15;

std::size_t block_rows(std::size_t V) {
  return std::clamp<std::size_t>(kBlockFloats / std::max<std::size_t>(V, 1), kMinBlockRows, kMaxBlockRows);
}

// One row of logits l (V,) in place: returns its loss (m - l_t) + log sum exp(l - m);
// when `grad`, leaves scale (softmax(l) - onehot(t)) in l.
float row_loss(float* l, std::size_t V, std::int64_t t, bool grad, float scale) {
  const int n = static_cast<int>(V);
  const float m = simd::row_max(l, n);
  const float lt = l[t];
  const float sum = simd::exp_sum(l, n, m);  // l <- exp(l - m)
  if (grad) {
    simd::scale_row(l, n, scale / sum);
    l[t] -= scale;
  }
  return (m - lt) + std::log(sum);
}
}  // namespace

void linear_cross_entropy(const float* hidden, const float* weight, const std::int64_t* target, float* loss,
                          float* dhidden, float* dweight, std::size_t N, std::size_t D, std::size_t V,
                          std::int64_t ignore_index, float scale) {
  const bool grad = dhidden != nullptr;
  if (grad && N == 0) std::fill(dweight, dweight + V * D, 0.0f);
  if (N == 0 || V == 0) return;
  const SerialBlas serial;
  const std::size_t R = block_rows(V);
  // Fixed contiguous shares of the rows, one per thread (at most one per block), so the
  // sum of the shares' dW is the same for a given thread count whatever the schedule.
  const std::size_t shares =
      std::min<std::size_t>(static_cast<std::size_t>(get_num_threads()), (N + R - 1) / R);
  std::vector<std::vector<float>> share_dw(grad ? shares - 1 : 0);
  const int d = static_cast<int>(D), v = static_cast<int>(V);
  parallel_for(shares, 1, [&](std::size_t s0, std::size_t s1) {
    std::vector<float> logits(R * V);
    for (std::size_t s = s0; s < s1; ++s) {
      const std::size_t r_begin = s * N / shares, r_end = (s + 1) * N / shares;
      float* dw = nullptr;
      if (grad) {
        if (s == 0) {
          dw = dweight;
        } else {
          share_dw[s - 1].resize(V * D);
          dw = share_dw[s - 1].data();
        }
      }
      for (std::size_t i = r_begin; i < r_end; i += R) {
        const std::size_t rows = std::min(R, r_end - i);
        const int r = static_cast<int>(rows);
        const float* x = hidden + i * D;
        // logits (rows, V) = x (rows, D) @ W^T (D, V)
        if (D > 0) sgemm(false, true, r, v, d, 1.0f, x, d, weight, d, 0.0f, logits.data(), v);
        else std::fill(logits.begin(), logits.end(), 0.0f);
        for (std::size_t k = 0; k < rows; ++k) {
          float* l = logits.data() + k * V;
          const std::int64_t t = target[i + k];
          if (t == ignore_index) {
            loss[i + k] = 0.0f;
            if (grad) std::fill(l, l + V, 0.0f);
            continue;
          }
          loss[i + k] = row_loss(l, V, t, grad, scale);
        }
        if (!grad || D == 0) continue;
        // dx (rows, D) = G (rows, V) @ W (V, D); dW (V, D) (+)= G^T (V, rows) @ x (rows, D)
        sgemm(false, false, r, d, v, 1.0f, logits.data(), v, weight, d, 0.0f, dhidden + i * D, d);
        sgemm(true, false, v, d, r, 1.0f, logits.data(), v, x, d, i == r_begin ? 0.0f : 1.0f, dw, d);
      }
    }
  });
  if (!grad || share_dw.empty() || D == 0) return;
  // dW = share 0's (written in place) + the others', in share order.
  parallel_for(V * D, kElementGrain, [&](std::size_t b, std::size_t e) {
    for (const std::vector<float>& part : share_dw)
      simd::map2(dweight + b, part.data() + b, dweight + b, e - b, [](Batch a, Batch p) { return a + p; });
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
