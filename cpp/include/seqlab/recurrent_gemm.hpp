// The per-step recurrent product of the recurrent layers: C (M, N) (+)= A (M, K) @ B
// with a small M (the batch) and a B (the recurrent weights) that stays the same for
// every step. B is packed once per layer call into column panels, so each step
// streams it once through an xsimd register-blocked kernel instead of paying a
// general GEMM's per-call packing (which, at M = 16, costs about as much as the
// multiply itself).
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <cstddef>

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace recurrent {

class PackedMatrix {
 public:
  // B = W^T for a row-major W (N, K): the forward product h @ W_hh^T.
  static PackedMatrix from_transposed(const float* w, int N, int K);
  // B = W for a row-major W (K, N): the backward product dgates @ W_hh.
  static PackedMatrix from_plain(const float* w, int K, int N);

  int rows() const { return K_; }
  int cols() const { return N_; }
  // Bytes of the packed panels (what one multiply streams through the cache).
  std::size_t bytes() const { return data_.size() * sizeof(float); }
  // Rows of A one register block of the kernel multiplies at once.
  static int row_block();

  // C (M, N), row stride ldc, = A (M, K) @ B (+ C when accumulate); A's row stride lda.
  // Splits the column panels over the thread pool when the product is large enough.
  void multiply(int M, const float* A, int lda, float* C, int ldc, bool accumulate) const;

 private:
  PackedMatrix(int K, int N);
  int K_ = 0, N_ = 0, panels_ = 0;
  xt::xtensor<float, 1> data_;  // panels_ x K_ x panel width, zero-padded columns
};

}  // namespace recurrent
SEQLAB_LEVEL_END
}  // namespace seqlab
