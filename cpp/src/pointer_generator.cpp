// The teacher-forced pointer-generator decoder (see pointer_generator.hpp): the
// attention decoder of decoder.cpp, then the copy gate, the mixture and the NLL.
#include "seqlab/pointer_generator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "seqlab/recurrent_rows.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
namespace {

using recurrent::add_row;
using recurrent::axpy;
using recurrent::ensure_shape;
using recurrent::row_grain;
using usize = std::size_t;

int source_length(const PointerGeneratorCache& c, usize b) {
  return c.dec.memory_lengths.empty() ? c.shape.dec.S : static_cast<int>(c.dec.memory_lengths[b]);
}

// Copy weight of `id` at row (b, t): the heads' mean attention on the source
// positions holding it.
float copy_weight(const PointerGeneratorCache& c, usize b, usize bt, std::int64_t id) {
  const DecoderShape& s = c.shape.dec;
  const usize S = static_cast<usize>(s.S);
  const float* probs = c.dec.probs.data() + bt * s.heads * S;
  const std::int64_t* src = c.source_ids.data() + b * S;
  const int len = source_length(c, b);
  float sum = 0.0f;
  for (int k = 0; k < len; ++k)
    if (src[k] == id)
      for (int h = 0; h < s.heads; ++h) sum += probs[h * S + k];
  return sum / static_cast<float>(s.heads);
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

float pointer_generator_forward(const PointerGeneratorShape& shape, const DecoderWeights& w,
                                const float* w_gen, const float* b_gen, const float* inputs,
                                const float* h0, const float* c0, const float* memory,
                                const std::int64_t* memory_lengths, const std::int64_t* source_ids,
                                const std::int64_t* target_ids, const std::uint8_t* target_mask,
                                PointerGeneratorCache& c) {
  const DecoderShape& s = shape.dec;
  const usize B = static_cast<usize>(s.B), T = static_cast<usize>(s.T), BT = B * T;
  const int V = s.O, Z = 2 * s.H, E = s.E;
  c.shape = shape;
  c.w_gen = w_gen;
  c.b_gen = b_gen ? *b_gen : 0.0f;
  c.source_ids.assign(source_ids, source_ids + B * s.S);
  c.target_ids.assign(target_ids, target_ids + BT);
  c.mask.assign(target_mask, target_mask + BT);
  c.count = static_cast<usize>(std::count_if(c.mask.begin(), c.mask.end(), [](std::uint8_t m) { return m != 0; }));
  ensure_shape(c.p_gen, BT);
  ensure_shape(c.p_vocab, BT);
  ensure_shape(c.p_copy, BT);
  // Every step teacher-forced; the logits land in the decoder's d_pred buffer, which
  // its backward then reads in place.
  ensure_shape(c.dec.d_pred, BT, static_cast<usize>(V));
  float* logits = c.dec.d_pred.data();
  const std::vector<std::uint8_t> teacher(BT, 1);
  decoder_forward(CellKind::Lstm, s, w, inputs, teacher.data(), h0, c0, memory, memory_lengths,
                  nullptr, logits, c.dec);

  const float* feat = c.dec.features.data();
  const float* U = c.dec.inputs.data();
  std::vector<double> row_loss(BT, 0.0);
  parallel_for(BT, row_grain(static_cast<usize>(V)), [&](usize r0, usize r1) {
    for (usize r = r0; r < r1; ++r) {
      if (!c.mask[r]) {
        c.p_gen[r] = c.p_vocab[r] = c.p_copy[r] = 0.0f;
        continue;
      }
      const usize b = r / T;
      const std::int64_t y = c.target_ids[r];
      const float z = simd::row_dot(w_gen, feat + r * Z, Z) + simd::row_dot(w_gen + Z, U + r * E, E) + c.b_gen;
      const float pg = sigmoid(z);
      float* row = logits + r * V;
      simd::softmax_row(row, V);
      const float pv = y < V ? row[y] : 0.0f;
      const float pc = copy_weight(c, b, r, y);
      c.p_gen[r] = pg;
      c.p_vocab[r] = pv;
      c.p_copy[r] = pc;
      row_loss[r] = -std::log(static_cast<double>(pg * pv + (1.0f - pg) * pc + kPointerGeneratorEps));
    }
  });
  if (c.count == 0) return 0.0f;
  double total = 0.0;
  for (double l : row_loss) total += l;
  return static_cast<float>(total / static_cast<double>(c.count));
}

void pointer_generator_backward(PointerGeneratorCache& c, float d_loss, const DecoderGrads& grads,
                                float* d_w_gen, float* d_b_gen, float* d_inputs, float* dh0,
                                float* dc0, float* d_memory) {
  const DecoderShape& s = c.shape.dec;
  const usize B = static_cast<usize>(s.B), T = static_cast<usize>(s.T), BT = B * T;
  const usize S = static_cast<usize>(s.S);
  const int V = s.O, Z = 2 * s.H, E = s.E, heads = s.heads;
  ensure_shape(c.d_features, BT, static_cast<usize>(Z));
  ensure_shape(c.d_probs, BT * heads, S);
  ensure_shape(c.d_inputs, BT, static_cast<usize>(E));
  ensure_shape(c.d_gate, BT);
  float* d_logits = c.dec.d_pred.data();  // the probabilities until rewritten here
  const float scale = c.count ? d_loss / static_cast<float>(c.count) : 0.0f;
  parallel_for(BT, row_grain(static_cast<usize>(V)), [&](usize r0, usize r1) {
    for (usize r = r0; r < r1; ++r) {
      float* dl = d_logits + r * V;
      float* dp = c.d_probs.data() + r * heads * S;
      float* dfeat = c.d_features.data() + r * Z;
      std::fill(dp, dp + heads * S, 0.0f);
      if (!c.mask[r]) {
        std::fill(dl, dl + V, 0.0f);
        std::fill(dfeat, dfeat + Z, 0.0f);
        c.d_gate[r] = 0.0f;
        continue;
      }
      const usize b = r / T;
      const std::int64_t y = c.target_ids[r];
      const float pg = c.p_gen[r], pv = c.p_vocab[r], pc = c.p_copy[r];
      const float g = -scale / (pg * pv + (1.0f - pg) * pc + kPointerGeneratorEps);  // d P(y)
      // Vocabulary part: d logit_j = g pg pv (delta_jy - softmax_j).
      const float coef = g * pg * pv;
      simd::scale_row(dl, V, -coef);
      if (y < V) dl[y] += coef;
      // Copy part: every position holding y, every head, gets g (1 - pg) / heads.
      const float dcopy = g * (1.0f - pg) / static_cast<float>(heads);
      const std::int64_t* src = c.source_ids.data() + b * S;
      const int len = source_length(c, b);
      for (int k = 0; k < len; ++k)
        if (src[k] == y)
          for (int h = 0; h < heads; ++h) dp[h * S + k] = dcopy;
      // Gate: d z = g (pv - pc) pg (1 - pg).
      const float dz = g * (pv - pc) * pg * (1.0f - pg);
      c.d_gate[r] = dz;
      for (int j = 0; j < Z; ++j) dfeat[j] = dz * c.w_gen[j];
    }
  });
  DecoderGrads dg = grads;
  dg.start = nullptr;  // the start's gradient is added below, with the gate's part
  DecoderBackwardExtras ex;
  ex.d_features = c.d_features.data();
  ex.d_probs = c.d_probs.data();
  ex.d_inputs = c.d_inputs.data();
  decoder_backward(c.dec, d_logits, dg, dh0, dc0, d_memory, nullptr, ex);

  const float* feat = c.dec.features.data();
  const float* U = c.dec.inputs.data();
  float* dU = c.d_inputs.data();
  for (usize r = 0; r < BT; ++r) {
    const float dz = c.d_gate[r];
    if (dz == 0.0f) continue;
    axpy(dU + r * E, dz, c.w_gen + Z, E);
    if (d_w_gen) {
      axpy(d_w_gen, dz, feat + r * Z, Z);
      axpy(d_w_gen + Z, dz, U + r * E, E);
    }
    if (d_b_gen) *d_b_gen += dz;
  }
  // u_t is the start at t = 0, inputs[:, t-1] after.
  for (usize b = 0; b < B; ++b) {
    if (grads.start) add_row(grads.start, dU + b * T * E, E);
    if (!d_inputs) continue;
    float* di = d_inputs + b * T * E;
    std::memcpy(di, dU + (b * T + 1) * E, (T - 1) * E * sizeof(float));
    std::fill(di + (T - 1) * E, di + T * E, 0.0f);
  }
}

}  // namespace seqlab
