#include "seqlab/linear.hpp"

#include <xtensor/xtensor.hpp>

#include <algorithm>

#include "seqlab/activations.hpp"
#include "seqlab/blas.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {
using simd::Batch;
constexpr std::size_t kElementGrain = 1 << 15;  // elements per task for memory-bound loops
// Output rows per GEMM call inside a thread's part: ~4 MiB of output, so the epilogue
// reads the block from cache while the GEMM still packs W only a few times per part.
constexpr std::size_t kBlockBytes = std::size_t{1} << 22;

// Bias and activation over rows [0, rows) of z (in place, when y == z) or into y.
void epilogue(float* z, float* y, const float* b, std::size_t rows, std::size_t N, Activation act) {
  const auto add = [](Batch a, Batch c) { return a + c; };
  for (std::size_t r = 0; r < rows; ++r) {
    float* zr = z + r * N;
    float* yr = y + r * N;
    if (b != nullptr) simd::map2(zr, b, zr, N, add);
    switch (act) {
      case Activation::kNone:
        if (yr != zr) std::copy(zr, zr + N, yr);
        break;
      case Activation::kRelu:
        simd::map1(zr, yr, N, [](Batch v) { return act::relu(v); });
        break;
      case Activation::kGelu:
        simd::map1(zr, yr, N, [](Batch v) { return act::gelu_exact(v); });
        break;
      case Activation::kGeluTanh:
        simd::map1(zr, yr, N, [](Batch v) { return act::gelu_tanh(v); });
        break;
    }
  }
}

// dz = grad_y * act'(saved) over n elements.
void activation_grad(const float* g, const float* saved, float* dz, std::size_t n, Activation act) {
  parallel_for(n, kElementGrain, [&](std::size_t b, std::size_t e) {
    switch (act) {
      case Activation::kNone:
        std::copy(g + b, g + e, dz + b);
        break;
      case Activation::kRelu:
        simd::map2(g + b, saved + b, dz + b, e - b, [](Batch gv, Batch y) { return act::relu_grad(gv, y); });
        break;
      case Activation::kGelu:
        simd::map2(g + b, saved + b, dz + b, e - b, [](Batch gv, Batch v) { return act::gelu_exact_grad(gv, v); });
        break;
      case Activation::kGeluTanh:
        simd::map2(g + b, saved + b, dz + b, e - b, [](Batch gv, Batch v) { return act::gelu_tanh_grad(gv, v); });
        break;
    }
  });
}

}  // namespace

void linear_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                    std::size_t K, std::size_t N, Activation act, float* pre) {
  if (M == 0 || N == 0) return;
  float* z = pre != nullptr ? pre : y;  // where the GEMM writes x w^T
  if (K == 0) std::fill(z, z + M * N, 0.0f);
  const SerialBlas serial;
  // Blocks of rows, claimed dynamically by the pool's threads: at least ~4 MFLOP each, at
  // most kBlockBytes of output, and about two per thread (each block packs w again, ~1%
  // at M = 4096), so a thread slowed by another process hands its last block to the others.
  const std::size_t row_flops = 2 * N * std::max<std::size_t>(K, 1);
  const std::size_t min_rows = std::max<std::size_t>(1, (std::size_t{1} << 22) / row_flops);
  const std::size_t max_rows = std::max<std::size_t>(16, kBlockBytes / (sizeof(float) * N));
  const std::size_t parts = 2 * static_cast<std::size_t>(get_num_threads());
  const std::size_t per_thread = (M + parts - 1) / parts;
  const std::size_t block = std::max(min_rows, std::min(max_rows, per_thread));
  parallel_claim((M + block - 1) / block, [&](const ClaimFn& next) {
    for (std::size_t blk; next(blk);) {
      const std::size_t i = blk * block;
      const std::size_t rows = std::min(block, M - i);
      // z rows (rows, N) = x rows (rows, K) @ w^T (K, N)
      if (K > 0)
        sgemm(false, true, static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), 1.0f, x + i * K,
              static_cast<int>(K), w, static_cast<int>(K), 0.0f, z + i * N, static_cast<int>(N));
      if (b != nullptr || act != Activation::kNone || z != y) epilogue(z + i * N, y + i * N, b, rows, N, act);
    }
  });
}

void linear_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                     float* db, std::size_t M, std::size_t K, std::size_t N, Activation act,
                     const float* saved) {
  const int m = static_cast<int>(M), k = static_cast<int>(K), n = static_cast<int>(N);
  const SerialBlas serial;
  xt::xtensor<float, 1> dz_buffer;
  const float* g = grad_y;
  if (act != Activation::kNone && M > 0 && N > 0) {
    dz_buffer = xt::xtensor<float, 1>::from_shape({M * N});
    activation_grad(grad_y, saved, dz_buffer.data(), M * N, act);
    g = dz_buffer.data();
  }
  if (dx != nullptr && K > 0) {
    if (N == 0)
      std::fill(dx, dx + M * K, 0.0f);
    else  // dx (M, K) = dz (M, N) @ w (N, K)
      sgemm_rows_parallel(false, false, m, k, n, 1.0f, g, n, w, k, 0.0f, dx, k);
  }
  if (dw != nullptr && M > 0 && K > 0)  // dw (N, K) += dz^T (N, M) @ x (M, K)
    sgemm_rows_parallel(true, false, n, k, m, 1.0f, g, n, x, k, 1.0f, dw, k);
  if (db != nullptr && M > 0) {
    // db (N,) += sum over rows of dz; each task owns a block of columns and adds
    // rows in order, so the sum does not depend on the thread count.
    const std::size_t grain = std::max<std::size_t>(64, kElementGrain / std::max<std::size_t>(M, 1));
    parallel_for(N, grain, [&](std::size_t c0, std::size_t c1) {
      for (std::size_t r = 0; r < M; ++r) {
        const float* gr = g + r * N;
        simd::map2(db + c0, gr + c0, db + c0, c1 - c0, [](Batch a, Batch v) { return a + v; });
      }
    });
  }
}

SEQLAB_LEVEL_END
}  // namespace seqlab
