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
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#endif

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace gemm {

#if defined(__AVX512BF16__)
inline constexpr I64 kAmxK = 32;     // bf16 values of k per tile row (64 bytes)
inline constexpr I64 kAmxCols = 16;  // columns of a B tile and of a packed panel
inline constexpr I64 kAmxRows = 32;  // rows of C per register block (two A tiles)

// Whether this process runs its bf16 GEMMs on AMX: the CPU has AMX-TILE and AMX-BF16, the
// Linux kernel grants the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, which fails for
// instance when a thread's signal stack is too small for it), and SEQLAB_BF16_AMX is not
// "0". Asked once per process (the grant is process-wide); false means vdpbf16ps tiles.
inline bool amx_bf16_usable() {
  static const bool usable = [] {
    const char* env = std::getenv("SEQLAB_BF16_AMX");
    if (env != nullptr && std::strcmp(env, "0") == 0) return false;
    if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16")) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

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

// 16 bf16 of row k and 16 of row k+1 as 16 pairs (B(k, j), B(k+1, j)), one 32-bit word
// per column j.
inline __m512i pair_words(__m256i lo, __m256i hi) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23,
                                              7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(interleave, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

// 16 x 16 floats transposed in registers: r[i] holds row i before, column i after.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: (r_i, r_i+1) pairs of columns 4l..4l+3
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // u[g + c], lane l: rows g..g+3 of column c + 4l
    const __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 2]);
    const __m512d c = _mm512_castps_pd(t[g + 1]), d = _mm512_castps_pd(t[g + 3]);
    r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int c = 0; c < 4; ++c) {  // column c + 4l gathers lane l of r[c], r[4 + c], r[8 + c], r[12 + c]
    const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
    const __m512 w0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    t[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    t[c + 8] = _mm512_shuffle_f32x4(v0, w0, 0xdd);
    t[c + 4] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    t[c + 12] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// A (rows x K) stored transposed, element (i, k) at src[i + k*sk] (k's rows contiguous),
// rounded to bf16 into rows ld apart at dst (ld even), zero past K up to amx_k(K). Per 16
// rows of A and 32 values of k: the 16 pairs (A(i, k), A(i, k+1)) of each k pair as one
// vector of 32-bit words (two rows of the source, rounded and interleaved), the 16 x 16
// words transposed in registers, and each row's 64 bytes stored whole. Writes only
// columns [0, amx_k(K)) of each row: dst may point at column k0 (even) of a wider A.
inline void pack_columns_amx(const float* src, I64 sk, I64 rows, I64 K, I64 ld, std::uint16_t* dst) {
  const I64 kp = amx_k(K);
  for (I64 i0 = 0; i0 < rows; i0 += 16) {
    const I64 ni = std::min<I64>(16, rows - i0);
    const auto m = ni >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << ni) - 1u);
    for (I64 k0 = 0; k0 < kp; k0 += kAmxK) {
      __m512 words[16];
      for (I64 p = 0; p < 16; ++p) {
        const I64 k = k0 + 2 * p;
        const __m512 lo = k < K ? _mm512_maskz_loadu_ps(m, src + k * sk + i0) : _mm512_setzero_ps();
        const __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, src + (k + 1) * sk + i0) : _mm512_setzero_ps();
        words[p] = _mm512_castsi512_ps(pair_words(to_bf16x16(lo), to_bf16x16(hi)));
      }
      transpose16(words);  // words[l]: row i0 + l's 16 pairs of k from k0
      for (I64 l = 0; l < ni; ++l) _mm512_storeu_ps(dst + (i0 + l) * ld + k0, words[l]);
    }
  }
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
  } else {  // A stored transposed (si == 1): k's rows are contiguous
    pack_columns_amx(src, sk, rows, K, ld, dst);
  }
  std::fill(dst + rows * ld, dst + padded_rows * ld, std::uint16_t{0});
}

// Panels [q0, q1) of B (K x N) with contiguous rows, element (k, j) at src[k*sk + j],
// rounded to bf16, panel q at dst + q*panel_ld: rows 2p and 2p+1 interleaved, 16 pairs
// per step; each pair of rows is read across all the panels at once (whole cache lines,
// in order), not panel by panel down the rows (one line per row and panel, a stride the
// prefetcher misses). Writes pairs [0, amx_k(K) / 2) of each panel (zero past K and N):
// dst may point at pair p0 of wider panels (panel_ld = amx_k(K_all) * kAmxCols).
inline void pack_row_pairs_amx(const float* src, I64 sk, I64 K, I64 N, I64 q0, I64 q1, I64 panel_ld,
                               std::uint16_t* dst) {
  const I64 KP = amx_k(K) / 2;
  for (I64 p = 0; p < KP; ++p) {
    const I64 k = 2 * p;
    for (I64 q = q0; q < q1; ++q) {
      const I64 j0 = q * kAmxCols;
      const I64 nb = std::clamp<I64>(N - j0, 0, kAmxCols);
      const auto m = static_cast<__mmask16>((1u << nb) - 1u);
      const __m512 lo = k < K ? _mm512_maskz_loadu_ps(m, src + k * sk + j0) : _mm512_setzero_ps();
      const __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, src + (k + 1) * sk + j0) : _mm512_setzero_ps();
      _mm512_storeu_si512(dst + q * panel_ld + p * 2 * kAmxCols, pair_words(to_bf16x16(lo), to_bf16x16(hi)));
    }
  }
}

// Panels [q0, q1) of B (K x N), element (k, j) at src[k*sk + j*sn], rounded to bf16
// (see the layout above; zero past K and N).
inline void pack_panels_amx(const float* src, I64 sk, I64 sn, I64 K, I64 N, I64 q0, I64 q1, std::uint16_t* dst) {
  const I64 KP = amx_k(K) / 2;
  if (sn == 1) {
    pack_row_pairs_amx(src, sk, K, N, q0, q1, 2 * KP * kAmxCols, dst);
    return;
  }
  for (I64 q = q0; q < q1; ++q) {
    std::uint32_t* panel = reinterpret_cast<std::uint32_t*>(dst + q * KP * 2 * kAmxCols);
    const I64 j0 = q * kAmxCols;
    const I64 nb = std::clamp<I64>(N - j0, 0, kAmxCols);
    if (nb == 0) {
      std::fill(panel, panel + KP * kAmxCols, 0u);
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

// Rows [0, nr) x columns [0, nc) of a register block's 32 x 32 output (amx_block's emit
// buffer, rows 32 floats apart) written transposed, C(j, i) at c[j*ldc + i], or added to C
// when acc: 16 x 16 quarters transposed in registers, stored as whole vectors.
inline void store_block_transposed(const float* tile, I64 nr, I64 nc, float* c, I64 ldc, bool acc) {
  for (I64 ih = 0; ih < 2 && 16 * ih < nr; ++ih) {
    const I64 left = nr - 16 * ih;
    const auto m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
    for (I64 jh = 0; jh < 2 && 16 * jh < nc; ++jh) {
      __m512 r[16];
      for (int t = 0; t < 16; ++t) r[t] = _mm512_load_ps(tile + (16 * ih + t) * 2 * kAmxCols + 16 * jh);
      transpose16(r);
      const I64 cols = std::min<I64>(16, nc - 16 * jh);
      for (I64 j = 0; j < cols; ++j) {
        float* dst = c + (16 * jh + j) * ldc + 16 * ih;
        const __m512 x = acc ? _mm512_add_ps(r[j], _mm512_maskz_loadu_ps(m, dst)) : r[j];
        _mm512_mask_storeu_ps(dst, m, x);
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
