// SGD update over one flat range of parameters, with torch.optim.SGD's formulas:
//   g = (maximize ? -grad : grad) + weight_decay * p
//   buf = first ? g : momentum * buf + (1 - dampening) * g      (when momentum != 0)
//   g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>

namespace seqlab {

struct SgdOptions {
  float lr = 1e-3f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool maximize = false;
};

SEQLAB_LEVEL_BEGIN
// param, grad (n,); momentum_buf (n,) used when momentum != 0 (may be null otherwise).
// first: the momentum buffer is initialised from g (torch's first step).
void sgd_step(float* param, const float* grad, float* momentum_buf, std::size_t n,
              const SgdOptions& opt, bool first);
SEQLAB_LEVEL_END

}  // namespace seqlab
