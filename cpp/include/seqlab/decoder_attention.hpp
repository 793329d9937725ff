// Multi-head attention of one query row over one batch row's memory, shared by the
// decoder's time loop (decoder.cpp) and the pointer-generator's incremental step
// (pointer_generator.cpp). Keys and values are kept transposed per batch row, (H, S),
// so that a head's scores (and a narrow head's context) are SIMD sums along S.
#pragma once
#include "seqlab/level.hpp"
#include <algorithm>
#include <cstddef>

#include "seqlab/decoder.hpp"
#include "seqlab/recurrent_cells.hpp"
#include "seqlab/simd.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace decoder_attention {

using recurrent::fbatch;
using recurrent::load;
using recurrent::simd_for;
using recurrent::store;
using usize = std::size_t;

// out[j] = sum_{k < count} coef[k] * rows[k * ld + j] for j < n, accumulated in registers.
inline void weighted_sum(float* out, const float* coef, int count, const float* rows, usize ld, int n) {
  simd_for(n, [&](int j, auto v) {
    using V = decltype(v);
    V acc(0.0f);
    for (int k = 0; k < count; ++k) acc += V(coef[k]) * load<V>(rows + k * ld + j);
    store(out + j, acc);
  });
}

// One head's weighted sum of memory rows: out[d] = sum_{k < len} coef[k] * m[k * H + d]
// for d < hd, where m_t is the same head's rows transposed (hd rows of S). A head
// narrower than a SIMD batch takes hd dot products along S (SIMD over the keys);
// a wider one sums whole rows (SIMD over d).
inline void head_sum(float* out, const float* coef, int len, const float* m, int H, const float* m_t,
              usize S, int hd) {
  if (hd >= static_cast<int>(fbatch::size)) {
    weighted_sum(out, coef, len, m, static_cast<usize>(H), hd);
    return;
  }
  for (int d = 0; d < hd; ++d) out[d] = simd::row_dot(coef, m_t + d * S, len);
}

// Attention of one query row (b, t) over its memory: probs and context. keys_t and
// values_t are the row's keys and values transposed, (H, S), so that a head's scores
// (and, for narrow heads, its context) are SIMD sums along S.
inline void attend_row(const DecoderShape& s, const float* q, const float* keys_t, const float* values,
                const float* values_t, int len, float scale, float* probs, float* ctx) {
  const int H = s.H, hd = H / s.heads;
  const usize S = static_cast<usize>(s.S);
  for (int h = 0; h < s.heads; ++h) {
    float* p = probs + h * S;
    weighted_sum(p, q + h * hd, hd, keys_t + h * hd * S, S, len);
    simd::scale_row(p, len, scale);
    simd::softmax_row(p, len);
    std::fill(p + len, p + S, 0.0f);
    head_sum(ctx + h * hd, p, len, values + h * hd, H, values_t + h * hd * S, S, hd);
  }
}

}  // namespace decoder_attention
SEQLAB_LEVEL_END
}  // namespace seqlab
