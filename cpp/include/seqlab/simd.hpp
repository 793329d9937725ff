// SIMD helpers shared by the elementwise kernels: the native float batch and
// maps over arrays whose tail (n % lanes) goes through the same batch code via a
// padded scratch register, so every element sees identical arithmetic.
#pragma once
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>

namespace seqlab::simd {

using Batch = xsimd::batch<float>;
constexpr std::size_t kLanes = Batch::size;

// y[i] = f(x[i]) for i in [0, n); f maps a Batch to a Batch.
template <class F>
inline void map1(const float* x, float* y, std::size_t n, F&& f) {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) f(Batch::load_unaligned(x + i)).store_unaligned(y + i);
  if (i < n) {
    alignas(64) float bx[kLanes] = {};
    std::copy(x + i, x + n, bx);
    f(Batch::load_aligned(bx)).store_aligned(bx);
    std::copy(bx, bx + (n - i), y + i);
  }
}

// z[i] = f(x[i], y[i]) for i in [0, n).
template <class F>
inline void map2(const float* x, const float* y, float* z, std::size_t n, F&& f) {
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    f(Batch::load_unaligned(x + i), Batch::load_unaligned(y + i)).store_unaligned(z + i);
  if (i < n) {
    alignas(64) float bx[kLanes] = {};
    alignas(64) float by[kLanes] = {};
    std::copy(x + i, x + n, bx);
    std::copy(y + i, y + n, by);
    f(Batch::load_aligned(bx), Batch::load_aligned(by)).store_aligned(bx);
    std::copy(bx, bx + (n - i), z + i);
  }
}

}  // namespace seqlab::simd
