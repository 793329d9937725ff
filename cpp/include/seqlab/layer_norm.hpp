// Layer normalisation over the last axis of a (M, C) array, as torch.nn.LayerNorm:
//   y = (x - mean) * rstd * gamma + beta,   rstd = 1 / sqrt(var + eps)  (biased variance).
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>

namespace seqlab {

SEQLAB_LEVEL_BEGIN
// x (M, C), gamma/beta (C,) or nullptr (no affine part) -> y (M, C); writes mean, rstd (M,)
// for the backward.
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                        float* rstd, std::size_t M, std::size_t C, float eps);

// grad_y (M, C). Writes dx (M, C) unless null; ACCUMULATES dgamma (C,) += sum_rows grad_y * xhat
// and dbeta (C,) += sum_rows grad_y unless null. The column sums run over all rows in order
// whatever the thread count, so they are bit-identical across runs.
void layer_norm_backward(const float* grad_y, const float* x, const float* gamma, const float* mean,
                         const float* rstd, float* dx, float* dgamma, float* dbeta, std::size_t M,
                         std::size_t C);
SEQLAB_LEVEL_END

}  // namespace seqlab
