// Softmax over the last axis of a (rows, cols) array, numerically stable (max subtracted).
#pragma once
#include <cstddef>

namespace seqlab {

void softmax_forward(const float* x, float* y, std::size_t rows, std::size_t cols);
// grad_x = y * (grad_y - sum(grad_y * y)) row by row.
void softmax_backward(const float* grad_y, const float* y, float* grad_x, std::size_t rows,
                      std::size_t cols);

}  // namespace seqlab
