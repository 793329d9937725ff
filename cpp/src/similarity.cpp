#include "seqlab/similarity.hpp"

#include <algorithm>
#include <vector>

#include "seqlab/blas.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

void rowwise_cosine(const float* a, const float* b, std::size_t M, std::size_t D,
                    const std::uint8_t* mask, float eps, float* out) {
  parallel_for(M, 256, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      if (mask && !mask[i]) {
        out[i] = 0.0f;
        continue;
      }
      const float* x = a + i * D;
      const float* y = b + i * D;
      const float d = simd::dot(x, y, D);
      const float nx = simd::sqnorm(x, D), ny = simd::sqnorm(y, D);
      out[i] = d / std::fmax(std::sqrt(nx) * std::sqrt(ny), eps);
    }
  });
}

void pairwise_scores(const float* a, std::size_t M, const float* b, std::size_t N, std::size_t D,
                     Metric metric, float* out) {
  if (M == 0 || N == 0) return;
  const int m = static_cast<int>(M), n = static_cast<int>(N), d = static_cast<int>(D);
  if (metric == Metric::cosine) {
    // out = (a / |a|) @ (b / |b|)^T
    std::vector<float> an(M * D), bn(N * D);
    auto normalise = [D](const float* src, std::size_t rows, float* dst) {
      parallel_for(rows, 256, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
          const float inv = simd::inv_norm(simd::sqnorm(src + i * D, D));
          for (std::size_t c = 0; c < D; ++c) dst[i * D + c] = src[i * D + c] * inv;
        }
      });
    };
    normalise(a, M, an.data());
    normalise(b, N, bn.data());
    sgemm(false, true, m, n, d, 1.0f, an.data(), d, bn.data(), d, 0.0f, out, n);
    return;
  }
  sgemm(false, true, m, n, d, metric == Metric::l2 ? -2.0f : 1.0f, a, d, b, d, 0.0f, out, n);
  if (metric == Metric::l2) {
    std::vector<float> asq(M), bsq(N);
    for (std::size_t i = 0; i < M; ++i) asq[i] = simd::sqnorm(a + i * D, D);
    for (std::size_t j = 0; j < N; ++j) bsq[j] = simd::sqnorm(b + j * D, D);
    parallel_for(M, 16, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i)
        for (std::size_t j = 0; j < N; ++j)
          out[i * N + j] = std::max(out[i * N + j] + asq[i] + bsq[j], 0.0f);
    });
  }
}

SEQLAB_LEVEL_END
}  // namespace seqlab
