// Elementwise activations over n floats, each a forward/backward pair.
// Backward takes what its derivative needs: the output for sigmoid, tanh and relu,
// the input for gelu.
//
// The per-batch formulas of relu and gelu live here (namespace act) so the fused
// linear + activation kernel (linear.hpp) applies the very same arithmetic.
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>

#include "seqlab/simd.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

void sigmoid_forward(const float* x, float* y, std::size_t n);
void sigmoid_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n);

void tanh_forward(const float* x, float* y, std::size_t n);
void tanh_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n);

void relu_forward(const float* x, float* y, std::size_t n);
void relu_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n);
// y = max(a + b, 0): a residual connection and its ReLU in one pass (backward: relu_backward,
// whose result is the gradient of both a and b).
void add_relu_forward(const float* a, const float* b, float* y, std::size_t n);
// y = a + b split over the pool: the tape's large sums (residual connections, gradients of a
// tensor used twice), which NumPy's add would run on one thread. Same bits as NumPy's.
void add_forward(const float* a, const float* b, float* y, std::size_t n);

// approximate_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as torch's
// approximate='tanh'; otherwise the exact 0.5 x (1 + erf(x / sqrt(2))).
void gelu_forward(const float* x, float* y, std::size_t n, bool approximate_tanh);
void gelu_backward(const float* grad_y, const float* x, float* grad_x, std::size_t n,
                   bool approximate_tanh);

namespace act {

using simd::Batch;
constexpr float kSqrt1_2 = 0.70710678118654752440f;      // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;   // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

inline Batch relu(Batch v) { return xsimd::max(v, Batch(0.0f)); }
// Gradient from the OUTPUT y (y > 0 exactly where x > 0).
inline Batch relu_grad(Batch g, Batch y) { return xsimd::select(y > Batch(0.0f), g, Batch(0.0f)); }

inline Batch gelu_tanh(Batch v) {
  const Batch inner = Batch(kSqrt2OverPi) * (v + Batch(kKappa) * v * v * v);
  return Batch(0.5f) * v * (Batch(1.0f) + xsimd::tanh(inner));
}
inline Batch gelu_exact(Batch v) {
  return v * Batch(0.5f) * xsimd::erfc(-v * Batch(kSqrt1_2));  // erfc: no cancellation for x << 0
}
// Gradients from the INPUT v.
inline Batch gelu_tanh_grad(Batch g, Batch v) {
  const Batch v2 = v * v;
  const Batch inner = Batch(kSqrt2OverPi) * (v + Batch(kKappa) * v2 * v);
  const Batch t = xsimd::tanh(inner);
  const Batch left_derivative = Batch(0.5f) * (Batch(1.0f) + t);
  const Batch inner_derivative = Batch(kSqrt2OverPi) * (Batch(1.0f) + Batch(3.0f * kKappa) * v2);
  const Batch right_derivative = (Batch(1.0f) - t * t) * inner_derivative;
  return g * (left_derivative + Batch(0.5f) * v * right_derivative);
}
inline Batch gelu_exact_grad(Batch g, Batch v) {
  const Batch cdf = Batch(0.5f) * xsimd::erfc(-v * Batch(kSqrt1_2));
  const Batch pdf = xsimd::exp(Batch(-0.5f) * v * v) * Batch(kInvSqrt2Pi);
  return g * (cdf + v * pdf);
}

}  // namespace act

SEQLAB_LEVEL_END
}  // namespace seqlab
