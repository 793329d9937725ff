#include "seqlab/sgd.hpp"

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

constexpr std::size_t kGrain = 1 << 15;

// One element or one batch of the update; V is float or simd::Batch, and both see the
// same IEEE operations, so the tail matches the vector body bit for bit.
template <class V>
inline void sgd_update(V& p, V g, V* buf, const SgdOptions& o, bool first) {
  if (o.maximize) g = -g;
  if (o.weight_decay != 0.0f) g = g + V(o.weight_decay) * p;
  if (o.momentum != 0.0f) {
    if (first)
      *buf = g;
    else
      *buf = *buf * V(o.momentum) + V(1.0f - o.dampening) * g;
    g = o.nesterov ? g + V(o.momentum) * *buf : *buf;
  }
  p = p + V(-o.lr) * g;
}

}  // namespace

void sgd_step(float* param, const float* grad, float* momentum_buf, std::size_t n,
              const SgdOptions& opt, bool first) {
  using simd::Batch;
  const bool mom = opt.momentum != 0.0f;
  parallel_for(n, kGrain, [&](std::size_t b, std::size_t e) {
    std::size_t i = b;
    for (; i + simd::kLanes <= e; i += simd::kLanes) {
      Batch p = Batch::load_unaligned(param + i);
      Batch buf = mom ? Batch::load_unaligned(momentum_buf + i) : Batch(0.0f);
      sgd_update<Batch>(p, Batch::load_unaligned(grad + i), &buf, opt, first);
      p.store_unaligned(param + i);
      if (mom) buf.store_unaligned(momentum_buf + i);
    }
    for (; i < e; ++i) {
      float buf = mom ? momentum_buf[i] : 0.0f;
      sgd_update<float>(param[i], grad[i], &buf, opt, first);
      if (mom) momentum_buf[i] = buf;
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
