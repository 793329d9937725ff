#include "seqlab/embedding.hpp"

#include <algorithm>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {
constexpr std::size_t kElementGrain = 1 << 15;
}

std::int64_t embedding_first_bad_index(const std::int64_t* index, std::size_t n,
                                       std::int64_t num_embeddings) {
  for (std::size_t i = 0; i < n; ++i)
    if (index[i] < 0 || index[i] >= num_embeddings) return static_cast<std::int64_t>(i);
  return -1;
}

void embedding_forward(const std::int64_t* index, const float* weight, float* out, std::size_t n,
                       std::size_t D) {
  parallel_for(n, std::max<std::size_t>(1, kElementGrain / std::max<std::size_t>(D, 1)),
               [&](std::size_t r0, std::size_t r1) {
                 for (std::size_t r = r0; r < r1; ++r) {
                   const float* src = weight + static_cast<std::size_t>(index[r]) * D;
                   std::copy(src, src + D, out + r * D);
                 }
               });
}

void embedding_backward(const std::int64_t* index, const float* grad_out, float* grad_weight,
                        std::size_t n, std::size_t D, std::int64_t padding_idx) {
  // Column blocks are independent, so threads never write the same element and each
  // element receives its row contributions in index order.
  const std::size_t grain = std::max<std::size_t>(64, kElementGrain / std::max<std::size_t>(n, 1));
  parallel_for(D, grain, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t r = 0; r < n; ++r) {
      if (index[r] == padding_idx) continue;
      float* dst = grad_weight + static_cast<std::size_t>(index[r]) * D;
      simd::map2(dst + c0, grad_out + r * D + c0, dst + c0, c1 - c0,
                 [](simd::Batch a, simd::Batch g) { return a + g; });
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
