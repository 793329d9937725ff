#include "seqlab/clip.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

constexpr std::size_t kBlock = 1 << 15;  // fixed reduction blocks: thread-count independent

struct Block {
  float* data;
  std::size_t size;
};

std::vector<Block> make_blocks(const std::vector<FloatSpan>& spans) {
  std::vector<Block> blocks;
  for (const auto& s : spans)
    for (std::size_t b = 0; b < s.size; b += kBlock) blocks.push_back({s.data + b, std::min(kBlock, s.size - b)});
  return blocks;
}

double block_sumsq(const float* x, std::size_t n) {
  using simd::Batch;
  std::size_t i = 0;
  Batch acc(0.0f);
  double total = 0.0;
  // Float lanes over short runs, flushed into double, keep the error small.
  constexpr std::size_t kRun = 1024;
  while (i + simd::kLanes <= n) {
    const std::size_t end = std::min(n - (n - i) % simd::kLanes, i + kRun);
    for (; i < end; i += simd::kLanes) {
      const Batch v = Batch::load_unaligned(x + i);
      acc += v * v;
    }
    total += static_cast<double>(xsimd::hadd(acc));
    acc = Batch(0.0f);
  }
  for (; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}

double block_absmax(const float* x, std::size_t n) {
  float m = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > m || std::isnan(a)) m = a;
  }
  return m;
}

double block_pow_sum(const float* x, std::size_t n, double p) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) total += std::pow(std::fabs(static_cast<double>(x[i])), p);
  return total;
}

}  // namespace

float grad_total_norm(const std::vector<FloatSpan>& grads, double norm_type) {
  const std::vector<Block> blocks = make_blocks(grads);
  std::vector<double> partial(blocks.size(), 0.0);
  const bool is_inf = std::isinf(norm_type);
  parallel_for(blocks.size(), 1, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      const Block& k = blocks[b];
      if (is_inf)
        partial[b] = block_absmax(k.data, k.size);
      else if (norm_type == 2.0)
        partial[b] = block_sumsq(k.data, k.size);
      else
        partial[b] = block_pow_sum(k.data, k.size, norm_type);
    }
  });
  double total = 0.0;
  if (is_inf) {
    for (double v : partial)
      if (v > total || std::isnan(v)) total = v;
    return static_cast<float>(total);
  }
  for (double v : partial) total += v;
  if (norm_type == 2.0) return static_cast<float>(std::sqrt(total));
  return static_cast<float>(std::pow(total, 1.0 / norm_type));
}

float grad_clip_scale(const std::vector<FloatSpan>& grads, float total_norm, float max_norm) {
  float coef = max_norm / (total_norm + 1e-6f);
  if (!(coef < 1.0f) && !std::isnan(coef)) return 1.0f;  // nothing to scale
  std::vector<Block> blocks = make_blocks(grads);
  parallel_for(blocks.size(), 1, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      float* x = blocks[b].data;
      simd::map1(x, x, blocks[b].size, [&](simd::Batch v) { return v * simd::Batch(coef); });
    }
  });
  return coef;
}

SEQLAB_LEVEL_END
}  // namespace seqlab
