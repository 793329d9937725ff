#include "seqlab/activations.hpp"

#include <cmath>

#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
constexpr std::size_t kGrain = 1 << 14;

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

void relu_forward(const float* x, float* y, std::size_t n) { parallel_map1(x, y, n, [](Batch v) { return act::relu(v); }); }

void relu_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n) {
  parallel_map2(grad_y, y, grad_x, n, [](Batch g, Batch o) { return act::relu_grad(g, o); });
}

void add_relu_forward(const float* a, const float* b, float* y, std::size_t n) {
  parallel_map2(a, b, y, n, [](Batch u, Batch v) { return xsimd::max(u + v, Batch(0.0f)); });
}

void add_forward(const float* a, const float* b, float* y, std::size_t n) {
  parallel_map2(a, b, y, n, [](Batch u, Batch v) { return u + v; });
}

void gelu_forward(const float* x, float* y, std::size_t n, bool approximate_tanh) {
  if (approximate_tanh)
    parallel_map1(x, y, n, [](Batch v) { return act::gelu_tanh(v); });
  else
    parallel_map1(x, y, n, [](Batch v) { return act::gelu_exact(v); });
}

void gelu_backward(const float* grad_y, const float* x, float* grad_x, std::size_t n,
                   bool approximate_tanh) {
  if (approximate_tanh)
    parallel_map2(grad_y, x, grad_x, n, [](Batch g, Batch v) { return act::gelu_tanh_grad(g, v); });
  else
    parallel_map2(grad_y, x, grad_x, n, [](Batch g, Batch v) { return act::gelu_exact_grad(g, v); });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
