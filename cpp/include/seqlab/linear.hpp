// Linear layer: y = x W^T + b over M rows (all leading dimensions flattened).
#pragma once
#include <cstddef>

namespace seqlab {

// x (M, K), w (N, K), b (N,) or nullptr -> y (M, N). One sgemm.
void linear_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                    std::size_t K, std::size_t N);

// grad_y (M, N). Writes dx (M, K) = grad_y W when dx != nullptr; ACCUMULATES
// dw (N, K) += grad_y^T x when dw != nullptr and db (N,) += column sums of grad_y
// when db != nullptr. One sgemm for each of dx and dw.
void linear_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                     float* db, std::size_t M, std::size_t K, std::size_t N);

}  // namespace seqlab
