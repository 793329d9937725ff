// Softmax cross-entropy over the last axis of (N, V) logits with integer targets,
// fused: the forward keeps only the per-row logsumexp (N floats), the backward
// recomputes the probabilities while writing the logits' gradient, so the (N, V)
// probability matrix is never stored.
//
// Per row i with target t_i and label smoothing e (torch's definition):
//   loss_i = (1 - e) (lse_i - x_{i,t_i}) + e (lse_i - mean_j x_ij),
// and loss_i = 0 for rows whose target equals ignore_index.
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <cstdint>

namespace seqlab {

SEQLAB_LEVEL_BEGIN
// Writes loss (N,) and lse (N,). Targets must be in [0, V) or equal ignore_index.
void cross_entropy_forward(const float* logits, const std::int64_t* target, float* loss, float* lse,
                           std::size_t N, std::size_t V, std::int64_t ignore_index, float label_smoothing);

// grad_loss (N,): d objective / d loss_i. Writes grad_logits (N, V):
//   grad_loss_i (softmax(x_i) - (1 - e) onehot(t_i) - e / V), zero for ignored rows.
void cross_entropy_backward(const float* logits, const std::int64_t* target, const float* lse,
                            const float* grad_loss, float* grad_logits, std::size_t N, std::size_t V,
                            std::int64_t ignore_index, float label_smoothing);
SEQLAB_LEVEL_END

}  // namespace seqlab
