// Adam / AdamW update over one flat range of parameters, with torch.optim.Adam's
// single-tensor float32 formulas (bias corrections computed in double from the step):
//   g = maximize ? -grad : grad
//   AdamW: p *= 1 - lr * weight_decay          Adam: g += weight_decay * p
//   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
//   vmax = max(vmax, v) (amsgrad);  denom = sqrt(v or vmax) / sqrt(1 - beta2^t) + eps
//   p += -(lr / (1 - beta1^t)) * m / denom
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <cstdint>

namespace seqlab {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  bool decoupled_weight_decay = false;  // AdamW
  bool maximize = false;
};

SEQLAB_LEVEL_BEGIN
// param, grad, exp_avg, exp_avg_sq (n,); max_exp_avg_sq (n,) when amsgrad (else may be null).
// step: the step number after this update (1 on the first call).
void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               float* max_exp_avg_sq, std::size_t n, const AdamOptions& opt, std::int64_t step);
SEQLAB_LEVEL_END

}  // namespace seqlab
