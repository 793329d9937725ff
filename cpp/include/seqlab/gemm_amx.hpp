// The AMX (Advanced Matrix Extensions) bf16 GEMM block, the engine of the bf16 GEMMs on
// CPUs with AMX-BF16 (Sapphire Rapids and later), with its packing helpers. Level code of
// the AVX512_BF16 level only; the AMX instructions are enabled per function (target
// attribute), and used only after amx_bf16_usable() said the CPU has them and the kernel
// granted this process the tile data state.
//
// One TDPBF16PS multiplies a 16 x 32 bf16 tile of A by a 32 x 16 bf16 tile of B (its k in
// pairs, as vdpbf16ps reads them) into a 16 x 16 fp32 tile of C: 16,384 flops per
// instruction against vdpbf16ps's 64. On this project's Sapphire Rapids VM one core
// measures ~1,750 GFLOP/s of TDPBF16PS in registers, ~75 GFLOP/s of vdpbf16ps (which
// issues about one every two cycles) and ~155 GFLOP/s of fp32 FMA: vdpbf16ps alone is
// slower than fp32 there, AMX is what makes bf16 pay.
//
// Layouts (k padded with zeros to a multiple of 32, kAmxK):
// - A: rows of amx_k(K) bf16, amx_lda(K) apart (pack_rows_amx), a block's rows padded with
//   zero rows to a multiple of 32 (two A tiles);
// - B: panels of 16 columns (pack_panels_amx), panel q at q * amx_k(K) * 16: for each
//   pair p of k, 16 lanes of two bf16 (B(2p, j), B(2p+1, j)), 64 bytes; the panel count
//   rounded up to even (zero panels), two B tiles per register block.
// Every C element is one fp32 accumulation over k in tile order, whatever the rows'
// blocking or the thread count.
#pragma once
#include "seqlab/level.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "seqlab/gemm_microkernel.hpp"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace gemm {

#if defined(__AVX512BF16__)
inline constexpr I64 kAmxK = 32;     // bf16 values of k per tile row (64 bytes)
inline constexpr I64 kAmxCols = 16;  // columns of a B tile and of a packed panel
inline constexpr I64 kAmxRows = 32;  // rows of C per register block (two A tiles)

// k padded to the tiles' multiple.
inline I64 amx_k(I64 K) { return (K + kAmxK - 1) / kAmxK * kAmxK; }

// bf16 elements between packed rows of A: amx_k(K) and one more cache line, so that the 16
// rows of an A tile fall into different L1 sets (a stride of 4 KiB, K = 2,048, would put
// all 16 in one 12-way set); the extra line is never read.
inline I64 amx_lda(I64 K) { return amx_k(K) + kAmxK; }

// Packed panels (16 columns each) of a B with N columns: even.
inline I64 amx_panels(I64 N) { return (N + 2 * kAmxCols - 1) / (2 * kAmxCols) * 2; }

// bf16 elements pack_panels_amx writes for B (K x N).
inline std::size_t amx_packed_b_size(I64 K, I64 N) {
  return static_cast<std::size_t>(amx_panels(N) * kAmxCols * amx_k(K));
}

// rows x K of A, element (i, k) at src[i*si + k*sk], rounded to bf16 into rows of
// amx_lda(K) at dst (zero padded past K up to amx_k(K)); rows [rows, padded_rows) are zero.
inline void pack_rows_amx(const float* src, I64 si, I64 sk, I64 rows, I64 padded_rows, I64 K, std::uint16_t* dst) {
  const I64 ld = amx_lda(K), kp = amx_k(K);
  if (sk == 1 || si != 1) {
    for (I64 i = 0; i < rows; ++i) {
      std::uint16_t* row = dst + i * ld;
      const float* s = src + i * si;
      I64 k = 0;
      if (sk == 1)
        for (; k + 16 <= K; k += 16)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + k), to_bf16x16(_mm512_loadu_ps(s + k)));
      for (; k < K; ++k) row[k] = to_bf16(s[k * sk]);
      std::fill(row + K, row + kp, std::uint16_t{0});
    }
  } else {  // A stored transposed (si == 1): k's rows are contiguous; pairs of k interleaved
    for (I64 i = 0; i < rows; ++i) std::fill(dst + i * ld + K, dst + i * ld + kp, std::uint16_t{0});
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23,
                                                7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i rows16 = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32(static_cast<int>(ld / 2)));
    for (I64 k = 0; k < K; k += 2) {  // 16 rows' words (A(i, k), A(i, k+1)) per scatter
      const float* s0 = src + k * sk;
      const float* s1 = s0 + sk;
      const bool pair = k + 1 < K;
      I64 i = 0;
      for (; i + 16 <= rows; i += 16) {
        const __m512 lo = _mm512_loadu_ps(s0 + i);
        const __m512 hi = pair ? _mm512_loadu_ps(s1 + i) : _mm512_setzero_ps();
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(to_bf16x16(lo)), to_bf16x16(hi), 1);
        _mm512_i32scatter_epi32(dst + i * ld + k, rows16, _mm512_permutexvar_epi16(interleave, both), 4);
      }
      for (; i < rows; ++i) {
        dst[i * ld + k] = to_bf16(s0[i]);
        dst[i * ld + k + 1] = pair ? to_bf16(s1[i]) : 0;
      }
    }
  }
  std::fill(dst + rows * ld, dst + padded_rows * ld, std::uint16_t{0});
}

// Panels [q0, q1) of B (K x N), element (k, j) at src[k*sk + j*sn], rounded to bf16
// (see the layout above; zero past K and N).
inline void pack_panels_amx(const float* src, I64 sk, I64 sn, I64 K, I64 N, I64 q0, I64 q1, std::uint16_t* dst) {
  const I64 KP = amx_k(K) / 2;
  for (I64 q = q0; q < q1; ++q) {
    std::uint32_t* panel = reinterpret_cast<std::uint32_t*>(dst + q * KP * 2 * kAmxCols);
    const I64 j0 = q * kAmxCols;
    const I64 nb = std::clamp<I64>(N - j0, 0, kAmxCols);
    if (nb == 0) {
      std::fill(panel, panel + KP * kAmxCols, 0u);
    } else if (sn == 1) {  // rows of B contiguous: rows 2p and 2p+1 interleaved, 16 pairs per step
      const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                  23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
      const auto m = static_cast<__mmask16>((1u << nb) - 1u);
      for (I64 p = 0; p < KP; ++p) {
        const I64 k = 2 * p;
        const __m512 lo = k < K ? _mm512_maskz_loadu_ps(m, src + k * sk + j0) : _mm512_setzero_ps();
        const __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, src + (k + 1) * sk + j0) : _mm512_setzero_ps();
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(to_bf16x16(lo)), to_bf16x16(hi), 1);
        _mm512_storeu_si512(panel + p * kAmxCols, _mm512_permutexvar_epi16(interleave, both));
      }
    } else if (sk == 1) {  // columns of B contiguous (B = W^T): a pair of k is one 32-bit word of a row
      alignas(64) std::uint16_t row[2 * 4096];
      for (I64 p0 = 0; p0 < KP; p0 += 4096) {  // k in chunks of 8192 values
        const I64 pn = std::min<I64>(4096, KP - p0);
        for (I64 j = 0; j < kAmxCols; ++j) {
          if (j < nb) {
            const float* s = src + (j0 + j) * sn + 2 * p0;
            const I64 kn = std::clamp<I64>(K - 2 * p0, 0, 2 * pn);
            I64 k = 0;
            for (; k + 16 <= kn; k += 16)
              _mm256_store_si256(reinterpret_cast<__m256i*>(row + k), to_bf16x16(_mm512_loadu_ps(s + k)));
            for (; k < kn; ++k) row[k] = to_bf16(s[k]);
            std::fill(row + kn, row + 2 * pn, std::uint16_t{0});
          } else {
            std::fill(row, row + 2 * pn, std::uint16_t{0});
          }
          for (I64 p = 0; p < pn; ++p) {
            std::uint32_t word;
            std::memcpy(&word, row + 2 * p, sizeof word);
            panel[(p0 + p) * kAmxCols + j] = word;
          }
        }
      }
    } else {
      auto* half = reinterpret_cast<std::uint16_t*>(panel);
      for (I64 p = 0; p < KP; ++p)
        for (I64 j = 0; j < kAmxCols; ++j)
          for (int e = 0; e < 2; ++e) {
            const I64 k = 2 * p + e;
            half[2 * (p * kAmxCols + j) + e] = j < nb && k < K ? to_bf16(src[k * sk + (j0 + j) * sn]) : 0;
          }
    }
  }
}

// The tile configuration: palette 1, every tile 16 rows of 64 bytes.
struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// C for padded_rows (a multiple of 32) rows of packed A (rows of amx_lda(K) bf16) against
// npanels (even) packed panels of B: for each register block of 32 rows x 32 columns,
// the four C tiles accumulate over all of k, are stored to a 32 x 32 float buffer and
// handed to emit(buffer, first_row, first_column). Configures the calling thread's tiles
// and releases them at the end.
template <class Emit>
__attribute__((target("amx-tile,amx-bf16"))) void amx_block(I64 padded_rows, I64 K, const std::uint16_t* a,
                                                             const std::uint16_t* b, I64 npanels, Emit&& emit) {
  const I64 KA = amx_k(K), steps = KA / kAmxK, panel = KA * kAmxCols;
  const AmxTileConfig config;
  _tile_loadconfig(&config);
  alignas(64) float out[kAmxRows * 2 * kAmxCols];
  constexpr I64 ldo = 2 * kAmxCols * static_cast<I64>(sizeof(float));
  const I64 ld = amx_lda(K), lda = ld * static_cast<I64>(sizeof(std::uint16_t));
  for (I64 q = 0; q < npanels; q += 2) {
    const std::uint16_t* b0 = b + q * panel;
    const std::uint16_t* b1 = b0 + panel;
    for (I64 r = 0; r < padded_rows; r += kAmxRows) {
      const std::uint16_t* a0 = a + r * ld;
      const std::uint16_t* a1 = a0 + 16 * ld;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (I64 s = 0; s < steps; ++s) {
        _tile_loadd(4, a0 + s * kAmxK, lda);
        _tile_loadd(5, a1 + s * kAmxK, lda);
        _tile_loadd(6, b0 + s * kAmxK * kAmxCols, 64);
        _tile_loadd(7, b1 + s * kAmxK * kAmxCols, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, out, ldo);
      _tile_stored(1, out + kAmxCols, ldo);
      _tile_stored(2, out + 16 * 2 * kAmxCols, ldo);
      _tile_stored(3, out + 16 * 2 * kAmxCols + kAmxCols, ldo);
      emit(static_cast<const float*>(out), r, q * kAmxCols);
    }
  }
  _tile_release();
}
#endif

}  // namespace gemm
SEQLAB_LEVEL_END
}  // namespace seqlab
