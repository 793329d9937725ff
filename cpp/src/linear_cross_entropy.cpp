#include "seqlab/linear_cross_entropy.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "seqlab/blas.hpp"
#include "seqlab/gemm_amx.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {
using simd::Batch;
// Rows per block: about 4 MiB of logits, 64 to 256 rows. The block's rows are the inner
// dimension of its weight-gradient GEMM (dW (V, D) += G^T x), which reads and writes all
// of dW: below ~128 rows that traffic dominates. At 1 thread, V = 4096, D = 128 (process
// CPU time, the three products 6.4 GFLOP): 16 rows 100 ms, 64 rows 62 ms, 128 rows 57 ms,
// 256 rows 53 ms, 512 rows 53 ms, 1024 rows 60 ms. Each row's softmax passes run on the
// row alone (16 KiB at V = 4096, in L1).
constexpr std::size_t kBlockFloats = std::size_t{1} << 20;
constexpr std::size_t kMinBlockRows = 64, kMaxBlockRows = 256;
constexpr std::size_t kElementGrain = 1 << 15;
constexpr std::size_t kAlign = 64;

std::size_t block_rows(std::size_t V) {
  return std::clamp<std::size_t>(kBlockFloats / std::max<std::size_t>(V, 1), kMinBlockRows, kMaxBlockRows);
}

// Offsets of a kernel's buffers inside its workspace, each aligned to kAlign bytes.
struct Layout {
  std::size_t bytes = 0;
  std::size_t take(std::size_t n) {
    const std::size_t at = (bytes + kAlign - 1) / kAlign * kAlign;
    bytes = at + n;
    return at;
  }
};

// The workspace given, aligned, or one allocated here when none or too small was given.
class Workspace {
 public:
  Workspace(void* given, std::size_t given_bytes, std::size_t needed) {
    if (given == nullptr || given_bytes < needed + kAlign) {
      own_.resize(needed + kAlign);
      given = own_.data();
    }
    const auto at = reinterpret_cast<std::uintptr_t>(given);
    base_ = static_cast<std::uint8_t*>(given) + ((kAlign - at % kAlign) % kAlign);
  }
  template <class T>
  T* at(std::size_t offset) const {
    return reinterpret_cast<T*>(base_ + offset);
  }

 private:
  std::vector<std::uint8_t> own_;
  std::uint8_t* base_ = nullptr;
};

// The fp32 kernel's workspace: a block of logits per share, a dW per share but the first.
struct Fp32Plan {
  std::size_t R, shares, logits, share_dw;
  Layout layout;
  Fp32Plan(std::size_t N, std::size_t D, std::size_t V, bool grad) {
    R = block_rows(V);
    const auto threads = static_cast<std::size_t>(get_num_threads());
    shares = std::min<std::size_t>(threads, std::max<std::size_t>((N + R - 1) / R, 1));
    logits = layout.take(shares * R * V * sizeof(float));
    share_dw = layout.take(grad ? (shares - 1) * V * D * sizeof(float) : 0);
  }
};

// One row of logits l (V,) in place: returns its loss (m - l_t) + log sum exp(l - m);
// when `grad`, leaves scale (softmax(l) - onehot(t)) in l.
float row_loss(float* l, std::size_t V, std::int64_t t, bool grad, float scale) {
  const int n = static_cast<int>(V);
  const float m = simd::row_max(l, n);
  const float lt = l[t];
  const float sum = simd::exp_sum(l, n, m);  // l <- exp(l - m)
  if (grad) {
    simd::scale_row(l, n, scale / sum);
    l[t] -= scale;
  }
  return (m - lt) + std::log(sum);
}

// A block's rows of logits in place: the loss of each row into loss, and with `grad` the
// scaled gradient G in place (zero rows for ignored targets).
void block_losses(float* logits, std::size_t ld, std::size_t rows, std::size_t V, const std::int64_t* target,
                  float* loss, std::int64_t ignore_index, bool grad, float scale) {
  for (std::size_t k = 0; k < rows; ++k) {
    float* l = logits + k * ld;
    const std::int64_t t = target[k];
    if (t == ignore_index) {
      loss[k] = 0.0f;
      if (grad) std::fill(l, l + V, 0.0f);
      continue;
    }
    loss[k] = row_loss(l, V, t, grad, scale);
  }
}

void linear_cross_entropy_fp32(const float* hidden, const float* weight, const std::int64_t* target, float* loss,
                               float* dhidden, float* dweight, std::size_t N, std::size_t D, std::size_t V,
                               std::int64_t ignore_index, float scale, void* workspace, std::size_t workspace_bytes) {
  const bool grad = dhidden != nullptr;
  const SerialBlas serial;
  const Fp32Plan plan(N, D, V, grad);
  const Workspace ws(workspace, workspace_bytes, plan.layout.bytes);
  const std::size_t R = plan.R, shares = plan.shares;
  // Fixed contiguous shares of the rows, one per thread (at most one per block), so the
  // sum of the shares' dW is the same for a given thread count whatever the schedule.
  const int d = static_cast<int>(D), v = static_cast<int>(V);
  parallel_for(shares, 1, [&](std::size_t s0, std::size_t s1) {
    for (std::size_t s = s0; s < s1; ++s) {
      float* logits = ws.at<float>(plan.logits) + s * R * V;
      const std::size_t r_begin = s * N / shares, r_end = (s + 1) * N / shares;
      float* dw = grad ? (s == 0 ? dweight : ws.at<float>(plan.share_dw) + (s - 1) * V * D) : nullptr;
      for (std::size_t i = r_begin; i < r_end; i += R) {
        const std::size_t rows = std::min(R, r_end - i);
        const int r = static_cast<int>(rows);
        const float* x = hidden + i * D;
        // logits (rows, V) = x (rows, D) @ W^T (D, V)
        if (D > 0) sgemm(false, true, r, v, d, 1.0f, x, d, weight, d, 0.0f, logits, v);
        else std::fill(logits, logits + rows * V, 0.0f);
        block_losses(logits, V, rows, V, target + i, loss + i, ignore_index, grad, scale);
        if (!grad || D == 0) continue;
        // dx (rows, D) = G (rows, V) @ W (V, D); dW (V, D) (+)= G^T (V, rows) @ x (rows, D)
        sgemm(false, false, r, d, v, 1.0f, logits, v, weight, d, 0.0f, dhidden + i * D, d);
        sgemm(true, false, v, d, r, 1.0f, logits, v, x, d, i == r_begin ? 0.0f : 1.0f, dw, d);
      }
    }
  });
  if (!grad || shares < 2 || D == 0) return;
  // dW = share 0's (written in place) + the others', in share order.
  parallel_for(V * D, kElementGrain, [&](std::size_t b, std::size_t e) {
    for (std::size_t s = 1; s < shares; ++s) {
      const float* part = ws.at<float>(plan.share_dw) + (s - 1) * V * D;
      simd::map2(dweight + b, part + b, dweight + b, e - b, [](Batch a, Batch p) { return a + p; });
    }
  });
}

#if defined(__AVX512BF16__)
using gemm::I64;
constexpr I64 kTileRows = gemm::kAmxRows;
// Rows of logits per block of the bf16 kernel: about 1 MiB of fp32 logits (in L2 with
// their two bf16 packs), 32 to 128 rows.
constexpr I64 kBf16BlockBytes = I64{1} << 20;
// The gradient G of a super-block of rows packed as B panels, in bf16: at most about 16 MiB.
constexpr I64 kGradBytes = I64{1} << 24;
// Columns of G (rows of dW) per work item of the weight-gradient product.
constexpr I64 kWeightCols = 8 * 2 * gemm::kAmxCols;

I64 round_up(I64 n, I64 m) { return (n + m - 1) / m * m; }

// The bf16 kernel's shapes and workspace: W^T and W packed as B (once per call), G of a
// super-block packed as B, the super-block's x^T packed as A, and per thread a block's
// logits (fp32) and its x and G packed as A.
struct Bf16Plan {
  I64 Vp, R, S, threads;
  std::size_t wt, w, gb, xt, xa, logits, ga;
  std::size_t xa_each, logits_each, ga_each;
  Layout layout;
  Bf16Plan(I64 N, I64 D, I64 V, bool grad) {
    Vp = gemm::amx_panels(V) * gemm::kAmxCols;  // a multiple of 32
    R = std::clamp<I64>(kBf16BlockBytes / (4 * Vp) / kTileRows * kTileRows, kTileRows, 4 * kTileRows);
    S = std::clamp<I64>(kGradBytes / (2 * Vp) / R * R, R, std::max<I64>(round_up(N, R), R));
    threads = get_num_threads();
    const auto u16 = sizeof(std::uint16_t);
    wt = layout.take(gemm::amx_packed_b_size(D, V) * u16);
    w = layout.take(grad ? gemm::amx_packed_b_size(V, D) * u16 : 0);
    gb = layout.take(grad ? gemm::amx_packed_b_size(S, Vp) * u16 : 0);
    xt = layout.take(grad ? static_cast<std::size_t>(round_up(D, kTileRows) * gemm::amx_lda(S)) * u16 : 0);
    xa_each = static_cast<std::size_t>(R * gemm::amx_lda(D)) * u16;
    logits_each = static_cast<std::size_t>(R * Vp) * sizeof(float);
    ga_each = grad ? static_cast<std::size_t>(R * gemm::amx_lda(V)) * u16 : 0;
    const auto t = static_cast<std::size_t>(threads);
    xa = layout.take(t * xa_each);
    logits = layout.take(t * logits_each);
    ga = layout.take(t * ga_each);
  }
};

// The 32 x 32 emit buffer's rows [0, nr) x columns [0, nc) into C (row-major, ldc), or
// added to C when acc.
void store_block(const float* tile, I64 nr, I64 nc, float* c, I64 ldc, bool acc) {
  for (I64 v = 0; v < 2 && 16 * v < nc; ++v) {
    const I64 left = nc - 16 * v;
    const auto m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
    for (I64 i = 0; i < nr; ++i) {
      float* row = c + i * ldc + 16 * v;
      __m512 x = _mm512_load_ps(tile + i * 2 * gemm::kAmxCols + 16 * v);
      if (acc) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, row));
      _mm512_mask_storeu_ps(row, m, x);
    }
  }
}

// A block's gradient rows G (rows x Vp fp32, zero past V, rows Vp apart) rounded to bf16
// once into both packs its products read: rows of A for dx = G W (ga, lda apart; rows
// [rows, padded) zero) and pairs of rows into the super-block's B panels for dW^T = x^T G
// (gb at the block's first pair, panels panel_ld apart; pairs up to padded / 2). Four
// panels (64 columns) at a time, so that each write stream stays on its panel's page.
void pack_gradient_block(const float* g, I64 Vp, I64 rows, I64 padded, std::uint16_t* ga, I64 lda,
                         std::uint16_t* gb, I64 panel_ld) {
  const I64 panels = Vp / gemm::kAmxCols;
  for (I64 q0 = 0; q0 < panels; q0 += 4) {
    const I64 q1 = std::min<I64>(q0 + 4, panels);
    for (I64 k = 0; k < padded; k += 2) {
      for (I64 q = q0; q < q1; ++q) {
        const I64 j0 = q * gemm::kAmxCols;
        const __m512 lo = k < rows ? _mm512_loadu_ps(g + k * Vp + j0) : _mm512_setzero_ps();
        const __m512 hi = k + 1 < rows ? _mm512_loadu_ps(g + (k + 1) * Vp + j0) : _mm512_setzero_ps();
        const __m256i blo = gemm::to_bf16x16(lo), bhi = gemm::to_bf16x16(hi);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ga + k * lda + j0), blo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ga + (k + 1) * lda + j0), bhi);
        _mm512_storeu_si512(gb + q * panel_ld + k * gemm::kAmxCols, gemm::pair_words(blo, bhi));
      }
    }
  }
}

// The fused op on AMX tiles, operands rounded to bf16, fp32 accumulation. W is packed
// twice per call (as W^T for the logits, as W for dx). Super-blocks of S rows (all rows
// when their G fits kGradBytes) are walked in order; in each, the pool's threads claim
// blocks of R rows: x_blk packed, logits = x_blk W^T (fp32, Vp columns), per row the loss
// and G in place, G packed as A and dx_blk = G W, and G's rows written as pairs of rows
// into the super-block's G packed as B panels (contiguous reads and writes). Then
// dW^T (D, V) (+)= x_S^T G over the super-block's rows, written transposed into dW (one
// accumulation over its rows per element, then added to the earlier super-blocks' sum),
// split over blocks of G's columns. Every output is one fixed sequence of fp32 operations:
// the same bits at any thread count.
void linear_cross_entropy_amx(const float* hidden, const float* weight, const std::int64_t* target, float* loss,
                              float* dhidden, float* dweight, I64 N, I64 D, I64 V, std::int64_t ignore_index,
                              float scale, void* workspace, std::size_t workspace_bytes) {
  const bool grad = dhidden != nullptr;
  const Bf16Plan plan(N, D, V, grad);
  const Workspace ws(workspace, workspace_bytes, plan.layout.bytes);
  const I64 Vp = plan.Vp, R = plan.R, npV = gemm::amx_panels(V), npD = gemm::amx_panels(D);
  std::uint16_t* wt = ws.at<std::uint16_t>(plan.wt);
  std::uint16_t* wp = ws.at<std::uint16_t>(plan.w);
  // W^T (D x V): element (k = d, j = v) at weight[v*D + d]; W (V x D) row-major.
  parallel_for(static_cast<std::size_t>(npV + (grad ? npD : 0)), 1, [&](std::size_t q0, std::size_t q1) {
    for (auto q = static_cast<I64>(q0); q < static_cast<I64>(q1); ++q) {
      if (q < npV) gemm::pack_panels_amx(weight, 1, D, D, V, q, q + 1, wt);
      else gemm::pack_panels_amx(weight, D, 1, V, D, q - npV, q - npV + 1, wp);
    }
  });
  for (I64 s0 = 0; s0 < N; s0 += plan.S) {
    const I64 srows = std::min(plan.S, N - s0), panel_ld = gemm::amx_k(srows) * gemm::kAmxCols;
    std::uint16_t* gb = ws.at<std::uint16_t>(plan.gb);
    std::atomic<std::size_t> slots{0};
    parallel_claim(static_cast<std::size_t>((srows + R - 1) / R), [&](const ClaimFn& next) {
      const std::size_t slot = slots.fetch_add(1);
      // The workspace holds plan.threads slots; a participant past them (the pool grew since
      // the plan was made, by set_num_threads on another thread) leaves the blocks to the others.
      if (slot >= static_cast<std::size_t>(plan.threads)) return;
      auto* xa = reinterpret_cast<std::uint16_t*>(ws.at<std::uint8_t>(plan.xa) + slot * plan.xa_each);
      auto* logits = reinterpret_cast<float*>(ws.at<std::uint8_t>(plan.logits) + slot * plan.logits_each);
      auto* ga = reinterpret_cast<std::uint16_t*>(ws.at<std::uint8_t>(plan.ga) + slot * plan.ga_each);
      for (std::size_t blk; next(blk);) {
        const I64 k0 = static_cast<I64>(blk) * R, i0 = s0 + k0, rows = std::min(R, srows - k0);
        const I64 padded = round_up(rows, kTileRows);
        // logits (padded, Vp) = x_blk (padded, D) @ W^T (D, Vp); the padding is zero
        gemm::pack_rows_amx(hidden + i0 * D, D, 1, rows, padded, D, xa);
        gemm::amx_block(padded, D, xa, wt, npV, [&](const float* tile, I64 r, I64 j0) {
          store_block(tile, kTileRows, 2 * gemm::kAmxCols, logits + r * Vp + j0, Vp, false);
        });
        block_losses(logits, static_cast<std::size_t>(Vp), static_cast<std::size_t>(rows),
                     static_cast<std::size_t>(V), target + i0, loss + i0, ignore_index, grad, scale);
        if (!grad) continue;
        for (I64 k = 0; k < rows; ++k) std::fill(logits + k * Vp + V, logits + (k + 1) * Vp, 0.0f);
        // G rounded once: as A for dx_blk (rows, D) = G (rows, V) @ W (V, D), and as the
        // super-block's B panels: pairs [k0 / 2, (k0 + padded) / 2) (zeros past the rows)
        pack_gradient_block(logits, Vp, rows, padded, ga, gemm::amx_lda(V), gb + k0 * gemm::kAmxCols, panel_ld);
        gemm::amx_block(padded, V, ga, wp, npD, [&](const float* tile, I64 r, I64 j0) {
          const I64 nr = std::min(kTileRows, rows - r), nc = std::min<I64>(2 * gemm::kAmxCols, D - j0);
          if (nr > 0 && nc > 0) store_block(tile, nr, nc, dhidden + (i0 + r) * D + j0, D, false);
        });
      }
    });
    if (!grad || D == 0) continue;
    // dW^T (D, V) (+)= x_S^T (D, srows) @ G (srows, V), written transposed into dW (V, D)
    std::uint16_t* xt = ws.at<std::uint16_t>(plan.xt);
    const I64 Dp = round_up(D, kTileRows);
    parallel_for(static_cast<std::size_t>(Dp / kTileRows), 1, [&](std::size_t g0, std::size_t g1) {
      const I64 r0 = static_cast<I64>(g0) * kTileRows, r1 = std::min(static_cast<I64>(g1) * kTileRows, D);
      const I64 padded = static_cast<I64>(g1 - g0) * kTileRows;
      gemm::pack_rows_amx(hidden + s0 * D + r0, 1, D, std::max<I64>(r1 - r0, 0), padded, srows,
                          xt + r0 * gemm::amx_lda(srows));
    });
    const bool acc = s0 > 0;
    const I64 chunks = (Vp + kWeightCols - 1) / kWeightCols;
    parallel_claim(static_cast<std::size_t>(chunks), [&](const ClaimFn& next) {
      for (std::size_t item; next(item);) {
        const I64 v0 = static_cast<I64>(item) * kWeightCols, cols = std::min(kWeightCols, Vp - v0);
        gemm::amx_block(Dp, srows, xt, gb + v0 * gemm::amx_k(srows), cols / gemm::kAmxCols,
                        [&](const float* tile, I64 r, I64 j0) {
                          const I64 nr = std::min(kTileRows, D - r);
                          const I64 nc = std::min<I64>(2 * gemm::kAmxCols, V - v0 - j0);
                          if (nr > 0 && nc > 0)
                            gemm::store_block_transposed(tile, nr, nc, dweight + (v0 + j0) * D + r, D, acc);
                        });
      }
    });
  }
}
#endif
}  // namespace

std::size_t linear_cross_entropy_workspace(std::size_t N, std::size_t D, std::size_t V, bool grad, bool bf16) {
#if defined(__AVX512BF16__)
  if (bf16)
    return Bf16Plan(static_cast<I64>(N), static_cast<I64>(D), static_cast<I64>(V), grad).layout.bytes + kAlign;
#endif
  if (bf16) return 0;
  return Fp32Plan(N, D, V, grad).layout.bytes + kAlign;
}

void linear_cross_entropy(const float* hidden, const float* weight, const std::int64_t* target, float* loss,
                          float* dhidden, float* dweight, std::size_t N, std::size_t D, std::size_t V,
                          std::int64_t ignore_index, float scale, bool bf16, void* workspace,
                          std::size_t workspace_bytes) {
  const bool grad = dhidden != nullptr;
  if (bf16) {
#if defined(__AVX512BF16__)
    if (!gemm::amx_bf16_usable())
      throw std::runtime_error("linear_cross_entropy: the bf16 fused op runs on AMX tiles, which this process "
                               "cannot use (bf16_gemm_engine() is not 'amx')");
#else
    throw std::runtime_error("linear_cross_entropy: the bf16 fused op needs AVX512_BF16 and AMX; this kernel "
                             "level has neither");
#endif
  }
  if (grad && N == 0) std::fill(dweight, dweight + V * D, 0.0f);
  if (N == 0 || V == 0) return;
#if defined(__AVX512BF16__)
  if (bf16)
    return linear_cross_entropy_amx(hidden, weight, target, loss, dhidden, dweight, static_cast<I64>(N),
                                    static_cast<I64>(D), static_cast<I64>(V), ignore_index, scale, workspace,
                                    workspace_bytes);
#endif
  linear_cross_entropy_fp32(hidden, weight, target, loss, dhidden, dweight, N, D, V, ignore_index, scale, workspace,
                            workspace_bytes);
}

SEQLAB_LEVEL_END
}  // namespace seqlab
