// Softmax cross-entropy over the last axis of (N, V) logits with integer targets,
// fused: the forward keeps only the per-row log-sum s_i = log sum_j exp(x_ij - m_i)
// relative to the row max m_i (N floats), the backward recomputes the max and the
// probabilities exp((x_ij - m_i) - s_i) while writing the logits' gradient, so the
// (N, V) probability matrix is never stored. Keeping s_i apart from m_i (rather than
// their sum, the logsumexp) keeps the precision of log-probabilities near 0 when the
// logits are large: m_i + s_i would round s_i to the float spacing of m_i.
//
// Per row i with target t_i and label smoothing e (torch's definition):
//   loss_i = (1 - e) ((m_i - x_{i,t_i}) + s_i) + e ((m_i - mean_j x_ij) + s_i),
// and loss_i = 0 for rows whose target equals ignore_index.
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <cstdint>

namespace seqlab {

SEQLAB_LEVEL_BEGIN
// Writes loss (N,) and logsum (N,). Targets must be in [0, V) or equal ignore_index.
void cross_entropy_forward(const float* logits, const std::int64_t* target, float* loss, float* logsum,
                           std::size_t N, std::size_t V, std::int64_t ignore_index, float label_smoothing);

// grad_loss (N,): d objective / d loss_i. Writes grad_logits (N, V):
//   grad_loss_i (softmax(x_i) - (1 - e) onehot(t_i) - e / V), zero for ignored rows.
void cross_entropy_backward(const float* logits, const std::int64_t* target, const float* logsum,
                            const float* grad_loss, float* grad_logits, std::size_t N, std::size_t V,
                            std::int64_t ignore_index, float label_smoothing);
SEQLAB_LEVEL_END

}  // namespace seqlab
