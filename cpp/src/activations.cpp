#include "seqlab/activations.hpp"

#include <cmath>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {

namespace {

using simd::Batch;
constexpr std::size_t kGrain = 1 << 14;
constexpr float kSqrt1_2 = 0.70710678118654752440f;      // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;   // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

template <class F>
void parallel_map1(const float* x, float* y, std::size_t n, F f) {
  parallel_for(n, kGrain, [&](std::size_t b, std::size_t e) { simd::map1(x + b, y + b, e - b, f); });
}

template <class F>
void parallel_map2(const float* x, const float* y, float* z, std::size_t n, F f) {
  parallel_for(n, kGrain,
               [&](std::size_t b, std::size_t e) { simd::map2(x + b, y + b, z + b, e - b, f); });
}

}  // namespace

void sigmoid_forward(const float* x, float* y, std::size_t n) {
  parallel_map1(x, y, n, [](Batch v) { return Batch(1.0f) / (Batch(1.0f) + xsimd::exp(-v)); });
}

void sigmoid_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n) {
  parallel_map2(grad_y, y, grad_x, n,
                [](Batch g, Batch s) { return g * s * (Batch(1.0f) - s); });
}

void tanh_forward(const float* x, float* y, std::size_t n) {
  parallel_map1(x, y, n, [](Batch v) { return xsimd::tanh(v); });
}

void tanh_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n) {
  parallel_map2(grad_y, y, grad_x, n, [](Batch g, Batch t) { return g * (Batch(1.0f) - t * t); });
}

void relu_forward(const float* x, float* y, std::size_t n) {
  parallel_map1(x, y, n, [](Batch v) { return xsimd::max(v, Batch(0.0f)); });
}

void relu_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n) {
  parallel_map2(grad_y, y, grad_x, n,
                [](Batch g, Batch o) { return xsimd::select(o > Batch(0.0f), g, Batch(0.0f)); });
}

void add_relu_forward(const float* a, const float* b, float* y, std::size_t n) {
  parallel_map2(a, b, y, n, [](Batch u, Batch v) { return xsimd::max(u + v, Batch(0.0f)); });
}

void gelu_forward(const float* x, float* y, std::size_t n, bool approximate_tanh) {
  if (approximate_tanh) {
    parallel_map1(x, y, n, [](Batch v) {
      const Batch inner = Batch(kSqrt2OverPi) * (v + Batch(kKappa) * v * v * v);
      return Batch(0.5f) * v * (Batch(1.0f) + xsimd::tanh(inner));
    });
  } else {
    parallel_map1(x, y, n, [](Batch v) {
      return v * Batch(0.5f) * xsimd::erfc(-v * Batch(kSqrt1_2));  // erfc: no cancellation for x << 0
    });
  }
}

void gelu_backward(const float* grad_y, const float* x, float* grad_x, std::size_t n,
                   bool approximate_tanh) {
  if (approximate_tanh) {
    parallel_map2(grad_y, x, grad_x, n, [](Batch g, Batch v) {
      const Batch v2 = v * v;
      const Batch inner = Batch(kSqrt2OverPi) * (v + Batch(kKappa) * v2 * v);
      const Batch t = xsimd::tanh(inner);
      const Batch left_derivative = Batch(0.5f) * (Batch(1.0f) + t);
      const Batch inner_derivative = Batch(kSqrt2OverPi) * (Batch(1.0f) + Batch(3.0f * kKappa) * v2);
      const Batch right_derivative = (Batch(1.0f) - t * t) * inner_derivative;
      return g * (left_derivative + Batch(0.5f) * v * right_derivative);
    });
  } else {
    parallel_map2(grad_y, x, grad_x, n, [](Batch g, Batch v) {
      const Batch cdf = Batch(0.5f) * xsimd::erfc(-v * Batch(kSqrt1_2));
      const Batch pdf = xsimd::exp(Batch(-0.5f) * v * v) * Batch(kInvSqrt2Pi);
      return g * (cdf + v * pdf);
    });
  }
}

}  // namespace seqlab
