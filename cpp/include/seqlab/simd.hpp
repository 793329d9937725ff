// SIMD helpers shared by the elementwise kernels: the native float batch and
// maps over arrays whose tail (n % lanes) goes through the same batch code via a
// padded scratch register, so every element sees identical arithmetic.
#pragma once
#include "seqlab/level.hpp"
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace simd {

using Batch = xsimd::batch<float>;
constexpr std::size_t kLanes = Batch::size;

// Pins a SIMD register value (an xsimd batch or a raw __m512/__m256) to a register at
// this point. Register-tile kernels load a row chunk once and use it in several FMAs;
// without this GCC may re-load it for every FMA that uses it (a memory operand per FMA),
// which makes the kernel load-bound at about half its FMA-bound speed on Zen 4. The
// arithmetic is unchanged.
template <class Register>
inline void keep_in_register(Register& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  if constexpr (std::is_class_v<Register>) asm volatile("" : "+v"(v.data));
  else asm volatile("" : "+v"(v));
#else
  (void)v;
#endif
}

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

// Row reductions and maps of the softmax kernels (attention, decoder attention).

// Largest lane of a batch.
inline float lane_max(const Batch& b) {
  alignas(64) float lanes[kLanes];
  b.store_aligned(lanes);
  return *std::max_element(lanes, lanes + kLanes);
}

inline float row_max(const float* x, int n) {
  int i = 0;
  float m = -std::numeric_limits<float>::infinity();
  if (n >= static_cast<int>(kLanes)) {
    Batch acc = Batch::load_unaligned(x);
    for (i = kLanes; i + static_cast<int>(kLanes) <= n; i += kLanes) acc = xsimd::max(acc, Batch::load_unaligned(x + i));
    m = lane_max(acc);
  }
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

inline float row_dot(const float* a, const float* b, int n) {
  int i = 0;
  Batch acc(0.0f);
  for (; i + static_cast<int>(kLanes) <= n; i += kLanes)
    acc = xsimd::fma(Batch::load_unaligned(a + i), Batch::load_unaligned(b + i), acc);
  float s = xsimd::hadd(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// x <- exp(x - m) over a row; returns the sum of the new values (one pass).
inline float exp_sum(float* x, int n, float m) {
  const Batch mb(m);
  Batch acc(0.0f);
  int i = 0;
  for (; i + static_cast<int>(kLanes) <= n; i += kLanes) {
    const Batch e = xsimd::exp(Batch::load_unaligned(x + i) - mb);
    e.store_unaligned(x + i);
    acc += e;
  }
  float s = xsimd::hadd(acc);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  return s;
}

inline void scale_row(float* x, int n, float c) {
  const Batch cb(c);
  map1(x, x, static_cast<std::size_t>(n), [&](Batch v) { return v * cb; });
}

// Softmax of one row in place; a row of -inf becomes zeros. Returns the logsumexp (+inf then).
inline float softmax_row(float* row, int n) {
  const float m = row_max(row, n);
  if (m == -std::numeric_limits<float>::infinity()) {
    std::fill(row, row + n, 0.0f);
    return std::numeric_limits<float>::infinity();
  }
  const float sum = exp_sum(row, n, m);
  scale_row(row, n, 1.0f / sum);
  return m + std::log(sum);
}

}  // namespace simd
SEQLAB_LEVEL_END
}  // namespace seqlab
