// Softmax over the last axis of a (rows, cols) array, numerically stable (max subtracted).
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>

namespace seqlab {

SEQLAB_LEVEL_BEGIN
void softmax_forward(const float* x, float* y, std::size_t rows, std::size_t cols);
// grad_x = y * (grad_y - sum(grad_y * y)) row by row.
void softmax_backward(const float* grad_y, const float* y, float* grad_x, std::size_t rows,
                      std::size_t cols);
SEQLAB_LEVEL_END

}  // namespace seqlab
