// The masked hybrid reconstruction loss over sequences of vectors, as one
// forward/backward pair.
//
// For pred, target (B, T, E) and each real token (b, t), t < lengths[b]:
//   cos(p, y) = (p . y) / (max(|p|, eps) * max(|y|, eps)),  eps = 1e-8
//               (torch.nn.functional.cosine_similarity: each norm clamped)
//   l(b, t)   = cosine_weight * (1 - cos(p, y)) / temperature
//             + mse_weight * sum_e (p_e - y_e)^2 / E
// The gradient follows torch's: the clamp is outside autograd, so d cos / dp =
// y / (max|p| max|y|) - cos p / (|p| max(|p|, eps)) (the last term 0 at p = 0).
// Padding tokens (t >= lengths[b]) have l = 0. Reductions: "mean" = sum of l over
// real tokens / their count, "sum" = sum of l, "none" = l as (B, T).
#pragma once
#include "seqlab/level.hpp"
#include <cstdint>

namespace seqlab {

struct CosineMseConfig {
  float cosine_weight = 0.9f;
  float mse_weight = 0.1f;
  float temperature = 1.0f;
  float eps = 1e-8f;
};

SEQLAB_LEVEL_BEGIN
// Writes the per-token losses token_loss (B*T) (0 at padding); returns their sum
// (accumulated in double in a fixed order, so independent of the thread count) and
// sets *count to the number of real tokens. lengths (B,) in [0, T] or null (all T).
double cosine_mse_forward(const float* pred, const float* target, const std::int64_t* lengths,
                          int B, int T, int E, const CosineMseConfig& cfg, float* token_loss,
                          std::int64_t* count);

// Backward: the gradient of the objective with respect to each token's loss is
// token_grad[b*T + t] when token_grad is given, else the constant `scale` (padding
// tokens get none). Writes d_pred and d_target (B, T, E), each unless null.
void cosine_mse_backward(const float* pred, const float* target, const std::int64_t* lengths,
                         int B, int T, int E, const CosineMseConfig& cfg, const float* token_grad,
                         float scale, float* d_pred, float* d_target);
SEQLAB_LEVEL_END

}  // namespace seqlab
