// Row-major single-precision GEMM on OpenBLAS: C = alpha * op(A) @ op(B) + beta * C.
//
// seqlab builds against the OpenBLAS of the scipy-openblas32 wheel (what NumPy and SciPy
// build against). Its symbols carry a prefix (scipy_cblas_sgemm, scipy_openblas_get_corename)
// so they never clash with another BLAS in the same process (PyTorch's, a system one); the
// build passes it as BLAS_SYMBOL_PREFIX (its pkg-config Cflags), and every BLAS call in
// seqlab names its function through SEQLAB_BLAS(name), as NumPy's CBLAS_FUNC does.
#pragma once
#include "seqlab/level.hpp"
#include <cblas.h>

#ifndef BLAS_SYMBOL_PREFIX
#define BLAS_SYMBOL_PREFIX
#endif
#define SEQLAB_BLAS_CONCAT_(prefix, name) prefix##name
#define SEQLAB_BLAS_EXPAND_(prefix, name) SEQLAB_BLAS_CONCAT_(prefix, name)
#define SEQLAB_BLAS(name) SEQLAB_BLAS_EXPAND_(BLAS_SYMBOL_PREFIX, name)

#include <algorithm>
#include <cstddef>

#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

// A is (M, K) after op, B is (K, N) after op, C is (M, N); lda/ldb/ldc are row strides.
inline void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                  int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  SEQLAB_BLAS(cblas_sgemm)(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                          M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Rows of C per part when sgemm_rows_parallel splits an (M x N, inner K) product over the
// pool: as many parts as threads, each at least ~4 MFLOP (the split depends only on the
// shape and the thread count).
inline std::size_t sgemm_part_rows(int M, int N, int K) {
  const std::size_t row_flops = 2ull * static_cast<std::size_t>(N) * static_cast<std::size_t>(std::max(K, 1));
  const std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 22) / row_flops);
  const auto rows = static_cast<std::size_t>(std::max(M, 1));
  const std::size_t parts = std::min<std::size_t>(static_cast<std::size_t>(get_num_threads()), (rows + grain - 1) / grain);
  return (rows + std::max<std::size_t>(parts, 1) - 1) / std::max<std::size_t>(parts, 1);
}

// Rows [r0, r1) of C = alpha op(A) op(B) + beta C, as one OpenBLAS call.
inline void sgemm_rows(bool trans_a, bool trans_b, std::size_t r0, std::size_t r1, int N, int K, float alpha,
                       const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  // Row r of op(A) starts at A + r * lda, or at column r (A + r) when A is transposed.
  const float* a = trans_a ? A + r0 : A + r0 * static_cast<std::size_t>(lda);
  sgemm(trans_a, trans_b, static_cast<int>(r1 - r0), N, K, alpha, a, lda, B, ldb, beta,
        C + r0 * static_cast<std::size_t>(ldc), ldc);
}

// The same product with the rows of C split over the thread pool in parts of
// sgemm_part_rows, each part one single-threaded OpenBLAS call (hold a SerialBlas around
// the kernel). Small products run whole on the calling thread.
inline void sgemm_rows_parallel(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                const float* A, int lda, const float* B, int ldb, float beta,
                                float* C, int ldc) {
  if (M == 0 || N == 0) return;
  parallel_for(static_cast<std::size_t>(M), sgemm_part_rows(M, N, K), [&](std::size_t r0, std::size_t r1) {
    sgemm_rows(trans_a, trans_b, r0, r1, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
