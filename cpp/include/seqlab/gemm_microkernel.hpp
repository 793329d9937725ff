// The register-tile GEMM micro-kernel every GEMM seqlab writes itself is built on (top-k's
// many-query scoring, attention's blocks, the bf16 linear layers), with its packing
// helpers. Level code: the tile is sized by the level's SIMD width (kW floats per vector).
//
// fp32 tile: C (MR x NV*kW) = alpha * sum_k A(i, k) B(k, :) (+ C). A element (i, k) sits at
// a[i*sai + k*sak] (so A may be read transposed), row k of B at b + k*ldb (a packed panel,
// ldb = kNR, or any row-major matrix). Per k: NV vector loads of B's row, one broadcast of
// each A element, MR*NV FMAs into accumulators that stay in registers. Each C element is
// one multiply-add chain over k = 0..K-1 from zero, whatever the tile's position or the
// schedule: the same row and column always give the same float at a given level.
//
// bf16 tile (AVX512_BF16 levels only, kHasBf16): the same tile shape with vdpbf16ps, which
// multiplies pairs of bf16 values and adds both products to an fp32 lane. A is bf16 rows
// with k in pairs (pack_a_bf16), B is panels of kNR columns whose lanes hold the pair
// (B(2p, j), B(2p+1, j)) (pack_b_bf16); accumulation is fp32.
#pragma once
#include "seqlab/level.hpp"
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "seqlab/simd.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace gemm {

using I64 = std::int64_t;
using fbatch = xsimd::batch<float>;
inline constexpr int kW = static_cast<int>(fbatch::size);
// Tile shape: kMR rows x kNV vectors (6 x 64 with AVX-512: 24 accumulators of the 32
// registers; 6 x 16 with AVX2 and 6 x 8 with SSE: 12 of 16).
inline constexpr int kMR = 6;
inline constexpr int kNV = kW >= 16 ? 4 : 2;
inline constexpr int kNR = kNV * kW;

// ---------------------------------------------------------------- fp32
template <int MR, int NV>
inline void tile(I64 K, float alpha, const float* a, I64 sai, I64 sak, const float* b, I64 ldb, float* c,
                 I64 ldc, bool acc) {
  fbatch cr[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) cr[r][j] = fbatch(0.0f);
  for (I64 k = 0; k < K; ++k) {
    const float* br = b + k * ldb;
    fbatch bv[NV];
    for (int j = 0; j < NV; ++j) {
      bv[j] = fbatch::load_unaligned(br + j * kW);
      simd::keep_in_register(bv[j]);  // GCC folds it into every FMA for blocks of <= 4 rows
    }
    const float* ak = a + k * sak;
    for (int r = 0; r < MR; ++r) {
      const fbatch av(ak[r * sai]);
      for (int j = 0; j < NV; ++j) cr[r][j] = xsimd::fma(av, bv[j], cr[r][j]);
    }
  }
  const fbatch al(alpha);
  for (int r = 0; r < MR; ++r) {
    float* row = c + r * ldc;
    for (int j = 0; j < NV; ++j) {
      fbatch x = al * cr[r][j];
      if (acc) x = x + fbatch::load_unaligned(row + j * kW);
      x.store_unaligned(row + j * kW);
    }
  }
}

// Calls tile(std::integral_constant<int, MR>{}, i) for the row tiles [i, i + MR) that
// cover rows [0, M): MR = kMR, the last one as high as the rows left.
template <class Tile>
inline void row_tiles(I64 M, Tile&& tile) {
  I64 i = 0;
  for (; i + kMR <= M; i += kMR) tile(std::integral_constant<int, kMR>{}, i);
  static_assert(kMR == 6, "row_tiles lists the tails of a 6-row tile");
  switch (M - i) {
    case 5: tile(std::integral_constant<int, 5>{}, i); break;
    case 4: tile(std::integral_constant<int, 4>{}, i); break;
    case 3: tile(std::integral_constant<int, 3>{}, i); break;
    case 2: tile(std::integral_constant<int, 2>{}, i); break;
    case 1: tile(std::integral_constant<int, 1>{}, i); break;
    default: break;
  }
}

// C (M x NV*kW) (+)= alpha A B over all M rows.
template <int NV>
inline void tile_rows(I64 M, I64 K, float alpha, const float* a, I64 sai, I64 sak, const float* b, I64 ldb,
                      float* c, I64 ldc, bool acc) {
  row_tiles(M, [&](auto mr, I64 i) {
    tile<decltype(mr)::value, NV>(K, alpha, a + i * sai, sai, sak, b, ldb, c + i * ldc, ldc, acc);
  });
}

// C (M x N) (+)= alpha A B for N a multiple of kW, neither operand packed. Columns
// [kNR c, kNR c + kNR) of B start at b + c*bstep (bstep kNR: B row-major; K*kNR: B as
// panels of kNR columns, see pack_bt).
inline void gemm(bool acc, I64 M, I64 N, I64 K, float alpha, const float* a, I64 sai, I64 sak, const float* b,
                 I64 ldb, I64 bstep, float* c, I64 ldc) {
  I64 j = 0;
  for (; j + kNR <= N; j += kNR) tile_rows<kNV>(M, K, alpha, a, sai, sak, b + j / kNR * bstep, ldb, c + j, ldc, acc);
  const float* bj = b + j / kNR * bstep;
  switch ((N - j) / kW) {
    case 3: tile_rows<3>(M, K, alpha, a, sai, sak, bj, ldb, c + j, ldc, acc); break;
    case 2: tile_rows<2>(M, K, alpha, a, sai, sak, bj, ldb, c + j, ldc, acc); break;
    case 1: tile_rows<1>(M, K, alpha, a, sai, sak, bj, ldb, c + j, ldc, acc); break;
    default: break;
  }
}

// Floats of the panels pack_bt writes for n rows of K.
inline std::size_t packed_bt_size(I64 n, I64 K) {
  return static_cast<std::size_t>((n + kNR - 1) / kNR) * kNR * static_cast<std::size_t>(K);
}

// B = src^T in panels: src is n rows of K floats (row stride ld), B (K x n) is stored as
// ceil(n / kNR) panels of K rows of kNR floats, panel p at dst + p*K*kNR, zero padded
// past n. Blocks of kW rows are copied k by k: each k writes one whole vector.
inline void pack_bt(const float* src, I64 ld, I64 n, I64 K, float* dst) {
  for (I64 p0 = 0; p0 < n; p0 += kNR) {
    float* panel = dst + p0 * K;
    const float* rows = src + p0 * ld;
    const I64 nb = std::min<I64>(kNR, n - p0);
    for (I64 r0 = 0; r0 < kNR; r0 += kW) {
      const I64 m = r0 < nb ? std::min<I64>(kW, nb - r0) : 0;
      if (m == kW) {
        const float* s[kW];
        for (int i = 0; i < kW; ++i) s[i] = rows + (r0 + i) * ld;
        for (I64 k = 0; k < K; ++k) {
          alignas(64) float v[kW];
          for (int i = 0; i < kW; ++i) v[i] = s[i][k];
          fbatch::load_aligned(v).store_unaligned(panel + k * kNR + r0);
        }
      } else {
        for (I64 k = 0; k < K; ++k) {
          for (I64 i = 0; i < m; ++i) panel[k * kNR + r0 + i] = rows[(r0 + i) * ld + k];
          for (I64 i = m; i < kW; ++i) panel[k * kNR + r0 + i] = 0.0f;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- bf16
// Round to nearest even, as torch's .bfloat16() (NaN stays a quiet NaN of its sign), with
// fp32 denormals flushed to a zero of their sign as vcvtneps2bf16 does (vdpbf16ps reads
// bf16 denormals as zero in any case).
inline std::uint16_t to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  if ((u & 0x7f800000u) == 0) return static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

#if defined(__AVX512BF16__)
// 16 floats to bf16 as to_bf16 (vcvtneps2bf16).
inline __m256i to_bf16x16(__m512 v) { return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)); }
#endif

// bf16 elements of a row of K values packed as pairs (K rounded up to even).
inline I64 bf16_row(I64 K) { return (K + 1) / 2 * 2; }

// A (M x K), element (i, k) at src[i*si + k*sk], rounded to bf16 into rows of bf16_row(K)
// (the odd K's last pair padded with zero).
inline void pack_a_bf16(const float* src, I64 si, I64 sk, I64 M, I64 K, std::uint16_t* dst) {
  const I64 ld = bf16_row(K);
  for (I64 i = 0; i < M; ++i) {
    std::uint16_t* row = dst + i * ld;
    const float* s = src + i * si;
    if (sk == 1) {
      I64 k = 0;
#if defined(__AVX512BF16__)
      for (; k + 16 <= K; k += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + k), to_bf16x16(_mm512_loadu_ps(s + k)));
#endif
      for (; k < K; ++k) row[k] = to_bf16(s[k]);
    } else
      for (I64 k = 0; k < K; ++k) row[k] = to_bf16(s[k * sk]);
    if (ld > K) row[K] = 0;
  }
}

// bf16 elements pack_b_bf16 writes for B (K x N).
inline std::size_t packed_b_bf16_size(I64 K, I64 N) {
  return static_cast<std::size_t>(bf16_row(K)) * static_cast<std::size_t>((N + kNR - 1) / kNR * kNR);
}

// B (K x N), element (k, j) at src[k*sk + j*sn], rounded to bf16 into ceil(N / kNR)
// panels, panel q at dst + q*bf16_row(K)*kNR: for each pair p of k, kNR lanes of two
// bf16 (B(2p, j), B(2p+1, j)); zero padded past K and N.
inline void pack_b_bf16(const float* src, I64 sk, I64 sn, I64 K, I64 N, std::uint16_t* dst) {
  const I64 KP = bf16_row(K) / 2;
  for (I64 q0 = 0; q0 < N; q0 += kNR) {
    std::uint16_t* panel = dst + q0 * 2 * KP;
    const I64 nb = std::min<I64>(kNR, N - q0);
    for (I64 p = 0; p < KP; ++p) {
      std::uint16_t* out = panel + p * 2 * kNR;
      for (int e = 0; e < 2; ++e) {
        const I64 k = 2 * p + e;
        if (k >= K) {
          for (I64 j = 0; j < kNR; ++j) out[2 * j + e] = 0;
          continue;
        }
        const float* s = src + k * sk + q0 * sn;
        I64 j = 0;
#if defined(__AVX512BF16__)
        if (sn == 1 && e == 0 && k + 1 < K) {  // rows 2p and 2p+1 contiguous: 16 pairs per step
          const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                      23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
          for (; j + 16 <= nb; j += 16) {
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(to_bf16x16(_mm512_loadu_ps(s + j))),
                                                    to_bf16x16(_mm512_loadu_ps(s + sk + j)), 1);
            _mm512_storeu_si512(out + 2 * j, _mm512_permutexvar_epi16(interleave, both));
          }
          for (I64 t = j; t < nb; ++t) out[2 * t + 1] = to_bf16(s[sk + t]);  // the tail's odd lanes
          for (I64 t = nb; t < kNR; ++t) out[2 * t + 1] = 0;
          for (; j < nb; ++j) out[2 * j] = to_bf16(s[j]);
          for (; j < kNR; ++j) out[2 * j] = 0;
          ++e;  // row 2p+1 is done
          continue;
        }
#endif
        for (; j < nb; ++j) out[2 * j + e] = to_bf16(s[j * sn]);
        for (; j < kNR; ++j) out[2 * j + e] = 0;
      }
    }
  }
}

#if defined(__AVX512BF16__)
inline constexpr bool kHasBf16 = true;

// C rows (MR x n columns, n <= NV*16) = sum over KP pairs (+ bias[j]) (+ C when acc):
// pair p of A's row r at a + r*lda + p*ldp (rows of pack_a_bf16: lda = bf16_row(K),
// ldp = 2; a panel of pack_b_bf16 read as A: lda = 2, ldp = 2 kNR), b one packed panel of
// kNR = 64 columns.
template <int MR, int NV>
inline void tile_bf16(I64 KP, const std::uint16_t* a, I64 lda, I64 ldp, const std::uint16_t* b, float* c, I64 ldc,
                      int n, const float* bias, bool acc) {
  static_assert(kNR == 64, "the bf16 tile reads panels of 64 columns");
  __m512 cr[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NV; ++j) cr[r][j] = _mm512_setzero_ps();
  for (I64 p = 0; p < KP; ++p) {
    const std::uint16_t* bp = b + p * 2 * kNR;
    __m512bh bv[NV];
    for (int j = 0; j < NV; ++j) {
      bv[j] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(bp + 32 * j));
      simd::keep_in_register(bv[j]);
    }
    for (int r = 0; r < MR; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, a + r * lda + p * ldp, sizeof pair);
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      for (int j = 0; j < NV; ++j) cr[r][j] = _mm512_dpbf16_ps(cr[r][j], av, bv[j]);
    }
  }
  for (int j = 0; j < NV; ++j) {
    const int left = n - 16 * j;
    if (left <= 0) break;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
    const __m512 bj = bias ? _mm512_maskz_loadu_ps(m, bias + 16 * j) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      float* row = c + r * ldc + 16 * j;
      __m512 x = _mm512_add_ps(cr[r][j], bj);
      if (acc) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, row));
      _mm512_mask_storeu_ps(row, m, x);
    }
  }
}

// tile_bf16 over all M rows.
inline void tile_rows_bf16(I64 M, I64 KP, const std::uint16_t* a, I64 lda, I64 ldp, const std::uint16_t* b,
                           float* c, I64 ldc, int n, const float* bias, bool acc) {
  row_tiles(M, [&](auto mr, I64 i) {
    tile_bf16<decltype(mr)::value, kNV>(KP, a + i * lda, lda, ldp, b, c + i * ldc, ldc, n, bias, acc);
  });
}
#else
inline constexpr bool kHasBf16 = false;
#endif

}  // namespace gemm
SEQLAB_LEVEL_END
}  // namespace seqlab
