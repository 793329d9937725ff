// 1-d convolution over channels-last sequences (stride 1, groups 1, any dilation, separate
// left and right zero padding; causal = left padding of dilation*(K-1)), as a
// forward/backward pair.
//
// Shapes (float32, row-major):
//   x (B, T, Cin)   w (Cout, Cin, K) (torch's Conv1d layout)   b (Cout,)
//   y (B, To, Cout) with To = T + pad_left + pad_right - dilation*(K-1)
//   y[b, t, :] = b + sum_k W[:, :, k] @ x[b, t + dilation*k - pad_left, :]   (zero outside [0, T))
//   and with `relu`, y = max(y, 0) applied to each output tile while it is in cache (the
//   backward masks grad_y by y > 0 as it gathers its rows), so a convolution + ReLU is one op.
//
// Cost: every product is a GEMM over the unfolded rows of a sequence, but the unfolded
// matrix is never materialised whole: the output rows are split into one contiguous part
// per thread, and each part gathers tiles of a few hundred unfolded rows (the K taps of a
// row side by side, the zero padding written there) into an L2-sized workspace and
// multiplies each tile while it is hot (single-threaded OpenBLAS inside the pool):
//   forward   y  tile = U(x)  tile (R, K*Cin)  @ Wr^T (K*Cin, Cout)
//   grad x    dx tile = U'(dy) tile (R, K*Cout) @ Wb   (K*Cout, Cin)   (taps mirrored:
//             dx[b, s] = sum_k W_k^T dy[b, s + pad_left - dilation*k], a gather, no scatter)
//   grad w    dWr_part += dy tile^T (Cout, R) @ U(x) tile (R, K*Cin), per part, then the
//             parts are added in a fixed order (deterministic for a given thread count).
// Wr (Cout, K*Cin) and Wb (K*Cout, Cin) are the weight with its taps moved before the
// channels. Nothing is allocated per call once a cache is recycled, and nothing per tile.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <cstddef>

namespace seqlab {

struct Conv1dShape {
  std::size_t B = 0, T = 0, Cin = 0, Cout = 0, K = 0;
  std::size_t dilation = 1, pad_left = 0, pad_right = 0;
  bool relu = false;  // fused ReLU on the output
  // Output length (0 when the padded input is shorter than the receptive field).
  std::size_t out_len() const {
    const std::size_t span = dilation * (K - 1);
    const std::size_t padded = T + pad_left + pad_right;
    return padded > span ? padded - span : 0;
  }
};

// What backward needs, plus the workspaces of both passes. The input is referenced, not
// copied: the caller keeps x alive and unchanged until backward has run. A cache whose
// backward has run may be handed to the next forward, which reuses its buffers.
struct Conv1dCache {
  Conv1dShape shape;
  const float* x = nullptr;       // (B, T, Cin)
  const float* y = nullptr;       // (B, To, Cout), referenced as x is (read only with relu)
  xt::xtensor<float, 2> weight;   // Wr (Cout, K*Cin): Wr[co, k*Cin + ci] = w[co, ci, k]
  xt::xtensor<float, 2> mirrored; // Wb (K*Cout, Cin): Wb[k*Cout + co, ci] = w[co, ci, k]
  xt::xtensor<float, 1> work;     // per part: a gather tile, a masked grad_y tile, partial dWr and db
};

SEQLAB_LEVEL_BEGIN
// y (B, To, Cout); b may be null. Fills `cache` (reusing its buffers when they fit); with
// shape.relu the cache references y, which must stay unchanged until backward.
void conv1d_forward(const Conv1dShape& shape, const float* x, const float* w, const float* b,
                    float* y, Conv1dCache& cache);

// grad_y (B, To, Cout). Writes dx (B, T, Cin) when dx != nullptr (adds into it with
// accumulate_dx); ACCUMULATES dw (Cout, Cin, K) += and db (Cout,) += when they are not null.
void conv1d_backward(Conv1dCache& cache, const float* grad_y, float* dx, float* dw, float* db,
                     bool accumulate_dx = false);
SEQLAB_LEVEL_END

// ------------------------------------------------------------------ TCN temporal block
// y = relu(relu(conv2(relu(conv1(x)))) + res), res = x or the 1x1 projection x @ Wd^T + bd,
// with conv1 (Cin -> C) and conv2 (C -> C) dilated causal convolutions of K taps (Bai et
// al. 2018's block without dropout), as one forward/backward pair: the two hidden
// activations and every gradient buffer live in the cache and are recycled, so a block
// allocates only its output (forward) and its input gradient (backward).
struct TemporalBlockWeights {
  const float* w1 = nullptr;  // (C, Cin, K)
  const float* b1 = nullptr;  // (C,) or null
  const float* w2 = nullptr;  // (C, C, K)
  const float* b2 = nullptr;  // (C,) or null
  const float* wd = nullptr;  // (C, Cin) or null: identity residual (Cin == C)
  const float* bd = nullptr;  // (C,) or null
};

// Gradient buffers, accumulated into (+=); any may be null (not needed).
struct TemporalBlockGrads {
  float *w1 = nullptr, *b1 = nullptr, *w2 = nullptr, *b2 = nullptr, *wd = nullptr, *bd = nullptr;
};

// x, y and wd are referenced: the caller keeps them alive and unchanged until backward.
struct TemporalBlockCache {
  Conv1dCache conv1, conv2;
  const float* x = nullptr;   // (B, T, Cin)
  const float* y = nullptr;   // (B, T, C)
  const float* wd = nullptr;  // (C, Cin) or null
  xt::xtensor<float, 1> h1, h2;    // (B*T*C) the two convolutions' activated outputs
  xt::xtensor<float, 1> g, dh1;    // (B*T*C) backward: masked grad_y, grad of h1
};

SEQLAB_LEVEL_BEGIN
// shape: that of conv1 (B, T, Cin, Cout = C, K, dilation; the padding is made causal).
void temporal_block_forward(const Conv1dShape& shape, const TemporalBlockWeights& w, const float* x,
                            float* y, TemporalBlockCache& cache);

// grad_y (B, T, C). Writes dx (B, T, Cin) unless null; adds the parameter gradients.
void temporal_block_backward(TemporalBlockCache& cache, const float* grad_y, float* dx,
                             const TemporalBlockGrads& grads);
SEQLAB_LEVEL_END

}  // namespace seqlab
