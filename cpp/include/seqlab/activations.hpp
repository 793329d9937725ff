// Elementwise activations over n floats, each a forward/backward pair.
// Backward takes what its derivative needs: the output for sigmoid, tanh and relu,
// the input for gelu.
#pragma once
#include <cstddef>

namespace seqlab {

void sigmoid_forward(const float* x, float* y, std::size_t n);
void sigmoid_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n);

void tanh_forward(const float* x, float* y, std::size_t n);
void tanh_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n);

void relu_forward(const float* x, float* y, std::size_t n);
void relu_backward(const float* grad_y, const float* y, float* grad_x, std::size_t n);
// y = max(a + b, 0): a residual connection and its ReLU in one pass (backward: relu_backward,
// whose result is the gradient of both a and b).
void add_relu_forward(const float* a, const float* b, float* y, std::size_t n);

// approximate_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as torch's
// approximate='tanh'; otherwise the exact 0.5 x (1 + erf(x / sqrt(2))).
void gelu_forward(const float* x, float* y, std::size_t n, bool approximate_tanh);
void gelu_backward(const float* grad_y, const float* x, float* grad_x, std::size_t n,
                   bool approximate_tanh);

}  // namespace seqlab
