// The time-loop driver of the autoregressive decoder (see decoder.hpp), generic over
// the cell (recurrent_cells.hpp supplies the fused pointwise passes).
#include "seqlab/decoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

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

using recurrent::add_column_sums;
using recurrent::add_row;
using recurrent::axpy;
using recurrent::batch_split_grain;
using recurrent::BwdRow;
using recurrent::ensure_shape;
using recurrent::row_grain;
using recurrent::fbatch;
using recurrent::FwdRow;
using recurrent::load;
using recurrent::PackedMatrix;
using recurrent::simd_for;
using recurrent::store;

using usize = std::size_t;
using decoder_attention::attend_row;
using decoder_attention::head_sum;
using decoder_attention::weighted_sum;

// Whether any step t >= 1 takes the previous prediction.
bool has_feedback(const DecoderCache& c) {
  const usize T = static_cast<usize>(c.shape.T);
  for (usize i = 0; i < c.teacher.size(); ++i)
    if (i % T != 0 && !c.teacher[i]) return true;
  return false;
}

// Rows b in [b0, b1) whose step t takes the previous prediction (t >= 1 and not
// teacher-forced).
void feedback_rows(const DecoderCache& c, int t, usize b0, usize b1, std::vector<int>& rows) {
  rows.clear();
  if (t < 1) return;
  const usize T = static_cast<usize>(c.shape.T);
  for (usize b = b0; b < b1; ++b)
    if (!c.teacher[b * T + t]) rows.push_back(static_cast<int>(b));
}

// Whether row r = (b, t) of the inputs is known before the time loop (the start vector
// or a teacher-forced target) rather than fed the previous step's prediction.
bool input_known(const DecoderCache& c, usize r) {
  return r % static_cast<usize>(c.shape.T) == 0 || c.teacher[r];
}

// The time loop gives each thread its own batch rows for the whole sequence while the
// packed weights one step streams (recurrent product, attention's query and output
// products, and for fed-back rows the prediction and its input projection) stay below
// this; above it, each step splits its products over the pool (recurrent_rows.hpp,
// batch_split_grain). Higher than the recurrent layers' bound: a decoder step streams
// three to five matrices where a layer's streams one, and its products, cell pass and
// feedback would join the pool three times per step. Measured on 2 threads at B=32,
// T=50, E=300, LSTM H=256 (2.5 MiB per step), machine under load: 234 ms per training
// step with the batch split against 347 ms per step (benchmarks/RESULTS.md, "Fused
// recurrent decoder"). At H=512 (7 MiB, not measured) each thread would stream weights
// that no cache level of its own holds, twice the bytes of the per-step split.
constexpr std::size_t kDecoderBatchSplitMaxBytes = std::size_t{4} << 20;

// Backward of attend_row: dq (written); dkeys_t and dvalues_t, this batch row's key
// and value gradients transposed ((H, S) layout, added: SIMD along S); ds is scratch
// of S values; dprobs (heads, S) or null: a further gradient of the weights.
void attend_row_backward(const DecoderShape& s, const float* q, const float* keys,
                         const float* keys_t, const float* values_t, int len, float scale,
                         const float* probs, const float* dctx, const float* dprobs, float* dq,
                         float* dkeys_t, float* dvalues_t, float* ds) {
  const int H = s.H, hd = H / s.heads;
  const usize S = static_cast<usize>(s.S);
  for (int h = 0; h < s.heads; ++h) {
    const float* p = probs + h * S;
    const float* g = dctx + h * hd;
    const usize rows = static_cast<usize>(h) * hd * S;
    weighted_sum(ds, g, hd, values_t + rows, S, len);  // d p
    if (dprobs) add_row(ds, dprobs + h * S, len);
    const float pdp = simd::row_dot(p, ds, len);
    simd_for(len, [&](int k, auto v) {  // d scores (scaled)
      using V = decltype(v);
      store(ds + k, V(scale) * load<V>(p + k) * (load<V>(ds + k) - V(pdp)));
    });
    for (int d = 0; d < hd; ++d) {
      axpy(dvalues_t + rows + d * S, g[d], p, len);
      axpy(dkeys_t + rows + d * S, q[h * hd + d], ds, len);
    }
    head_sum(dq + h * hd, ds, len, keys + h * hd, H, keys_t + rows, S, hd);
  }
}

template <class Cell>
void forward_impl(DecoderCache& c, const float* targets, const float* h0, const float* c0,
                  const float* gate_bias, float* pred) {
  constexpr int G = Cell::gates;
  constexpr bool lstm = std::is_same_v<Cell, recurrent::LstmCell>;
  constexpr bool gru = std::is_same_v<Cell, recurrent::GruCell>;
  const DecoderShape& s = c.shape;
  const DecoderWeights& w = c.w;
  const int B = s.B, T = s.T, E = s.E, H = s.H, O = s.O, GH = G * H;
  const bool att = s.attention();
  const int Z = att ? 2 * H : H;
  const usize BT = static_cast<usize>(B) * T, BH = static_cast<usize>(B) * H;
  const usize uH = static_cast<usize>(H);
  const float scale = att ? 1.0f / std::sqrt(static_cast<float>(H / s.heads)) : 0.0f;

  // All workspaces before the time loop.
  ensure_shape(c.inputs, BT, static_cast<usize>(E));
  ensure_shape(c.gates, BT, static_cast<usize>(GH));
  ensure_shape(c.h_all, (T + 1) * static_cast<usize>(B), uH);
  ensure_shape(c.features, BT, static_cast<usize>(Z));
  if (gru) ensure_shape(c.aux, BT, uH);
  if (lstm) ensure_shape(c.c_all, (T + 1) * static_cast<usize>(B), uH);
  if (att) {
    const usize BS = static_cast<usize>(B) * s.S;
    ensure_shape(c.keys, BS, uH);
    ensure_shape(c.values, BS, uH);
    ensure_shape(c.keys_t, static_cast<usize>(B) * H, static_cast<usize>(s.S));
    ensure_shape(c.values_t, static_cast<usize>(B) * H, static_cast<usize>(s.S));
    ensure_shape(c.queries, BT, uH);
    ensure_shape(c.probs, BT * s.heads, static_cast<usize>(s.S));
    ensure_shape(c.context, BT, uH);
  }
  std::vector<float> gh(static_cast<usize>(B) * GH);
  std::vector<float> bias_x(GH, 0.0f), b_hn(H, 0.0f);
  if (w.b_ih)
    for (int j = 0; j < GH; ++j) bias_x[j] += w.b_ih[j];
  if (w.b_hh) {
    const int folded = gru ? 2 * H : GH;
    for (int j = 0; j < folded; ++j) bias_x[j] += w.b_hh[j];
    if (gru)
      for (int j = 0; j < H; ++j) b_hn[j] = w.b_hh[2 * H + j];
  }
  const bool any_feedback = has_feedback(c);
  const auto w_hh_t = PackedMatrix::from_transposed(w.w_hh, GH, H);
  std::optional<PackedMatrix> w_q_t;
  if (att) w_q_t.emplace(PackedMatrix::from_transposed(w.w_q, H, H));
  std::optional<PackedMatrix> w_o_t;
  if (att) w_o_t.emplace(PackedMatrix::from_transposed(w.w_o, H, H));
  std::optional<PackedMatrix> w_out_t;
  if (any_feedback) w_out_t.emplace(PackedMatrix::from_transposed(w.w_out, O, Z));
  std::optional<PackedMatrix> w_ih_t;
  if (any_feedback) w_ih_t.emplace(PackedMatrix::from_transposed(w.w_ih, GH, E));

  float* U = c.inputs.data();
  float* gates = c.gates.data();
  float* hs = c.h_all.data();
  float* cs = lstm ? c.c_all.data() : nullptr;
  float* aux = gru ? c.aux.data() : nullptr;
  float* feat = c.features.data();

  // Inputs known up front (start, teacher targets; a fed-back row's is written at its
  // step), and their projection for all steps in one GEMM over those rows alone: a
  // fed-back row gets its projection in the time loop.
  parallel_for(BT, row_grain(E), [&](usize r0, usize r1) {
    for (usize r = r0; r < r1; ++r) {
      const usize t = r % T;
      float* u = U + r * E;
      if (t == 0)
        std::memcpy(u, w.start, E * sizeof(float));
      else if (c.teacher[r])
        std::memcpy(u, targets + (r - 1) * E, E * sizeof(float));
      else
        std::fill(u, u + E, 0.0f);
    }
  });
  const auto add_biases = [&](usize r) {
    add_row(gates + r * GH, bias_x.data(), GH);
    if (gate_bias) add_row(gates + r * GH, gate_bias + (r / T) * GH, GH);
  };
  if (!any_feedback) {
    sgemm_rows_parallel(false, true, static_cast<int>(BT), GH, E, 1.0f, U, E, w.w_ih, E, 0.0f, gates, GH);
    parallel_for(BT, row_grain(GH), [&](usize r0, usize r1) {
      for (usize r = r0; r < r1; ++r) add_biases(r);
    });
  } else {
    // The known rows gathered; their projection lands in the backward's workspace d_gx
    // (the backward writes every row of it before reading it).
    std::vector<usize> known;
    known.reserve(BT);
    for (usize r = 0; r < BT; ++r)
      if (input_known(c, r)) known.push_back(r);
    const usize n = known.size();
    ensure_shape(c.known_inputs, n, static_cast<usize>(E));
    ensure_shape(c.d_gx, BT, static_cast<usize>(GH));
    float* known_u = c.known_inputs.data();
    float* known_g = c.d_gx.data();
    parallel_for(n, row_grain(E), [&](usize i0, usize i1) {
      for (usize i = i0; i < i1; ++i) std::memcpy(known_u + i * E, U + known[i] * E, E * sizeof(float));
    });
    sgemm_rows_parallel(false, true, static_cast<int>(n), GH, E, 1.0f, known_u, E, w.w_ih, E, 0.0f, known_g, GH);
    parallel_for(n, row_grain(GH), [&](usize i0, usize i1) {
      for (usize i = i0; i < i1; ++i) {  // the fed-back rows between known[i - 1] and known[i]
        for (usize r = i == 0 ? 0 : known[i - 1] + 1; r < known[i]; ++r) {
          std::fill(gates + r * GH, gates + (r + 1) * GH, 0.0f);
          add_biases(r);
        }
        std::memcpy(gates + known[i] * GH, known_g + i * GH, GH * sizeof(float));
        add_biases(known[i]);
      }
    });
    for (usize r = n == 0 ? 0 : known[n - 1] + 1; r < BT; ++r) {  // fed-back rows after the last known one
      std::fill(gates + r * GH, gates + (r + 1) * GH, 0.0f);
      add_biases(r);
    }
  }
  if (att) {
    // Keys and values of the whole memory, once per call.
    const int BS = B * s.S;
    sgemm_rows_parallel(false, true, BS, H, s.A, 1.0f, c.memory, s.A, w.w_k, s.A, 0.0f, c.keys.data(), H);
    sgemm_rows_parallel(false, true, BS, H, s.A, 1.0f, c.memory, s.A, w.w_v, s.A, 0.0f, c.values.data(), H);
    for (int r = 0; r < BS; ++r) {
      if (w.b_k) add_row(c.keys.data() + static_cast<usize>(r) * H, w.b_k, H);
      if (w.b_v) add_row(c.values.data() + static_cast<usize>(r) * H, w.b_v, H);
    }
    parallel_for(B, row_grain(static_cast<usize>(2) * s.S * H), [&](usize b0, usize b1) {
      for (usize b = b0; b < b1; ++b)
        for (int k = 0; k < s.S; ++k)
          for (int j = 0; j < H; ++j) {
            const usize src = (b * s.S + k) * H + j, dst = (b * H + j) * s.S + k;
            c.keys_t.data()[dst] = c.keys.data()[src];
            c.values_t.data()[dst] = c.values.data()[src];
          }
    });
  }

  if (h0) std::memcpy(hs, h0, BH * sizeof(float)); else std::fill(hs, hs + BH, 0.0f);
  if (lstm) {
    if (c0) std::memcpy(cs, c0, BH * sizeof(float)); else std::fill(cs, cs + BH, 0.0f);
  }

  // Every step for batch rows [b0, b1): the recurrent product and the cell, the attention,
  // and the prediction and input projection of the rows the next step feeds back. Rows
  // are independent: below, each thread takes its own rows, or the steps run over all
  // rows and split their products over the pool (batch_split_grain).
  const auto steps = [&](usize b0, usize b1) {
    const int rows = static_cast<int>(b1 - b0);
    const usize ur = b1 - b0;
    std::vector<int> fb;
    fb.reserve(ur);
    std::vector<float> fb_z(any_feedback ? ur * Z : 0), fb_pred(any_feedback ? ur * O : 0);
    std::vector<float> fb_gx(any_feedback ? ur * GH : 0);
    for (int t = 0; t < T; ++t) {
      const float* hp = hs + t * BH;
      float* hn = hs + (t + 1) * BH;
      const float* cp = lstm ? cs + t * BH : nullptr;
      float* cn = lstm ? cs + (t + 1) * BH : nullptr;
      w_hh_t.multiply(rows, hp + b0 * H, H, gh.data() + b0 * GH, GH, false);  // gh = h_prev @ W_hh^T
      parallel_for(ur, row_grain(GH), [&](usize i0, usize i1) {
        for (usize b = b0 + i0; b < b0 + i1; ++b) {
          const usize bt = b * T + t;
          FwdRow row;
          row.gates = gates + bt * GH;
          row.gh = gh.data() + b * GH;
          row.b_hn = b_hn.data();
          row.h_prev = hp + b * H;
          row.c_prev = lstm ? cp + b * H : nullptr;
          row.h_new = hn + b * H;
          row.c_new = lstm ? cn + b * H : nullptr;
          row.y = feat + bt * Z;
          row.aux = gru ? aux + bt * H : nullptr;
          Cell::forward(row, H);
        }
      });
      if (att) {
        const usize ldq = static_cast<usize>(T) * H;
        float* q = c.queries.data() + static_cast<usize>(t) * H;
        float* ctx = c.context.data() + static_cast<usize>(t) * H;
        w_q_t->multiply(rows, hn + b0 * H, H, q + b0 * ldq, static_cast<int>(ldq), false);  // q = h_t @ W_q^T
        parallel_for(ur, row_grain(static_cast<usize>(2) * s.S * H), [&](usize i0, usize i1) {
          for (usize b = b0 + i0; b < b0 + i1; ++b) {
            float* qb = q + b * ldq;
            if (w.b_q) add_row(qb, w.b_q, H);
            const int len = c.memory_lengths.empty() ? s.S : static_cast<int>(c.memory_lengths[b]);
            const usize bs = b * s.S;
            attend_row(s, qb, c.keys_t.data() + b * H * s.S, c.values.data() + bs * H,
                       c.values_t.data() + b * H * s.S, len, scale,
                       c.probs.data() + (b * T + t) * s.heads * static_cast<usize>(s.S), ctx + b * ldq);
          }
        });
        float* att_out = feat + static_cast<usize>(t) * Z + H;
        const usize ldz = static_cast<usize>(T) * Z;
        w_o_t->multiply(rows, ctx + b0 * ldq, static_cast<int>(ldq), att_out + b0 * ldz, static_cast<int>(ldz),
                        false);  // ctx @ W_o^T
        if (w.b_o)
          for (usize b = b0; b < b1; ++b) add_row(att_out + b * ldz, w.b_o, H);
      }
      // Rows of step t+1 fed this step's prediction: pred = [h; ctx] W_out^T + b_out,
      // then its input projection into their gates.
      if (!any_feedback || t + 1 >= T) continue;
      feedback_rows(c, t + 1, b0, b1, fb);
      const int n = static_cast<int>(fb.size());
      if (n == 0) continue;
      for (int i = 0; i < n; ++i)
        std::memcpy(fb_z.data() + static_cast<usize>(i) * Z, feat + (static_cast<usize>(fb[i]) * T + t) * Z,
                    Z * sizeof(float));
      w_out_t->multiply(n, fb_z.data(), Z, fb_pred.data(), O, false);
      for (int i = 0; i < n; ++i) {
        float* p = fb_pred.data() + static_cast<usize>(i) * O;
        if (w.b_out) add_row(p, w.b_out, O);
        std::memcpy(U + (static_cast<usize>(fb[i]) * T + t + 1) * E, p, E * sizeof(float));
      }
      w_ih_t->multiply(n, fb_pred.data(), O, fb_gx.data(), GH, false);
      for (int i = 0; i < n; ++i)
        add_row(gates + (static_cast<usize>(fb[i]) * T + t + 1) * GH, fb_gx.data() + static_cast<usize>(i) * GH, GH);
    }
  };
  std::size_t step_bytes = w_hh_t.bytes();
  if (att) step_bytes += w_q_t->bytes() + w_o_t->bytes();
  if (any_feedback) step_bytes += w_out_t->bytes() + w_ih_t->bytes();
  if (const std::size_t grain = batch_split_grain(B, step_bytes, kDecoderBatchSplitMaxBytes))
    parallel_for(static_cast<usize>(B), grain, steps);  // inside, the products and row passes run inline
  else
    steps(0, static_cast<usize>(B));

  // Predictions of every step in one GEMM (none when pred is null: the caller's head
  // reads the features itself).
  if (!pred) return;
  sgemm_rows_parallel(false, true, static_cast<int>(BT), O, Z, 1.0f, feat, Z, w.w_out, Z, 0.0f, pred, O);
  if (w.b_out)
    parallel_for(BT, row_grain(O), [&](usize r0, usize r1) {
      for (usize r = r0; r < r1; ++r) add_row(pred + r * O, w.b_out, O);
    });
  // A prediction that was fed back is returned exactly as fed (the in-loop kernel and
  // the GEMM may round differently).
  if (any_feedback)
    for (usize r = 0; r < BT; ++r)
      if (r % T != 0 && !c.teacher[r]) std::memcpy(pred + (r - 1) * O, U + r * E, O * sizeof(float));
}

template <class Cell>
void backward_impl(DecoderCache& c, const float* d_pred, const DecoderGrads& g, float* dh0,
                   float* dc0, float* d_memory, float* d_gate_bias, const DecoderBackwardExtras& ex) {
  constexpr int G = Cell::gates;
  constexpr bool lstm = std::is_same_v<Cell, recurrent::LstmCell>;
  constexpr bool gru = std::is_same_v<Cell, recurrent::GruCell>;
  const DecoderShape& s = c.shape;
  const DecoderWeights& w = c.w;
  const int B = s.B, T = s.T, E = s.E, H = s.H, O = s.O, GH = G * H;
  const bool att = s.attention();
  const int Z = att ? 2 * H : H;
  const usize BT = static_cast<usize>(B) * T, BH = static_cast<usize>(B) * H;
  const usize uH = static_cast<usize>(H), BS = static_cast<usize>(B) * s.S;
  const float scale = att ? 1.0f / std::sqrt(static_cast<float>(H / s.heads)) : 0.0f;

  // All workspaces before the time loop.
  ensure_shape(c.d_features, BT, static_cast<usize>(Z));
  if (d_pred) ensure_shape(c.d_pred, BT, static_cast<usize>(O));
  ensure_shape(c.d_gx, BT, static_cast<usize>(GH));
  ensure_shape(c.d_gh, BT, static_cast<usize>(GH));
  if (att) {
    ensure_shape(c.d_queries, BT, uH);
    ensure_shape(c.d_context, BT, uH);
    ensure_shape(c.d_keys, BS, uH);
    ensure_shape(c.d_values, BS, uH);
    ensure_shape(c.d_keys_t, static_cast<usize>(B) * H, static_cast<usize>(s.S));
    ensure_shape(c.d_values_t, static_cast<usize>(B) * H, static_cast<usize>(s.S));
    std::fill(c.d_keys_t.begin(), c.d_keys_t.end(), 0.0f);
    std::fill(c.d_values_t.begin(), c.d_values_t.end(), 0.0f);
  }
  const bool any_feedback = has_feedback(c);
  std::vector<float> dh_a(BH, 0.0f), dh_b(BH), dc_a(lstm ? BH : 0, 0.0f), dc_b(lstm ? BH : 0);
  std::vector<float> dp_scratch(att ? static_cast<usize>(B) * s.S : 0);
  const auto w_hh_p = PackedMatrix::from_plain(w.w_hh, GH, H);
  std::optional<PackedMatrix> w_q_p;
  if (att) w_q_p.emplace(PackedMatrix::from_plain(w.w_q, H, H));
  std::optional<PackedMatrix> w_o_p;
  if (att) w_o_p.emplace(PackedMatrix::from_plain(w.w_o, H, H));
  std::optional<PackedMatrix> w_ih_p;
  if (any_feedback) w_ih_p.emplace(PackedMatrix::from_plain(w.w_ih, GH, E));
  std::optional<PackedMatrix> w_out_p;
  if (any_feedback) w_out_p.emplace(PackedMatrix::from_plain(w.w_out, O, Z));

  float* dfeat = c.d_features.data();
  float* dpred = c.d_pred.data();
  float* dgx = c.d_gx.data();
  float* dgh = c.d_gh.data();
  const float* feat = c.features.data();
  const float* gates = c.gates.data();
  const float* hs = c.h_all.data();
  const float* cs = lstm ? c.c_all.data() : nullptr;
  const float* aux = gru ? c.aux.data() : nullptr;

  // d features = d pred @ W_out for every step; the fed-back predictions add theirs in the
  // loop. Without d_pred (no output head) only the extras' d features.
  if (d_pred) {
    if (d_pred != dpred) std::memcpy(dpred, d_pred, BT * O * sizeof(float));
    sgemm_rows_parallel(false, false, static_cast<int>(BT), Z, O, 1.0f, dpred, O, w.w_out, Z, 0.0f, dfeat, Z);
  } else {
    std::fill(dfeat, dfeat + BT * Z, 0.0f);
  }
  if (ex.d_features)
    parallel_for(BT, row_grain(Z), [&](usize r0, usize r1) {
      for (usize r = r0; r < r1; ++r) add_row(dfeat + r * Z, ex.d_features + r * Z, Z);
    });

  // Every step back for batch rows [b0, b1), as the forward's time loop: the attention's
  // backward, the cell's (reading dh_cur, dc_cur, writing dh_nxt, dc_nxt), dh_nxt +=
  // dgates_hh @ W_hh, and the gradient of the fed-back predictions.
  const auto steps = [&](usize b0, usize b1) {
    const int rows = static_cast<int>(b1 - b0);
    const usize ur = b1 - b0;
    std::vector<int> fb;
    fb.reserve(ur);
    std::vector<float> fb_dgx(any_feedback ? ur * GH : 0), fb_du(any_feedback ? ur * O : 0);
    std::vector<float> fb_dz(any_feedback ? ur * Z : 0);
    float* dh_cur = dh_a.data();
    float* dh_nxt = dh_b.data();
    float* dc_cur = lstm ? dc_a.data() : nullptr;
    float* dc_nxt = lstm ? dc_b.data() : nullptr;
    for (int t = T - 1; t >= 0; --t) {
      const float* hp = hs + t * BH;
      const float* cp = lstm ? cs + t * BH : nullptr;
      const float* cn = lstm ? cs + (t + 1) * BH : nullptr;
      if (att) {
        const usize ldq = static_cast<usize>(T) * H, ldz = static_cast<usize>(T) * Z;
        float* dctx = c.d_context.data() + static_cast<usize>(t) * H;
        float* dq = c.d_queries.data() + static_cast<usize>(t) * H;
        // d ctx = d att_out @ W_o, then the attention's backward row by row.
        w_o_p->multiply(rows, dfeat + static_cast<usize>(t) * Z + H + b0 * ldz, static_cast<int>(ldz),
                        dctx + b0 * ldq, static_cast<int>(ldq), false);
        parallel_for(ur, row_grain(static_cast<usize>(3) * s.S * H), [&](usize i0, usize i1) {
          for (usize b = b0 + i0; b < b0 + i1; ++b) {
            const int len = c.memory_lengths.empty() ? s.S : static_cast<int>(c.memory_lengths[b]);
            const usize bs = b * s.S, bt = b * T + t;
            const usize bh = b * H * s.S;
            attend_row_backward(s, c.queries.data() + bt * H, c.keys.data() + bs * H,
                                c.keys_t.data() + bh, c.values_t.data() + bh, len, scale,
                                c.probs.data() + bt * s.heads * static_cast<usize>(s.S), dctx + b * ldq,
                                ex.d_probs ? ex.d_probs + bt * s.heads * static_cast<usize>(s.S) : nullptr,
                                dq + b * ldq, c.d_keys_t.data() + bh, c.d_values_t.data() + bh,
                                dp_scratch.data() + bs);
          }
        });
        w_q_p->multiply(rows, dq + b0 * ldq, static_cast<int>(ldq), dh_cur + b0 * H, H, true);  // dh += dq @ W_q
      }
      float* dgh_t = dgh + t * BH * G;
      parallel_for(ur, row_grain(GH), [&](usize i0, usize i1) {
        for (usize b = b0 + i0; b < b0 + i1; ++b) {
          const usize bt = b * T + t;
          add_row(dh_cur + b * H, dfeat + bt * Z, H);
          BwdRow row;
          row.gates = gates + bt * GH;
          row.aux = gru ? aux + bt * H : nullptr;
          row.h_prev = hp + b * H;
          row.c_prev = lstm ? cp + b * H : nullptr;
          row.c_new = lstm ? cn + b * H : nullptr;
          row.dh = dh_cur + b * H;
          row.dc = lstm ? dc_cur + b * H : nullptr;
          row.dgx = dgx + bt * GH;
          row.dgh = dgh_t + b * GH;
          row.dh_prev = dh_nxt + b * H;
          row.dc_prev = lstm ? dc_nxt + b * H : nullptr;
          Cell::backward(row, H);
        }
      });
      w_hh_p.multiply(rows, dgh_t + b0 * GH, GH, dh_nxt + b0 * H, H, true);  // dh_prev += dgates_hh @ W_hh
      std::swap(dh_cur, dh_nxt);
      std::swap(dc_cur, dc_nxt);
      // Rows of step t fed the previous prediction pass d u_t = dgates_x @ W_ih to it.
      if (!any_feedback) continue;
      feedback_rows(c, t, b0, b1, fb);
      const int n = static_cast<int>(fb.size());
      if (n == 0) continue;
      for (int i = 0; i < n; ++i)
        std::memcpy(fb_dgx.data() + static_cast<usize>(i) * GH, dgx + (static_cast<usize>(fb[i]) * T + t) * GH,
                    GH * sizeof(float));
      w_ih_p->multiply(n, fb_dgx.data(), GH, fb_du.data(), O, false);
      w_out_p->multiply(n, fb_du.data(), O, fb_dz.data(), Z, false);
      for (int i = 0; i < n; ++i) {
        const usize prev = static_cast<usize>(fb[i]) * T + t - 1;
        add_row(dpred + prev * O, fb_du.data() + static_cast<usize>(i) * O, O);
        add_row(dfeat + prev * Z, fb_dz.data() + static_cast<usize>(i) * Z, Z);
      }
    }
  };
  std::size_t step_bytes = w_hh_p.bytes();
  if (att) step_bytes += w_q_p->bytes() + w_o_p->bytes();
  if (any_feedback) step_bytes += w_ih_p->bytes() + w_out_p->bytes();
  if (const std::size_t grain = batch_split_grain(B, step_bytes, kDecoderBatchSplitMaxBytes))
    parallel_for(static_cast<usize>(B), grain, steps);  // inside, the products and row passes run inline
  else
    steps(0, static_cast<usize>(B));
  // After T swaps the gradients at the sequence start are in the a buffers when T is even.
  std::memcpy(dh0, T % 2 == 0 ? dh_a.data() : dh_b.data(), BH * sizeof(float));
  if (lstm && dc0) std::memcpy(dc0, T % 2 == 0 ? dc_a.data() : dc_b.data(), BH * sizeof(float));

  // Weight gradients, one GEMM each over all steps.
  const int M = static_cast<int>(BT);
  if (g.w_hh) sgemm_rows_parallel(true, false, GH, H, M, 1.0f, dgh, GH, hs, H, 1.0f, g.w_hh, H);
  if (g.w_ih) sgemm_rows_parallel(true, false, GH, E, M, 1.0f, dgx, GH, c.inputs.data(), E, 1.0f, g.w_ih, E);
  if (ex.d_inputs) sgemm_rows_parallel(false, false, M, E, GH, 1.0f, dgx, GH, w.w_ih, E, 0.0f, ex.d_inputs, E);
  if (g.b_ih) add_column_sums(g.b_ih, dgx, BT, GH, GH);
  if (g.b_hh) add_column_sums(g.b_hh, dgh, BT, GH, GH);
  if (d_gate_bias)  // each row's gate bias gets its steps' input-gate gradients
    parallel_for(B, row_grain(static_cast<usize>(T) * GH), [&](usize b0, usize b1) {
      for (usize b = b0; b < b1; ++b) {
        std::fill(d_gate_bias + b * GH, d_gate_bias + (b + 1) * GH, 0.0f);
        add_column_sums(d_gate_bias + b * GH, dgx + b * T * GH, static_cast<usize>(T), GH, GH);
      }
    });
  if (g.start) {
    std::vector<float> d0(GH, 0.0f);  // sum over the batch of step 0's dgates_x
    for (int b = 0; b < B; ++b) add_row(d0.data(), dgx + static_cast<usize>(b) * T * GH, GH);
    sgemm(false, false, 1, E, GH, 1.0f, d0.data(), GH, w.w_ih, E, 1.0f, g.start, E);
  }
  if (g.w_out && d_pred) sgemm_rows_parallel(true, false, O, Z, M, 1.0f, dpred, O, feat, Z, 1.0f, g.w_out, Z);
  if (g.b_out && d_pred) add_column_sums(g.b_out, dpred, BT, O, O);
  if (!att) return;
  // The key and value gradients back from (H, S) per batch row to (B*S, H).
  parallel_for(B, row_grain(static_cast<usize>(2) * s.S * H), [&](usize b0, usize b1) {
    for (usize b = b0; b < b1; ++b)
      for (int j = 0; j < H; ++j)
        for (int k = 0; k < s.S; ++k) {
          const usize src = (b * H + j) * s.S + k, dst = (b * s.S + k) * H + j;
          c.d_keys.data()[dst] = c.d_keys_t.data()[src];
          c.d_values.data()[dst] = c.d_values_t.data()[src];
        }
  });
  const float* dq = c.d_queries.data();
  const float* dk = c.d_keys.data();
  const float* dv = c.d_values.data();
  const int MS = static_cast<int>(BS);
  if (g.w_o) sgemm_rows_parallel(true, false, H, H, M, 1.0f, dfeat + H, Z, c.context.data(), H, 1.0f, g.w_o, H);
  if (g.b_o) add_column_sums(g.b_o, dfeat + H, BT, H, Z);
  if (g.w_q) sgemm_rows_parallel(true, false, H, H, M, 1.0f, dq, H, feat, Z, 1.0f, g.w_q, H);
  if (g.b_q) add_column_sums(g.b_q, dq, BT, H, H);
  if (g.w_k) sgemm_rows_parallel(true, false, H, s.A, MS, 1.0f, dk, H, c.memory, s.A, 1.0f, g.w_k, s.A);
  if (g.b_k) add_column_sums(g.b_k, dk, BS, H, H);
  if (g.w_v) sgemm_rows_parallel(true, false, H, s.A, MS, 1.0f, dv, H, c.memory, s.A, 1.0f, g.w_v, s.A);
  if (g.b_v) add_column_sums(g.b_v, dv, BS, H, H);
  if (d_memory) {
    sgemm_rows_parallel(false, false, MS, s.A, H, 1.0f, dk, H, w.w_k, s.A, 0.0f, d_memory, s.A);
    sgemm_rows_parallel(false, false, MS, s.A, H, 1.0f, dv, H, w.w_v, s.A, 1.0f, d_memory, s.A);
  }
}

}  // namespace

void decoder_forward(CellKind kind, const DecoderShape& shape, const DecoderWeights& w,
                     const float* targets, const std::uint8_t* teacher, const float* h0,
                     const float* c0, const float* memory, const std::int64_t* memory_lengths,
                     const float* gate_bias, float* pred, DecoderCache& cache) {
  const SerialBlas serial;  // the large GEMMs split over the pool (sgemm_rows_parallel)
  cache.kind = kind;
  cache.shape = shape;
  cache.w = w;
  cache.memory = memory;
  cache.teacher.assign(teacher, teacher + static_cast<usize>(shape.B) * shape.T);
  cache.memory_lengths.clear();
  if (memory_lengths) cache.memory_lengths.assign(memory_lengths, memory_lengths + shape.B);
  switch (kind) {
    case CellKind::RnnTanh:
      return forward_impl<recurrent::RnnTanhCell>(cache, targets, h0, c0, gate_bias, pred);
    case CellKind::RnnRelu:
      return forward_impl<recurrent::RnnReluCell>(cache, targets, h0, c0, gate_bias, pred);
    case CellKind::Lstm:
      return forward_impl<recurrent::LstmCell>(cache, targets, h0, c0, gate_bias, pred);
    case CellKind::Gru:
      return forward_impl<recurrent::GruCell>(cache, targets, h0, c0, gate_bias, pred);
  }
  throw std::invalid_argument("decoder_forward: unknown cell kind");
}

void decoder_backward(DecoderCache& cache, const float* d_pred, const DecoderGrads& grads,
                      float* dh0, float* dc0, float* d_memory, float* d_gate_bias,
                      const DecoderBackwardExtras& extras) {
  const SerialBlas serial;
  switch (cache.kind) {
    case CellKind::RnnTanh:
      return backward_impl<recurrent::RnnTanhCell>(cache, d_pred, grads, dh0, dc0, d_memory, d_gate_bias, extras);
    case CellKind::RnnRelu:
      return backward_impl<recurrent::RnnReluCell>(cache, d_pred, grads, dh0, dc0, d_memory, d_gate_bias, extras);
    case CellKind::Lstm:
      return backward_impl<recurrent::LstmCell>(cache, d_pred, grads, dh0, dc0, d_memory, d_gate_bias, extras);
    case CellKind::Gru:
      return backward_impl<recurrent::GruCell>(cache, d_pred, grads, dh0, dc0, d_memory, d_gate_bias, extras);
  }
  throw std::invalid_argument("decoder_backward: unknown cell kind");
}

SEQLAB_LEVEL_END
}  // namespace seqlab
