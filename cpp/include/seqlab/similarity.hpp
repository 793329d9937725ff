// Similarity kernels: SIMD dot products and squared norms over rows, row-wise
// cosine with a mask, and pairwise score matrices (inner product, cosine, L2).
//
// The dot-product helpers give bit-identical results for one (query, row) pair
// whatever the blocking (one accumulator per pair, the same zero-padded tail), so
// the top-k and rank kernels agree with each other and across thread counts.
#pragma once
#include "seqlab/level.hpp"
#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "seqlab/simd.hpp"

namespace seqlab {

// How a query scores a bank row. Higher ranks first for inner_product and cosine;
// for l2 the smallest squared distance ranks first.
enum class Metric { inner_product, cosine, l2 };

// Norms below this are treated as this (a zero row has cosine 0 with everything).
inline constexpr float kNormEps = 1e-8f;

SEQLAB_LEVEL_BEGIN
namespace simd {

using fbatch = xsimd::batch<float>;
inline constexpr std::size_t kW = fbatch::size;

// The `rem` (< kW) floats at p, zero-padded to a full batch.
inline fbatch load_tail(const float* p, std::size_t rem) {
  alignas(64) float buf[kW] = {};
  for (std::size_t i = 0; i < rem; ++i) buf[i] = p[i];
  return fbatch::load_aligned(buf);
}

// out[a * R + r] = dot(q + a * ldq, b + r * ldb) for a < QB, r < R; vectors of length D.
template <int QB, int R>
inline void dot_block(const float* q, std::size_t ldq, const float* b, std::size_t ldb,
                      std::size_t D, float* out) {
  fbatch acc[QB][R];
  for (int a = 0; a < QB; ++a)
    for (int r = 0; r < R; ++r) acc[a][r] = fbatch(0.0f);
  std::size_t i = 0;
  for (; i + kW <= D; i += kW) {
    fbatch bv[R];
    for (int r = 0; r < R; ++r) {
      bv[r] = fbatch::load_unaligned(b + r * ldb + i);
      keep_in_register(bv[r]);
    }
    for (int a = 0; a < QB; ++a) {
      fbatch qv = fbatch::load_unaligned(q + a * ldq + i);
      keep_in_register(qv);
      for (int r = 0; r < R; ++r) acc[a][r] = xsimd::fma(qv, bv[r], acc[a][r]);
    }
  }
  if (i < D) {
    fbatch bv[R];
    for (int r = 0; r < R; ++r) bv[r] = load_tail(b + r * ldb + i, D - i);
    for (int a = 0; a < QB; ++a) {
      const fbatch qv = load_tail(q + a * ldq + i, D - i);
      for (int r = 0; r < R; ++r) acc[a][r] = xsimd::fma(qv, bv[r], acc[a][r]);
    }
  }
  for (int a = 0; a < QB; ++a)
    for (int r = 0; r < R; ++r) out[a * R + r] = xsimd::hadd(acc[a][r]);
}

// out[r] = squared norm of row b + r * ldb (length D), r < R.
template <int R>
inline void sqnorm_block(const float* b, std::size_t ldb, std::size_t D, float* out) {
  fbatch acc[R];
  for (int r = 0; r < R; ++r) acc[r] = fbatch(0.0f);
  std::size_t i = 0;
  for (; i + kW <= D; i += kW)
    for (int r = 0; r < R; ++r) {
      const fbatch v = fbatch::load_unaligned(b + r * ldb + i);
      acc[r] = xsimd::fma(v, v, acc[r]);
    }
  if (i < D)
    for (int r = 0; r < R; ++r) {
      const fbatch v = load_tail(b + r * ldb + i, D - i);
      acc[r] = xsimd::fma(v, v, acc[r]);
    }
  for (int r = 0; r < R; ++r) out[r] = xsimd::hadd(acc[r]);
}

inline float dot(const float* a, const float* b, std::size_t D) {
  float out;
  dot_block<1, 1>(a, D, b, D, D, &out);
  return out;
}

inline float sqnorm(const float* a, std::size_t D) {
  float out;
  sqnorm_block<1>(a, D, D, &out);
  return out;
}

// 1 / max(||x||, eps) from the squared norm.
inline float inv_norm(float sq) { return 1.0f / std::fmax(std::sqrt(sq), kNormEps); }

}  // namespace simd
SEQLAB_LEVEL_END

SEQLAB_LEVEL_BEGIN
// Row-wise cosine of a and b, both (M, D): out[i] = a_i . b_i / max(|a_i| |b_i|, eps).
// mask (M,) may be null; rows with mask[i] == 0 are skipped and get out[i] = 0.
void rowwise_cosine(const float* a, const float* b, std::size_t M, std::size_t D,
                    const std::uint8_t* mask, float eps, float* out);

// Pairwise scores of a (M, D) against b (N, D) into out (M, N):
// inner products, cosines, or squared L2 distances (>= 0).
void pairwise_scores(const float* a, std::size_t M, const float* b, std::size_t N, std::size_t D,
                     Metric metric, float* out);
SEQLAB_LEVEL_END

}  // namespace seqlab
