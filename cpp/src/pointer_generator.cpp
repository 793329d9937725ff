// The teacher-forced pointer-generator decoder (see pointer_generator.hpp): the
// attention decoder of decoder.cpp, then the copy gate, the mixture and the NLL.
#include "seqlab/pointer_generator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "seqlab/blas.hpp"
#include "seqlab/decoder_attention.hpp"
#include "seqlab/recurrent_cells.hpp"
#include "seqlab/recurrent_gemm.hpp"
#include "seqlab/recurrent_rows.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
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

SEQLAB_LEVEL_END
}  // namespace seqlab

namespace seqlab {
SEQLAB_LEVEL_BEGIN

// The stepper of this level: the step's weights packed once (recurrent_gemm.hpp).
class PackedPointerGeneratorStepper final : public PointerGeneratorStepper {
 public:
  PackedPointerGeneratorStepper(const PointerGeneratorShape& shape, const DecoderWeights& w, const float* w_gen,
                                const float* b_gen, const float* memory,
                                const std::int64_t* memory_lengths, const std::int64_t* source_ids);
  void step(int N, const std::int64_t* rows, const float* x, const float* h, const float* c, float* h_new,
            float* c_new, float* log_probs, float* attention) override;
  const PointerGeneratorShape& shape() const override { return shape_; }

 private:
  PointerGeneratorShape shape_;
  DecoderWeights w_;
  const float* w_gen_;
  float b_gen_;
  std::vector<std::int64_t> lengths_, source_ids_;
  recurrent::PackedMatrix w_ih_t_, w_hh_t_, w_q_t_, w_o_t_;
  std::vector<float> bias_;  // b_ih + b_hh (4H)
  xt::xtensor<float, 2> keys_t_, values_, values_t_;  // (B*H, S), (B*S, H), (B*H, S)
  // Step workspaces.
  xt::xtensor<float, 2> gates_, gh_, q_, ctx_, feat_, probs_, logits_;
};

PackedPointerGeneratorStepper::PackedPointerGeneratorStepper(const PointerGeneratorShape& shape,
                                                             const DecoderWeights& w, const float* w_gen,
                                                             const float* b_gen, const float* memory,
                                                             const std::int64_t* memory_lengths,
                                                             const std::int64_t* source_ids)
    : shape_(shape),
      w_(w),
      w_gen_(w_gen),
      b_gen_(b_gen ? *b_gen : 0.0f),
      w_ih_t_(recurrent::PackedMatrix::from_transposed(w.w_ih, 4 * shape.dec.H, shape.dec.E)),
      w_hh_t_(recurrent::PackedMatrix::from_transposed(w.w_hh, 4 * shape.dec.H, shape.dec.H)),
      w_q_t_(recurrent::PackedMatrix::from_transposed(w.w_q, shape.dec.H, shape.dec.H)),
      w_o_t_(recurrent::PackedMatrix::from_transposed(w.w_o, shape.dec.H, shape.dec.H)) {
  const DecoderShape& s = shape.dec;
  const usize B = static_cast<usize>(s.B), S = static_cast<usize>(s.S), H = static_cast<usize>(s.H);
  const int GH = 4 * s.H;
  if (memory_lengths) lengths_.assign(memory_lengths, memory_lengths + B); else lengths_.assign(B, s.S);
  source_ids_.assign(source_ids, source_ids + B * S);
  bias_.assign(static_cast<usize>(GH), 0.0f);
  if (w.b_ih) add_row(bias_.data(), w.b_ih, GH);
  if (w.b_hh) add_row(bias_.data(), w.b_hh, GH);
  // Keys and values of every source once: (B*S, H), then transposed per example.
  xt::xtensor<float, 2> keys;
  ensure_shape(keys, B * S, H);
  ensure_shape(values_, B * S, H);
  ensure_shape(keys_t_, B * H, S);
  ensure_shape(values_t_, B * H, S);
  const int BS = static_cast<int>(B * S);
  sgemm(false, true, BS, s.H, s.A, 1.0f, memory, s.A, w.w_k, s.A, 0.0f, keys.data(), s.H);
  sgemm(false, true, BS, s.H, s.A, 1.0f, memory, s.A, w.w_v, s.A, 0.0f, values_.data(), s.H);
  for (usize r = 0; r < B * S; ++r) {
    if (w.b_k) add_row(keys.data() + r * H, w.b_k, s.H);
    if (w.b_v) add_row(values_.data() + r * H, w.b_v, s.H);
  }
  for (usize b = 0; b < B; ++b)
    for (usize k = 0; k < S; ++k)
      for (usize j = 0; j < H; ++j) {
        keys_t_.data()[(b * H + j) * S + k] = keys.data()[(b * S + k) * H + j];
        values_t_.data()[(b * H + j) * S + k] = values_.data()[(b * S + k) * H + j];
      }
}

void PackedPointerGeneratorStepper::step(int N, const std::int64_t* rows, const float* x, const float* h,
                                         const float* c, float* h_new, float* c_new, float* log_probs,
                                         float* attention) {
  const DecoderShape& s = shape_.dec;
  const int H = s.H, E = s.E, V = s.O, GH = 4 * H, Z = 2 * H, heads = s.heads;
  const usize uN = static_cast<usize>(N), S = static_cast<usize>(s.S), X = static_cast<usize>(shape_.extended);
  const float scale = 1.0f / std::sqrt(static_cast<float>(H / heads));
  ensure_shape(gates_, uN, static_cast<usize>(GH));
  ensure_shape(gh_, uN, static_cast<usize>(GH));
  ensure_shape(q_, uN, static_cast<usize>(H));
  ensure_shape(ctx_, uN, static_cast<usize>(H));
  ensure_shape(feat_, uN, static_cast<usize>(Z));
  ensure_shape(probs_, uN * heads, S);
  ensure_shape(logits_, uN, static_cast<usize>(V));
  w_ih_t_.multiply(N, x, E, gates_.data(), GH, false);
  w_hh_t_.multiply(N, h, H, gh_.data(), GH, false);
  parallel_for(uN, row_grain(GH), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n) {
      add_row(gates_.data() + n * GH, bias_.data(), GH);
      recurrent::FwdRow row{};
      row.gates = gates_.data() + n * GH;
      row.gh = gh_.data() + n * GH;
      row.h_prev = h + n * H;
      row.c_prev = c + n * H;
      row.h_new = h_new + n * H;
      row.c_new = c_new + n * H;
      row.y = feat_.data() + n * Z;
      recurrent::LstmCell::forward(row, H);
    }
  });
  w_q_t_.multiply(N, h_new, H, q_.data(), H, false);
  parallel_for(uN, row_grain(2 * S * H), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n) {
      const usize b = static_cast<usize>(rows[n]);
      float* qn = q_.data() + n * H;
      if (w_.b_q) add_row(qn, w_.b_q, H);
      decoder_attention::attend_row(s, qn, keys_t_.data() + b * H * S, values_.data() + b * S * H,
                                    values_t_.data() + b * H * S, static_cast<int>(lengths_[b]), scale,
                                    probs_.data() + n * heads * S, ctx_.data() + n * H);
    }
  });
  w_o_t_.multiply(N, ctx_.data(), H, feat_.data() + H, Z, false);
  sgemm(false, true, N, V, Z, 1.0f, feat_.data(), Z, w_.w_out, Z, 0.0f, logits_.data(), V);
  parallel_for(uN, row_grain(static_cast<usize>(V)), [&](usize r0, usize r1) {
    for (usize n = r0; n < r1; ++n) {
      const usize b = static_cast<usize>(rows[n]);
      float* z = feat_.data() + n * Z;
      if (w_.b_o) add_row(z + H, w_.b_o, H);
      float* lg = logits_.data() + n * V;
      if (w_.b_out) add_row(lg, w_.b_out, V);
      const float pg = sigmoid(simd::row_dot(w_gen_, z, Z) + simd::row_dot(w_gen_ + Z, x + n * E, E) + b_gen_);
      simd::softmax_row(lg, V);
      float* out = log_probs + n * X;
      simd::scale_row(lg, V, pg);
      std::memcpy(out, lg, static_cast<usize>(V) * sizeof(float));
      std::fill(out + V, out + X, 0.0f);
      const float* p = probs_.data() + n * heads * S;
      const std::int64_t* src = source_ids_.data() + b * S;
      const int len = static_cast<int>(lengths_[b]);
      const float copy = (1.0f - pg) / static_cast<float>(heads);
      float* att = attention ? attention + n * S : nullptr;
      if (att) std::fill(att, att + S, 0.0f);
      for (int k = 0; k < len; ++k) {
        float a = 0.0f;
        for (int hh = 0; hh < heads; ++hh) a += p[hh * S + k];
        out[src[k]] += copy * a;
        if (att) att[k] = a / static_cast<float>(heads);
      }
      for (usize j = 0; j < X; ++j) out[j] = std::log(out[j]);
    }
  });
}

std::unique_ptr<PointerGeneratorStepper> make_pointer_generator_stepper(
    const PointerGeneratorShape& shape, const DecoderWeights& w, const float* w_gen, const float* b_gen,
    const float* memory, const std::int64_t* memory_lengths, const std::int64_t* source_ids) {
  return std::make_unique<PackedPointerGeneratorStepper>(shape, w, w_gen, b_gen, memory, memory_lengths,
                                                         source_ids);
}

SEQLAB_LEVEL_END
}  // namespace seqlab
