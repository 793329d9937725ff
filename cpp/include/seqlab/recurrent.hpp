// Recurrent layers (vanilla RNN with tanh or ReLU, LSTM, GRU) over whole sequences:
// one layer, one or two directions, as a forward/backward pair.
//
// Shapes (batch-first, float32, row-major):
//   x (B, T, C)   y (B, T, D*H)   h0, c0, h_n, c_n (D, B, H)   lengths (B,) int64
//   per direction d: w_ih (G*H, C), w_hh (G*H, H), b_ih, b_hh (G*H,)
// with G = 1 (RNN), 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n), D = 1 or 2 directions.
//
// Variable lengths follow PyTorch's pack_padded_sequence: rows with t >= lengths[b]
// output zeros and leave the state unchanged, so the forward direction's final
// state is the one at step lengths[b]-1 and the reverse direction starts from h0 at
// each sequence's own last valid step.
//
// Cost per direction: one input-projection GEMM (M = B*T), one recurrent GEMM and
// one fused SIMD pointwise pass per step; backward adds one recurrent GEMM per step
// and, after the time loop, one GEMM each for dW_hh, dW_ih and dx.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <cstdint>
#include <vector>

namespace seqlab {

enum class CellKind { RnnTanh, RnnRelu, Lstm, Gru };

// Gates per cell: 1, 1, 4, 3.
inline int gate_count(CellKind kind) {
  switch (kind) {
    case CellKind::RnnTanh:
    case CellKind::RnnRelu:
      return 1;
    case CellKind::Lstm:
      return 4;
    case CellKind::Gru:
      return 3;
  }
  return 1;
}

struct RecurrentShape {
  int B = 0, T = 0, C = 0, H = 0, D = 1;
};

// Weights of one direction; biases may be null (bias=False).
struct DirectionWeights {
  const float* w_ih = nullptr;
  const float* w_hh = nullptr;
  const float* b_ih = nullptr;
  const float* b_hh = nullptr;
};

// Gradient buffers of one direction, accumulated into (+=); any may be null (not needed).
struct DirectionGrads {
  float* w_ih = nullptr;
  float* w_hh = nullptr;
  float* b_ih = nullptr;
  float* b_hh = nullptr;
};

// What the backward of one direction needs from its forward.
struct DirectionCache {
  xt::xtensor<float, 2> gates;   // (B*T, G*H) activated gates, rows (b, t)
  xt::xtensor<float, 2> aux;     // (B*T, H) GRU: W_hn h + b_hn, rows (b, t)
  xt::xtensor<float, 2> h_prev;  // (T*B, H) state entering time t, rows (t, b)
  xt::xtensor<float, 2> c_prev;  // (T*B, H) LSTM cell entering time t
  xt::xtensor<float, 2> h_last;  // (B, H) state after the direction's last step
  xt::xtensor<float, 2> c_last;  // (B, H) LSTM
  // Backward workspaces, kept so that a recycled cache reuses them too.
  xt::xtensor<float, 1> dgx;     // (B*T*G*H) d loss / d input pre-activations, rows (b, t)
  xt::xtensor<float, 1> dgh;     // (T*B*G*H) d loss / d recurrent pre-activations, rows (t, b)
};

// Everything a layer's backward needs. x and the weights are referenced, not copied:
// the caller keeps them alive and unchanged until backward has run. A cache whose
// backward has run may be handed to the next forward (its `dirs` moved over), which
// then reuses its buffers instead of allocating and page-faulting fresh ones.
struct RecurrentCache {
  CellKind kind = CellKind::Lstm;
  RecurrentShape shape;
  const float* x = nullptr;
  std::vector<DirectionWeights> weights;
  std::vector<std::int64_t> lengths;  // empty: every sequence has length T
  std::vector<DirectionCache> dirs;
};

SEQLAB_LEVEL_BEGIN
// Forward of one layer. h0/c0/lengths may be null (zero states, full lengths);
// c_n is written only for LSTM. Fills `cache` for recurrent_backward.
void recurrent_forward(CellKind kind, const RecurrentShape& shape, const float* x,
                       const DirectionWeights* weights, const float* h0, const float* c0,
                       const std::int64_t* lengths, float* y, float* h_n, float* c_n,
                       RecurrentCache& cache);

// Backward of one layer. dy, dh_n, dc_n may be null (zero gradients). Writes dx
// (B, T, C) unless null, dh0 and (LSTM) dc0 (D, B, H); adds the parameter gradients
// into grads[d]. Uses the cache's backward workspaces (hence not const).
void recurrent_backward(RecurrentCache& cache, const float* dy, const float* dh_n,
                        const float* dc_n, const DirectionGrads* grads, float* dx, float* dh0,
                        float* dc0);
SEQLAB_LEVEL_END

}  // namespace seqlab
