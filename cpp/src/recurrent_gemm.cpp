// Register-blocked xsimd kernel for the per-step recurrent product (see recurrent_gemm.hpp).
#include "seqlab/recurrent_gemm.hpp"

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>

#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace recurrent {
namespace {

using vec = xsimd::batch<float>;
constexpr int W = static_cast<int>(vec::size);
constexpr int NR = 2 * W;                  // panel width: two SIMD registers per row
constexpr int MR = W >= 16 ? 12 : 6;       // rows per block: 2*MR accumulators fit the register file

// C rows [0, R) x panel columns [0, n_valid) (+)= A rows @ panel.
template <int R>
void block(int K, const float* A, int lda, const float* panel, float* C, int ldc, int n_valid,
           bool accumulate) {
  vec acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) {
    acc0[r] = vec(0.0f);
    acc1[r] = vec(0.0f);
  }
  for (int k = 0; k < K; ++k) {
    const vec b0 = vec::load_unaligned(panel + static_cast<std::ptrdiff_t>(k) * NR);
    const vec b1 = vec::load_unaligned(panel + static_cast<std::ptrdiff_t>(k) * NR + W);
    for (int r = 0; r < R; ++r) {
      const vec a(A[static_cast<std::ptrdiff_t>(r) * lda + k]);
      acc0[r] = xsimd::fma(a, b0, acc0[r]);
      acc1[r] = xsimd::fma(a, b1, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* c = C + static_cast<std::ptrdiff_t>(r) * ldc;
    if (n_valid == NR) {
      if (accumulate) {
        acc0[r] += vec::load_unaligned(c);
        acc1[r] += vec::load_unaligned(c + W);
      }
      acc0[r].store_unaligned(c);
      acc1[r].store_unaligned(c + W);
    } else {
      alignas(64) float tmp[NR];
      acc0[r].store_aligned(tmp);
      acc1[r].store_aligned(tmp + W);
      for (int j = 0; j < n_valid; ++j) c[j] = accumulate ? c[j] + tmp[j] : tmp[j];
    }
  }
}

// Dispatches a remainder of R rows (1 <= R < MR) to its instantiation.
template <int R>
void tail_block(int rows, int K, const float* A, int lda, const float* panel, float* C, int ldc,
                int n_valid, bool accumulate) {
  if constexpr (R >= 1) {
    if (rows == R) return block<R>(K, A, lda, panel, C, ldc, n_valid, accumulate);
    tail_block<R - 1>(rows, K, A, lda, panel, C, ldc, n_valid, accumulate);
  }
}

}  // namespace

PackedMatrix::PackedMatrix(int K, int N)
    : K_(K), N_(N), panels_((N + NR - 1) / NR),
      data_(xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(panels_) * K * NR})) {}

int PackedMatrix::row_block() { return MR; }

PackedMatrix PackedMatrix::from_transposed(const float* w, int N, int K) {
  PackedMatrix p(K, N);
  float* d = p.data_.data();
  for (int q = 0; q < p.panels_; ++q)
    for (int k = 0; k < K; ++k) {
      float* dst = d + (static_cast<std::size_t>(q) * K + k) * NR;
      for (int c = 0; c < NR; ++c) {
        const int n = q * NR + c;
        dst[c] = n < N ? w[static_cast<std::size_t>(n) * K + k] : 0.0f;
      }
    }
  return p;
}

PackedMatrix PackedMatrix::from_plain(const float* w, int K, int N) {
  PackedMatrix p(K, N);
  float* d = p.data_.data();
  for (int q = 0; q < p.panels_; ++q)
    for (int k = 0; k < K; ++k) {
      float* dst = d + (static_cast<std::size_t>(q) * K + k) * NR;
      const float* src = w + static_cast<std::size_t>(k) * N;
      for (int c = 0; c < NR; ++c) {
        const int n = q * NR + c;
        dst[c] = n < N ? src[n] : 0.0f;
      }
    }
  return p;
}

void PackedMatrix::multiply(int M, const float* A, int lda, float* C, int ldc, bool accumulate) const {
  const float* d = data_.data();
  const auto run = [&](std::size_t q0, std::size_t q1) {
    for (std::size_t q = q0; q < q1; ++q) {
      const float* panel = d + q * static_cast<std::size_t>(K_) * NR;
      const int col = static_cast<int>(q) * NR;
      const int n_valid = std::min(NR, N_ - col);
      int i = 0;
      for (; i + MR <= M; i += MR)
        block<MR>(K_, A + static_cast<std::ptrdiff_t>(i) * lda, lda, panel,
                  C + static_cast<std::ptrdiff_t>(i) * ldc + col, ldc, n_valid, accumulate);
      if (i < M)
        tail_block<MR - 1>(M - i, K_, A + static_cast<std::ptrdiff_t>(i) * lda, lda, panel,
                           C + static_cast<std::ptrdiff_t>(i) * ldc + col, ldc, n_valid, accumulate);
    }
  };
  // Split over panels only when each thread gets ~1 MFLOP: below that the wake-up dominates.
  const std::size_t flops_per_panel = 2ull * M * K_ * NR;
  const std::size_t grain = std::max<std::size_t>(1, (1u << 20) / std::max<std::size_t>(1, flops_per_panel));
  parallel_for(static_cast<std::size_t>(panels_), grain, run);
}

}  // namespace recurrent
SEQLAB_LEVEL_END
}  // namespace seqlab
