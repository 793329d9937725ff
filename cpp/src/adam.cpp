#include "seqlab/adam.hpp"

#include <cmath>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

constexpr std::size_t kGrain = 1 << 15;

// The per-step scalars, rounded to float where torch's kernels round them.
struct AdamScalars {
  float weight_decay;
  float decay_factor;   // 1 - lr * weight_decay (AdamW)
  float w1;             // lerp weight 1 - beta1
  bool w1_small;        // lerp branch: w1 < 0.5
  float beta2;
  float one_minus_beta2;
  float bc2_sqrt;       // sqrt(1 - beta2^t)
  float eps;
  float neg_step_size;  // -lr / (1 - beta1^t)
};

inline float vsqrt(float x) { return std::sqrt(x); }
inline simd::Batch vsqrt(const simd::Batch& x) { return xsimd::sqrt(x); }
inline float vmax(float a, float b) { return a < b ? b : a; }
inline simd::Batch vmax(const simd::Batch& a, const simd::Batch& b) { return xsimd::max(a, b); }

template <class V>
inline void adam_update(V& p, V g, V& m, V& v, V& vm, const AdamOptions& o, const AdamScalars& s) {
  if (o.maximize) g = -g;
  if (o.weight_decay != 0.0) {
    if (o.decoupled_weight_decay)
      p = p * V(s.decay_factor);
    else
      g = g + V(s.weight_decay) * p;
  }
  const V diff = g - m;
  m = s.w1_small ? m + V(s.w1) * diff : g - diff * V(1.0f - s.w1);
  v = v * V(s.beta2);
  v = v + V(s.one_minus_beta2) * g * g;
  V second = v;
  if (o.amsgrad) {
    vm = vmax(vm, v);
    second = vm;
  }
  const V denom = vsqrt(second) / V(s.bc2_sqrt) + V(s.eps);
  p = p + V(s.neg_step_size) * m / denom;
}

}  // namespace

void adam_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               float* max_exp_avg_sq, std::size_t n, const AdamOptions& opt, std::int64_t step) {
  using simd::Batch;
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(opt.beta1, t);
  const double bc2 = 1.0 - std::pow(opt.beta2, t);
  AdamScalars s{};
  s.weight_decay = static_cast<float>(opt.weight_decay);
  s.decay_factor = static_cast<float>(1.0 - opt.lr * opt.weight_decay);
  s.w1 = static_cast<float>(1.0 - opt.beta1);
  s.w1_small = s.w1 < 0.5f;
  s.beta2 = static_cast<float>(opt.beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - opt.beta2);
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.eps = static_cast<float>(opt.eps);
  s.neg_step_size = static_cast<float>(-(opt.lr / bc1));
  const bool ams = opt.amsgrad;
  parallel_for(n, kGrain, [&](std::size_t b, std::size_t e) {
    std::size_t i = b;
    for (; i + simd::kLanes <= e; i += simd::kLanes) {
      Batch p = Batch::load_unaligned(param + i);
      Batch m = Batch::load_unaligned(exp_avg + i);
      Batch v = Batch::load_unaligned(exp_avg_sq + i);
      Batch vm = ams ? Batch::load_unaligned(max_exp_avg_sq + i) : Batch(0.0f);
      adam_update<Batch>(p, Batch::load_unaligned(grad + i), m, v, vm, opt, s);
      p.store_unaligned(param + i);
      m.store_unaligned(exp_avg + i);
      v.store_unaligned(exp_avg_sq + i);
      if (ams) vm.store_unaligned(max_exp_avg_sq + i);
    }
    for (; i < e; ++i) {
      float vm = ams ? max_exp_avg_sq[i] : 0.0f;
      adam_update<float>(param[i], grad[i], exp_avg[i], exp_avg_sq[i], vm, opt, s);
      if (ams) max_exp_avg_sq[i] = vm;
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
