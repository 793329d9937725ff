// Row-major single-precision GEMM on OpenBLAS: C = alpha * op(A) @ op(B) + beta * C.
#pragma once
#include <cblas.h>

namespace seqlab {

// A is (M, K) after op, B is (K, N) after op, C is (M, N); lda/ldb/ldc are row strides.
inline void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                  int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace seqlab
