// Autoregressive recurrent decoder with per-timestep teacher forcing and optional
// multi-head attention over encoder states, over a whole sequence as one
// forward/backward pair.
//
// Shapes (batch-first, float32, row-major), G gates of the cell (recurrent.hpp):
//   targets (B, T, E)   teacher (B, T) uint8   h0, c0 (B, H)   pred (B, T, O)
//   memory (B, S, A)    memory_lengths (B,) int64 in [1, S]
//   start (E)  w_ih (G*H, E)  w_hh (G*H, H)  b_ih, b_hh (G*H)
//   attention: w_q (H, H)  w_k, w_v (H, A)  b_q, b_k, b_v (H)  w_o (H, H)  b_o (H)
//   w_out (O, Z)  b_out (O)  with Z = H, or 2H with attention ([h_t; ctx_t])
//
// Step t (0 <= t < T):
//   u_t = start                     t == 0
//         targets[:, t-1]           teacher[:, t] != 0
//         pred[:, t-1]              otherwise (needs O == E)
//   h_t = cell(u_t, h_{t-1})        (PyTorch's LSTMCell / GRUCell / RNNCell); a
//           per-row gate bias (B, G*H), when given, is added to the input part of
//           the gates at every step (a condition such as a code: the cell then
//           computes W_ih [u_t; c] with gate_bias = c W_ic^T)
//   ctx_t = MHA(query h_t, keys and values memory)   (PyTorch's MultiheadAttention with
//           kdim = vdim = A, batch_first, key padding s >= memory_lengths[b])
//   pred[:, t] = [h_t; ctx_t] @ w_out^T + b_out
// A prediction fed back is computed inside the time loop (for those rows only); the
// others by one GEMM after it.
//
// Cost: one GEMM each for the input projection of the inputs known up front (M = the
// start and teacher-forced rows), the key and value projections (M = B*S) and the
// output projection (M = B*T); per step the recurrent product, the query and
// attention-output products (packed small-M GEMMs), the attention scores and context
// (SIMD), and for the rows fed their own prediction two small products (prediction and
// its input projection). Backward mirrors it, and every weight gradient is one GEMM after
// the time loop. Threads: the large GEMMs split their rows over the pool (OpenBLAS runs
// single-threaded inside the kernel); the time loop either splits each step's products
// over the pool or, when the packed per-step weights are small, gives each thread its
// own batch rows for the whole sequence (recurrent_rows.hpp, batch_split_grain), with the
// same numbers either way.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <cstdint>
#include <vector>

#include "seqlab/recurrent.hpp"

namespace seqlab {

struct DecoderShape {
  int B = 0, T = 0, E = 0, H = 0, O = 0;
  int S = 0, A = 0, heads = 0;  // heads == 0: no attention
  bool attention() const { return heads > 0; }
};

// Biases may be null (none). The attention weights are read only when heads > 0.
struct DecoderWeights {
  const float* start = nullptr;
  const float* w_ih = nullptr;
  const float* w_hh = nullptr;
  const float* b_ih = nullptr;
  const float* b_hh = nullptr;
  const float* w_q = nullptr;
  const float* w_k = nullptr;
  const float* w_v = nullptr;
  const float* b_q = nullptr;
  const float* b_k = nullptr;
  const float* b_v = nullptr;
  const float* w_o = nullptr;
  const float* b_o = nullptr;
  const float* w_out = nullptr;
  const float* b_out = nullptr;
};

// Gradient buffers, accumulated into (+=); any may be null (not needed).
struct DecoderGrads {
  float* start = nullptr;
  float* w_ih = nullptr;
  float* w_hh = nullptr;
  float* b_ih = nullptr;
  float* b_hh = nullptr;
  float* w_q = nullptr;
  float* w_k = nullptr;
  float* w_v = nullptr;
  float* b_q = nullptr;
  float* b_k = nullptr;
  float* b_v = nullptr;
  float* w_o = nullptr;
  float* b_o = nullptr;
  float* w_out = nullptr;
  float* b_out = nullptr;
};

// What the backward needs from the forward, plus the backward's workspaces. The
// weights and memory are referenced, not copied: the caller keeps them alive and
// unchanged until backward has run. A cache may be handed to the next forward,
// which then reuses its buffers.
struct DecoderCache {
  CellKind kind = CellKind::Lstm;
  DecoderShape shape;
  DecoderWeights w;
  const float* memory = nullptr;
  std::vector<std::uint8_t> teacher;        // (B*T)
  std::vector<std::int64_t> memory_lengths;  // (B)
  xt::xtensor<float, 2> inputs;    // (B*T, E) u_t, rows (b, t)
  xt::xtensor<float, 2> gates;     // (B*T, G*H) activated gates, rows (b, t)
  xt::xtensor<float, 2> aux;       // (B*T, H) GRU: W_hn h + b_hn, rows (b, t)
  xt::xtensor<float, 2> h_all;     // ((T+1)*B, H) state entering step t, rows (t, b)
  xt::xtensor<float, 2> c_all;     // ((T+1)*B, H) LSTM cell, rows (t, b)
  xt::xtensor<float, 2> features;  // (B*T, Z) [h_t; ctx_t], rows (b, t)
  xt::xtensor<float, 2> keys;      // (B*S, H) projected memory
  xt::xtensor<float, 2> values;    // (B*S, H)
  xt::xtensor<float, 2> keys_t;    // (B*H, S) keys transposed per batch row
  xt::xtensor<float, 2> values_t;  // (B*H, S)
  xt::xtensor<float, 2> queries;   // (B*T, H) h_t w_q^T + b_q, rows (b, t)
  xt::xtensor<float, 2> probs;     // (B*T*heads, S) attention weights
  xt::xtensor<float, 2> context;   // (B*T, H) heads' context before w_o, rows (b, t)
  // Backward workspaces.
  xt::xtensor<float, 2> d_features;  // (B*T, Z)
  xt::xtensor<float, 2> d_pred;      // (B*T, O) incl. the fed-back predictions' gradients
  xt::xtensor<float, 2> d_gx;        // (B*T, G*H) rows (b, t)
  xt::xtensor<float, 2> d_gh;        // (T*B, G*H) rows (t, b)
  xt::xtensor<float, 2> d_queries;   // (B*T, H)
  xt::xtensor<float, 2> d_context;   // (B*T, H)
  xt::xtensor<float, 2> d_keys;      // (B*S, H)
  xt::xtensor<float, 2> d_values;    // (B*S, H)
  xt::xtensor<float, 2> d_keys_t;    // (B*H, S) d_keys transposed per batch row
  xt::xtensor<float, 2> d_values_t;  // (B*H, S)
  // Forward workspace: the inputs known before the time loop (start, teacher-forced
  // targets), gathered for their projection when some rows are fed back.
  xt::xtensor<float, 2> known_inputs;  // (n, E)
};

SEQLAB_LEVEL_BEGIN
// Forward over all T steps. c0 (LSTM only), memory_lengths, gate_bias (B, G*H) may be
// null (zeros, full lengths, none); memory is required exactly when shape.heads > 0.
// Writes pred (B, T, O); pred may be null when every step is teacher-forced (no output
// head: a caller such as the pointer-generator projects cache.features itself).
void decoder_forward(CellKind kind, const DecoderShape& shape, const DecoderWeights& w,
                     const float* targets, const std::uint8_t* teacher, const float* h0,
                     const float* c0, const float* memory, const std::int64_t* memory_lengths,
                     const float* gate_bias, float* pred, DecoderCache& cache);
SEQLAB_LEVEL_END

// Gradients a head reading more of the forward than the predictions passes back
// (the pointer-generator reads the features, the inputs and the attention weights),
// and the gradient of the inputs. Any may be null.
struct DecoderBackwardExtras {
  const float* d_features = nullptr;  // (B*T, Z) rows (b, t): added to d [h_t; ctx_t]
  const float* d_probs = nullptr;     // (B*T*heads, S): added to d of the attention weights
  float* d_inputs = nullptr;          // (B*T, E) rows (b, t): written, d u_t through the gates
};

SEQLAB_LEVEL_BEGIN
// Backward: d_pred (B, T, O) (may be cache.d_pred itself: then used in place), or null
// after a forward without pred (no head: only extras.d_features reach the features). Writes
// dh0 and (LSTM, unless null) dc0 (B, H), d_memory (B, S, A) and d_gate_bias (B, G*H)
// unless null; adds the parameter gradients into grads.
void decoder_backward(DecoderCache& cache, const float* d_pred, const DecoderGrads& grads,
                      float* dh0, float* dc0, float* d_memory, float* d_gate_bias,
                      const DecoderBackwardExtras& extras = {});
SEQLAB_LEVEL_END

}  // namespace seqlab
