// 1-d convolution over channels-last sequences (stride 1, groups 1, any dilation, separate
// left and right zero padding; causal = left padding of dilation*(K-1)), as a
// forward/backward pair.
//
// Shapes (float32, row-major):
//   x (B, T, Cin)   w (Cout, Cin, K) (torch's Conv1d layout)   b (Cout,)
//   y (B, To, Cout) with To = T + pad_left + pad_right - dilation*(K-1)
//   y[b, t, :] = b + sum_k W[:, :, k] @ x[b, t + dilation*k - pad_left, :]   (zero outside [0, T))
//
// Cost: the input is unfolded once into U (B*To, K*Cin) (contiguous Cin-length row copies,
// parallel over rows; the zero padding is written there, never materialised around x);
// then forward is one GEMM y = U @ Wr^T with Wr (Cout, K*Cin) the weight with its taps
// moved before the input channels; backward is one GEMM each for dWr = dy^T @ U and
// dU = dy @ Wr, and a parallel fold of dU back into dx. No allocation per timestep.
#pragma once
#include <xtensor/xtensor.hpp>

#include <cstddef>

namespace seqlab {

struct Conv1dShape {
  std::size_t B = 0, T = 0, Cin = 0, Cout = 0, K = 0;
  std::size_t dilation = 1, pad_left = 0, pad_right = 0;
  // Output length (0 when the padded input is shorter than the receptive field).
  std::size_t out_len() const;
};

// What backward needs: the unfolded input and the tap-major weight.
struct Conv1dCache {
  Conv1dShape shape;
  xt::xtensor<float, 2> unfolded;  // (B*To, K*Cin)
  xt::xtensor<float, 2> weight;    // (Cout, K*Cin) tap-major copy of w
};

// y (B, To, Cout); b may be null. Fills `cache`.
void conv1d_forward(const Conv1dShape& shape, const float* x, const float* w, const float* b,
                    float* y, Conv1dCache& cache);

// grad_y (B, To, Cout). Writes dx (B, T, Cin) when dx != nullptr; ACCUMULATES
// dw (Cout, Cin, K) += and db (Cout,) += when they are not null.
void conv1d_backward(const Conv1dCache& cache, const float* grad_y, float* dx, float* dw,
                     float* db);

}  // namespace seqlab
