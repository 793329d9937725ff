#include "seqlab/linear.hpp"

#include <xtensor/xtensor.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "seqlab/activations.hpp"
#include "seqlab/blas.hpp"
#include "seqlab/gemm_amx.hpp"
#include "seqlab/gemm_microkernel.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {
using simd::Batch;
constexpr std::size_t kElementGrain = 1 << 15;  // elements per task for memory-bound loops
// Output rows per GEMM call inside a thread's part: ~4 MiB of output, so the epilogue
// reads the block from cache while the GEMM still packs W only a few times per part.
constexpr std::size_t kBlockBytes = std::size_t{1} << 22;
constexpr const char* kNoBf16Gemm =
    "bf16 GEMMs need AVX512_BF16 and the x86-64-v4-bf16 kernel level; this level has none";

// Bias and activation over rows [0, rows) of z (in place, when y == z) or into y.
void epilogue(float* z, float* y, const float* b, std::size_t rows, std::size_t N, Activation act) {
  const auto add = [](Batch a, Batch c) { return a + c; };
  for (std::size_t r = 0; r < rows; ++r) {
    float* zr = z + r * N;
    float* yr = y + r * N;
    if (b != nullptr) simd::map2(zr, b, zr, N, add);
    switch (act) {
      case Activation::kNone:
        if (yr != zr) std::copy(zr, zr + N, yr);
        break;
      case Activation::kRelu:
        simd::map1(zr, yr, N, [](Batch v) { return act::relu(v); });
        break;
      case Activation::kGelu:
        simd::map1(zr, yr, N, [](Batch v) { return act::gelu_exact(v); });
        break;
      case Activation::kGeluTanh:
        simd::map1(zr, yr, N, [](Batch v) { return act::gelu_tanh(v); });
        break;
    }
  }
}

// dz = grad_y * act'(saved) over n elements.
void activation_grad(const float* g, const float* saved, float* dz, std::size_t n, Activation act) {
  parallel_for(n, kElementGrain, [&](std::size_t b, std::size_t e) {
    switch (act) {
      case Activation::kNone:
        std::copy(g + b, g + e, dz + b);
        break;
      case Activation::kRelu:
        simd::map2(g + b, saved + b, dz + b, e - b, [](Batch gv, Batch y) { return act::relu_grad(gv, y); });
        break;
      case Activation::kGelu:
        simd::map2(g + b, saved + b, dz + b, e - b, [](Batch gv, Batch v) { return act::gelu_exact_grad(gv, v); });
        break;
      case Activation::kGeluTanh:
        simd::map2(g + b, saved + b, dz + b, e - b, [](Batch gv, Batch v) { return act::gelu_tanh_grad(gv, v); });
        break;
    }
  });
}


// dz = grad_y * act'(saved) (M x N) into `buffer`, or grad_y itself without an activation.
const float* pre_activation_grad(const float* grad_y, const float* saved, std::size_t M, std::size_t N,
                                 Activation act, xt::xtensor<float, 1>& buffer) {
  if (act == Activation::kNone || M == 0 || N == 0) return grad_y;
  buffer = xt::xtensor<float, 1>::from_shape({M * N});
  activation_grad(grad_y, saved, buffer.data(), M * N, act);
  return buffer.data();
}

// db[c0, c1) += sum over the M rows of dz[:, c0, c1), row by row.
void bias_grad_columns(const float* dz, float* db, std::size_t M, std::size_t N, std::size_t c0, std::size_t c1) {
  for (std::size_t r = 0; r < M; ++r) {
    const float* gr = dz + r * N;
    simd::map2(db + c0, gr + c0, db + c0, c1 - c0, [](Batch a, Batch v) { return a + v; });
  }
}

// db (N,) += sum over the M rows of dz; each task owns a block of columns and adds rows in
// order, so the sum does not depend on the thread count.
void bias_grad(const float* dz, float* db, std::size_t M, std::size_t N) {
  const std::size_t grain = std::max<std::size_t>(64, kElementGrain / std::max<std::size_t>(M, 1));
  parallel_for(N, grain, [&](std::size_t c0, std::size_t c1) { bias_grad_columns(dz, db, M, N, c0, c1); });
}

#if defined(__AVX512BF16__)
using gemm::I64;
// Rows of C per work item of the bf16 GEMM at most (a multiple of the tile's rows): the
// item's packed A rows (96 x K bf16) stay in L2 while every B panel streams past them.
constexpr I64 kBf16BlockRows = 16 * gemm::kMR;

// A GEMM operand: element (i, j) at data[i*si + j*sj].
struct Operand {
  const float* data;
  I64 si, sj;
};

// B (K x N) packed into panels (gemm::pack_b_bf16), in parallel over the panels.
std::vector<std::uint16_t> pack_panels_bf16(Operand b, I64 K, I64 N) {
  constexpr I64 NR = gemm::kNR;
  const I64 KP = gemm::bf16_row(K) / 2;
  std::vector<std::uint16_t> packed(gemm::packed_b_bf16_size(K, N));
  parallel_for(static_cast<std::size_t>((N + NR - 1) / NR), 1, [&](std::size_t p0, std::size_t p1) {
    for (auto p = static_cast<I64>(p0); p < static_cast<I64>(p1); ++p)
      gemm::pack_b_bf16(b.data + p * NR * b.sj, b.si, b.sj, K, std::min(NR, N - p * NR),
                        packed.data() + p * 2 * KP * NR);
  });
  return packed;
}

using gemm::amx_bf16_usable;

// Rows of A per work item of the AMX GEMM at most: ~32 KiB of packed A, which stays in L1
// while the B panels stream past it from L2.
constexpr I64 kAmxBlockBytes = I64{1} << 15;

// Where a GEMM writes C (M x N): element (i, j) at c[i*ldc + j], or at c[j*ldc + i]
// when transposed.
struct Output {
  float* c;
  I64 ldc;
  bool transposed;
};

// C = A (M x K) B (K x N) (+ bias[j], only when not transposed) (+ C when acc) on AMX,
// operands rounded to bf16, fp32 accumulation. B is packed once, in parallel over its
// panels; then the pool's threads claim blocks of C's rows: each packs its rows of A,
// runs the AMX register blocks over every panel pair (gemm::amx_block), adds the bias and
// C into each 32 x 32 block as it leaves the tiles, and calls done(first_row, rows) while
// the block is in cache (the epilogue).
template <class Done>
void gemm_amx(I64 M, I64 N, I64 K, Operand a, Operand b, Output out, const float* bias, bool acc, Done&& done) {
  if (M == 0 || N == 0) return;
  constexpr I64 R = gemm::kAmxRows;
  const I64 lda = gemm::amx_lda(K), npanels = gemm::amx_panels(N);
  std::vector<std::uint16_t> bp(gemm::amx_packed_b_size(K, N));
  parallel_for(static_cast<std::size_t>(npanels), 1, [&](std::size_t q0, std::size_t q1) {
    gemm::pack_panels_amx(b.data, b.si, b.sj, K, N, static_cast<I64>(q0), static_cast<I64>(q1), bp.data());
  });
  const I64 parts = 2 * static_cast<I64>(get_num_threads());
  const I64 per_part = (M + parts - 1) / parts;
  const I64 max_rows = std::max<I64>(R, kAmxBlockBytes / std::max<I64>(2 * lda, 1) / R * R);
  const I64 block = std::clamp<I64>((per_part + R - 1) / R * R, R, max_rows);
  parallel_claim(static_cast<std::size_t>((M + block - 1) / block), [&](const ClaimFn& next) {
    std::vector<std::uint16_t> ap(static_cast<std::size_t>(block * lda));
    for (std::size_t blk; next(blk);) {
      const I64 i0 = static_cast<I64>(blk) * block, rows = std::min(block, M - i0);
      const I64 padded = (rows + R - 1) / R * R;
      gemm::pack_rows_amx(a.data + i0 * a.si, a.si, a.sj, rows, padded, K, ap.data());
      gemm::amx_block(padded, K, ap.data(), bp.data(), npanels, [&](const float* tile, I64 r, I64 j0) {
        const I64 nr = std::min(R, rows - r), nc = std::min<I64>(2 * gemm::kAmxCols, N - j0);
        if (nc <= 0) return;
        if (out.transposed) {
          gemm::store_block_transposed(tile, nr, nc, out.c + j0 * out.ldc + i0 + r, out.ldc, acc);
          return;
        }
        for (I64 v = 0; v < 2; ++v) {
          const I64 left = nc - 16 * v;
          if (left <= 0) break;
          const auto m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
          const __m512 bv = bias ? _mm512_maskz_loadu_ps(m, bias + j0 + 16 * v) : _mm512_setzero_ps();
          for (I64 i = 0; i < nr; ++i) {
            float* row = out.c + (i0 + r + i) * out.ldc + j0 + 16 * v;
            __m512 x = _mm512_add_ps(_mm512_load_ps(tile + i * 2 * gemm::kAmxCols + 16 * v), bv);
            if (acc) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, row));
            _mm512_mask_storeu_ps(row, m, x);
          }
        }
      });
      done(i0, rows);
    }
  });
}

// Columns of C per work item of gemm_amx_columns at most: ~512 KiB of packed B at K = 2,048.
constexpr I64 kAmxColumnChunk = 4 * 2 * gemm::kAmxCols;

// C = A (M x K) B (K x N) (+ C when acc) on AMX as gemm_amx, for a short A (few rows) and a long B (the weight gradient: A = x^T,
// K = M rows of the batch, B = dz): A is packed whole once (it stays in L2), and the
// pool's threads claim chunks of kAmxColumnChunk columns of B, each packing its chunk
// and running every row of A against it while it is in cache, so B, the large operand,
// is read from memory once. Output written transposed when out.transposed; no bias.
void gemm_amx_columns(I64 M, I64 N, I64 K, Operand a, Operand b, Output out, bool acc) {
  if (M == 0 || N == 0) return;
  constexpr I64 R = gemm::kAmxRows, CR = 2 * gemm::kAmxCols;
  const I64 lda = gemm::amx_lda(K), padded = (M + R - 1) / R * R;
  const I64 parts = 2 * static_cast<I64>(get_num_threads());  // chunks: about two per thread or more
  const I64 C = std::clamp<I64>(((N + parts - 1) / parts + CR - 1) / CR * CR, CR, kAmxColumnChunk);
  std::vector<std::uint16_t> ap(static_cast<std::size_t>(padded * lda));
  parallel_for(static_cast<std::size_t>(padded / R), 1, [&](std::size_t g0, std::size_t g1) {
    const I64 r0 = static_cast<I64>(g0) * R, r1 = std::min(static_cast<I64>(g1) * R, M);
    gemm::pack_rows_amx(a.data + r0 * a.si, a.si, a.sj, std::max<I64>(r1 - r0, 0),
                        static_cast<I64>(g1 - g0) * R, K, ap.data() + r0 * lda);
  });
  parallel_claim(static_cast<std::size_t>((N + C - 1) / C), [&](const ClaimFn& next) {
    std::vector<std::uint16_t> bp(gemm::amx_packed_b_size(K, C));  // this thread's chunk of B
    for (std::size_t chunk; next(chunk);) {
      const I64 j0 = static_cast<I64>(chunk) * C, cols = std::min(C, N - j0);
      const I64 npanels = gemm::amx_panels(cols);
      gemm::pack_panels_amx(b.data + j0 * b.sj, b.si, b.sj, K, cols, 0, npanels, bp.data());
      gemm::amx_block(padded, K, ap.data(), bp.data(), npanels, [&](const float* tile, I64 r, I64 jc) {
        const I64 nr = std::min(R, M - r), nc = std::min<I64>(2 * gemm::kAmxCols, cols - jc);
        if (nr <= 0 || nc <= 0) return;
        if (out.transposed) {
          gemm::store_block_transposed(tile, nr, nc, out.c + (j0 + jc) * out.ldc + r, out.ldc, acc);
          return;
        }
        for (I64 i = 0; i < nr; ++i)
          for (I64 j = 0; j < nc; ++j) {
            float* dst = out.c + (r + i) * out.ldc + j0 + jc + j;
            *dst = (acc ? *dst : 0.0f) + tile[i * 2 * gemm::kAmxCols + j];
          }
      });
    }
  });
}

// C (M x N, row-major) = A (M x K) B (K x N) (+ bias[j]) (+ C when acc), operands
// rounded to bf16, fp32 accumulation: on AMX where amx_bf16_usable(), else as follows.
// B is packed once, in parallel over its panels; then the pool's threads claim blocks of
// C's rows: each packs its rows of A, runs the micro-kernel's tiles over every panel and
// calls done(first_row, rows) while the block is in cache (the epilogue). An A stored
// transposed (a.si == 1: dz^T of the weight gradient) is packed once as B's panels are,
// its pairs along k read with one vector conversion per 16, and read by the tiles in that
// layout, 64 rows per block.
template <class Done>
void gemm_bf16(I64 M, I64 N, I64 K, Operand a, Operand b, float* c, const float* bias, bool acc, Done&& done) {
  if (M == 0 || N == 0) return;
  if (amx_bf16_usable()) return gemm_amx(M, N, K, a, b, {c, N, false}, bias, acc, std::forward<Done>(done));
  constexpr I64 NR = gemm::kNR;
  const I64 KP = gemm::bf16_row(K) / 2;
  const I64 npanels = (N + NR - 1) / NR;
  const std::vector<std::uint16_t> bp = pack_panels_bf16(b, K, N);
  const bool a_panels = a.si == 1 && a.sj != 1;
  std::vector<std::uint16_t> ap_all;
  I64 block = NR;
  if (a_panels) {
    ap_all = pack_panels_bf16({a.data, a.sj, a.si}, K, M);
  } else {
    const I64 parts = 2 * static_cast<I64>(get_num_threads());
    const I64 per_part = (M + parts - 1) / parts;
    block = std::clamp<I64>((per_part + gemm::kMR - 1) / gemm::kMR * gemm::kMR, gemm::kMR, kBf16BlockRows);
  }
  const I64 lda = a_panels ? 2 : 2 * KP, ldp = a_panels ? 2 * NR : 2;
  parallel_claim(static_cast<std::size_t>((M + block - 1) / block), [&](const ClaimFn& next) {
    std::vector<std::uint16_t> ap(a_panels ? 0 : static_cast<std::size_t>(block * lda));
    for (std::size_t blk; next(blk);) {
      const I64 i0 = static_cast<I64>(blk) * block, rows = std::min(block, M - i0);
      const std::uint16_t* ablock = ap.data();
      if (a_panels)
        ablock = ap_all.data() + i0 * 2 * KP;  // panel i0 / NR (i0 is a multiple of NR)
      else
        gemm::pack_a_bf16(a.data + i0 * a.si, a.si, a.sj, rows, K, ap.data());
      for (I64 p = 0; p < npanels; ++p)
        gemm::tile_rows_bf16(rows, KP, ablock, lda, ldp, bp.data() + p * 2 * KP * NR, c + i0 * N + p * NR, N,
                             static_cast<int>(std::min(NR, N - p * NR)), bias ? bias + p * NR : nullptr, acc);
      done(i0, rows);
    }
  });
}
#endif
}  // namespace

void linear_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                    std::size_t K, std::size_t N, Activation act, float* pre) {
  if (M == 0 || N == 0) return;
  float* z = pre != nullptr ? pre : y;  // where the GEMM writes x w^T
  if (K == 0) std::fill(z, z + M * N, 0.0f);
  const SerialBlas serial;
  // Blocks of rows, claimed dynamically by the pool's threads: at least ~4 MFLOP each, at
  // most kBlockBytes of output, and about two per thread (each block packs w again, ~1%
  // at M = 4096), so a thread slowed by another process hands its last block to the others.
  const std::size_t row_flops = 2 * N * std::max<std::size_t>(K, 1);
  const std::size_t min_rows = std::max<std::size_t>(1, (std::size_t{1} << 22) / row_flops);
  const std::size_t max_rows = std::max<std::size_t>(16, kBlockBytes / (sizeof(float) * N));
  const std::size_t parts = 2 * static_cast<std::size_t>(get_num_threads());
  const std::size_t per_thread = (M + parts - 1) / parts;
  const std::size_t block = std::max(min_rows, std::min(max_rows, per_thread));
  parallel_claim((M + block - 1) / block, [&](const ClaimFn& next) {
    for (std::size_t blk; next(blk);) {
      const std::size_t i = blk * block;
      const std::size_t rows = std::min(block, M - i);
      // z rows (rows, N) = x rows (rows, K) @ w^T (K, N)
      if (K > 0)
        sgemm(false, true, static_cast<int>(rows), static_cast<int>(N), static_cast<int>(K), 1.0f, x + i * K,
              static_cast<int>(K), w, static_cast<int>(K), 0.0f, z + i * N, static_cast<int>(N));
      if (b != nullptr || act != Activation::kNone || z != y) epilogue(z + i * N, y + i * N, b, rows, N, act);
    }
  });
}

void linear_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                     float* db, std::size_t M, std::size_t K, std::size_t N, Activation act,
                     const float* saved) {
  const int m = static_cast<int>(M), k = static_cast<int>(K), n = static_cast<int>(N);
  const SerialBlas serial;
  xt::xtensor<float, 1> dz_buffer;
  const float* g = pre_activation_grad(grad_y, saved, M, N, act, dz_buffer);
  if (dx != nullptr && K > 0 && N == 0) std::fill(dx, dx + M * K, 0.0f);
  // dx (M, K) = dz (M, N) @ w (N, K) and dw (N, K) += dz^T (N, M) @ x (M, K), each split by
  // rows of its output as sgemm_rows_parallel splits it (the same parts, so the same bits
  // for a given thread count), every part one serial OpenBLAS call; the parts of both
  // products are claimed in one parallel region: no barrier between the products, and a
  // thread done early with its part of one (or slowed by another process) is not waited
  // for while parts remain. The part of dw's rows [r0, r1) also sums db[r0, r1) (dz's
  // columns, each over the rows in order as bias_grad: the bits do not depend on the split).
  const bool with_dx = dx != nullptr && K > 0 && N > 0, with_dw = dw != nullptr && M > 0 && K > 0;
  const std::size_t dx_rows = sgemm_part_rows(m, k, n), dw_rows = sgemm_part_rows(n, k, m);
  const std::size_t dx_parts = with_dx ? (M + dx_rows - 1) / dx_rows : 0;
  const std::size_t dw_parts = with_dw ? (N + dw_rows - 1) / dw_rows : 0;
  parallel_claim(dx_parts + dw_parts, [&](const ClaimFn& next) {
    for (std::size_t p; next(p);) {
      if (p < dx_parts) {
        sgemm_rows(false, false, p * dx_rows, std::min(M, (p + 1) * dx_rows), k, n, 1.0f, g, n, w, k, 0.0f, dx, k);
        continue;
      }
      const std::size_t r0 = (p - dx_parts) * dw_rows, r1 = std::min(N, r0 + dw_rows);
      sgemm_rows(true, false, r0, r1, k, m, 1.0f, g, n, x, k, 1.0f, dw, k);
      if (db != nullptr) bias_grad_columns(g, db, M, N, r0, r1);
    }
  });
  if (db != nullptr && M > 0 && !with_dw) bias_grad(g, db, M, N);
}

#if defined(__AVX512BF16__)
bool bf16_gemm_supported() { return true; }

void linear_bf16_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                         std::size_t K, std::size_t N, Activation act, float* pre) {
  float* z = pre != nullptr ? pre : y;
  const bool fused = act == Activation::kNone && z == y;  // the tile adds the bias
  const auto m = static_cast<I64>(M), k = static_cast<I64>(K), n = static_cast<I64>(N);
  // z (M, N) = x (M, K) @ w^T (K, N)
  gemm_bf16(m, n, k, {x, k, 1}, {w, 1, k}, z, fused ? b : nullptr, false, [&](I64 i0, I64 rows) {
    if (!fused) epilogue(z + i0 * n, y + i0 * n, b, static_cast<std::size_t>(rows), N, act);
  });
}

void linear_bf16_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                          float* db, std::size_t M, std::size_t K, std::size_t N, Activation act,
                          const float* saved) {
  xt::xtensor<float, 1> dz_buffer;
  const float* g = pre_activation_grad(grad_y, saved, M, N, act, dz_buffer);
  const auto m = static_cast<I64>(M), k = static_cast<I64>(K), n = static_cast<I64>(N);
  const auto none = [](I64, I64) {};
  if (dx != nullptr && K > 0) {
    if (N == 0) std::fill(dx, dx + M * K, 0.0f);
    else gemm_bf16(m, k, n, {g, n, 1}, {w, k, 1}, dx, nullptr, false, none);  // dx (M, K) = dz (M, N) @ w (N, K)
  }
  if (dw != nullptr && M > 0 && K > 0) {  // dw (N, K) += dz^T (N, M) @ x (M, K)
    if (amx_bf16_usable())  // as dw^T (K, N) += x^T (K, M) @ dz (M, N): dz's rows pack as B's panels
      gemm_amx_columns(k, n, m, {x, 1, k}, {g, n, 1}, {dw, k, true}, true);
    else
      gemm_bf16(n, k, m, {g, 1, n}, {x, k, 1}, dw, nullptr, true, none);
  }
  if (db != nullptr && M > 0) bias_grad(g, db, M, N);
}

const char* bf16_gemm_engine() { return amx_bf16_usable() ? "amx" : "avx512_bf16"; }
#else
bool bf16_gemm_supported() { return false; }

const char* bf16_gemm_engine() { return "none"; }

void linear_bf16_forward(const float*, const float*, const float*, float*, std::size_t, std::size_t, std::size_t,
                         Activation, float*) {
  throw std::runtime_error(kNoBf16Gemm);
}

void linear_bf16_backward(const float*, const float*, const float*, float*, float*, float*, std::size_t,
                          std::size_t, std::size_t, Activation, const float*) {
  throw std::runtime_error(kNoBf16Gemm);
}
#endif

SEQLAB_LEVEL_END
}  // namespace seqlab
