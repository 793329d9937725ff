#include "seqlab/linear.hpp"

#include <algorithm>

#include "seqlab/blas.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {

namespace {
constexpr std::size_t kElementGrain = 1 << 15;  // elements per task for memory-bound loops
}

void linear_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                    std::size_t K, std::size_t N) {
  // y (M, N): rows start as the bias, then y += x (M, K) @ w^T (K, N).
  float beta = 0.0f;
  if (b != nullptr) {
    parallel_for(M, std::max<std::size_t>(1, kElementGrain / std::max<std::size_t>(N, 1)),
                 [&](std::size_t r0, std::size_t r1) {
                   for (std::size_t r = r0; r < r1; ++r) std::copy(b, b + N, y + r * N);
                 });
    beta = 1.0f;
  }
  if (K == 0) {
    if (b == nullptr) std::fill(y, y + M * N, 0.0f);
    return;
  }
  sgemm(false, true, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, x,
        static_cast<int>(K), w, static_cast<int>(K), beta, y, static_cast<int>(N));
}

void linear_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                     float* db, std::size_t M, std::size_t K, std::size_t N) {
  const int m = static_cast<int>(M), k = static_cast<int>(K), n = static_cast<int>(N);
  if (dx != nullptr && K > 0) {
    if (N == 0)
      std::fill(dx, dx + M * K, 0.0f);
    else  // dx (M, K) = grad_y (M, N) @ w (N, K)
      sgemm(false, false, m, k, n, 1.0f, grad_y, n, w, k, 0.0f, dx, k);
  }
  if (dw != nullptr && M > 0 && K > 0)  // dw (N, K) += grad_y^T (N, M) @ x (M, K)
    sgemm(true, false, n, k, m, 1.0f, grad_y, n, x, k, 1.0f, dw, k);
  if (db != nullptr && M > 0) {
    // db (N,) += sum over rows of grad_y; each task owns a block of columns and adds
    // rows in order, so the sum does not depend on the thread count.
    const std::size_t grain = std::max<std::size_t>(64, kElementGrain / std::max<std::size_t>(M, 1));
    parallel_for(N, grain, [&](std::size_t c0, std::size_t c1) {
      for (std::size_t r = 0; r < M; ++r) {
        const float* g = grad_y + r * N;
        simd::map2(db + c0, g + c0, db + c0, c1 - c0,
                   [](simd::Batch a, simd::Batch v) { return a + v; });
      }
    });
  }
}

}  // namespace seqlab
