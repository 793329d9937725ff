// Global gradient-norm clipping over several gradient arrays, as
// torch.nn.utils.clip_grad_norm_: total = ||(||g_1||, ..., ||g_k||)||_p,
// every g multiplied by min(1, max_norm / (total + 1e-6)).
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <vector>

namespace seqlab {

struct FloatSpan {
  float* data;
  std::size_t size;
};

SEQLAB_LEVEL_BEGIN
// The total p-norm of all spans (norm_type may be +inf); accumulated in double over
// fixed blocks, so the result does not depend on the thread count.
float grad_total_norm(const std::vector<FloatSpan>& grads, double norm_type);

// Scales every span by min(1, max_norm / (total_norm + 1e-6)); returns that factor.
float grad_clip_scale(const std::vector<FloatSpan>& grads, float total_norm, float max_norm);
SEQLAB_LEVEL_END

}  // namespace seqlab
