#include "seqlab/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "seqlab/blas.hpp"
#include "seqlab/gemm_microkernel.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

namespace {

using simd::Batch;
using simd::exp_sum;
using simd::kLanes;
using simd::row_dot;
using simd::row_max;
using simd::scale_row;
using I64 = std::int64_t;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

// Asks the kernel to back a large fresh buffer with transparent huge pages (Linux, THP in
// "madvise" mode): one fault per 2 MiB instead of per 4 KiB when the plain path first
// writes its probabilities. Advisory; ignored where unsupported.
void advise_huge_pages(float* p, std::size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{1} << 21;
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p + n)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
#endif
}

// SplitMix64 finaliser: a counter-based hash for the dropout mask.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Dropout of the weights of one attention row (b*H + h, i): same mask in both paths.
struct RowDropout {
  std::uint64_t seed = 0;
  std::uint32_t threshold = 0;  // keep iff 24-bit hash >= threshold
  float inv_keep = 1.0f;
  int Tq = 0;

  RowDropout(const AttnOptions& o, int tq)
      : seed(o.seed),
        threshold(static_cast<std::uint32_t>(static_cast<double>(o.dropout_p) * 16777216.0)),
        inv_keep(1.0f / (1.0f - o.dropout_p)),
        Tq(tq) {}

  std::uint64_t row_key(I64 bh, int i) const {
    return mix64(seed ^ mix64(static_cast<std::uint64_t>(bh * Tq + i)));
  }
  // row[0, n) holds keys j0 .. j0+n-1: multiplied by 1/(1-p) where kept, zeroed elsewhere.
  void apply(float* row, int n, std::uint64_t key, int j0) const {
    for (int j = 0; j < n; ++j) {
      const auto u = static_cast<std::uint32_t>(mix64(key + static_cast<std::uint64_t>(j0 + j)) >> 40);
      row[j] = u >= threshold ? row[j] * inv_keep : 0.0f;
    }
  }
};

// Adds the masks to a (rows x cols) score tile for queries i0.. and keys j0.. of head (b, h).
void add_masks(const AttnShape& s, const AttnOptions& o, int b, int h, int i0, int j0, int rows,
               int cols, float* S, int ld) {
  const auto add = [](Batch a, Batch c) { return a + c; };
  for (int r = 0; r < rows; ++r) {
    float* row = S + static_cast<I64>(r) * ld;
    const int i = i0 + r;
    if (o.mask)
      simd::map2(row, o.mask + b * o.mb + h * o.mh + i * o.mq + j0, row, static_cast<std::size_t>(cols), add);
    if (o.key_bias)
      simd::map2(row, o.key_bias + static_cast<I64>(b) * s.Tk + j0, row, static_cast<std::size_t>(cols), add);
    if (o.causal) {
      const int first = std::max(i + 1 - j0, 0);
      if (first < cols) std::fill(row + first, row + cols, kNegInf);
    }
  }
}

template <class View>
auto head_ptr(const View& v, int b, int h) {
  return v.data + b * v.sb + h * v.sh;
}

// The head (b * H + h) of work item `item` of the B * H heads. On several threads they are
// taken head-major (h = item / B, b = item % B): threads running side by side work on
// different batch rows, so their writes into a packed (B, T, H * D) output or gradient,
// whose rows hold the heads side by side with cache lines straddling two heads when the
// buffer is not 64-byte aligned, never share a line. On one thread batch-major (the rows of
// one batch element are finished while in cache). The result of an item does not depend
// on the order or on which thread runs it. `head_major` is read once per kernel call
// (heads_major()): every item of a call must map through the same order, even when another
// Python thread changes the pool's size meanwhile.
inline bool heads_major() { return get_num_threads() > 1; }
inline I64 head_of_item(I64 item, const AttnShape& s, bool head_major) {
  if (!head_major) return item;
  return (item % s.B) * s.H + item / s.B;
}

// ---------------------------------------------------------------- unpacked GEMM
// The shared register-tile micro-kernel (seqlab/gemm_microkernel.hpp) without packing A:
// at the attention's shapes (one of M, N, K of 64, the others 128-512, operands in L2) its
// 6 x 64 AVX-512 tile runs at 105-115 GFLOP/s on one core where OpenBLAS's sgemm, which
// packs both operands per call, reaches 94-99 (measured on the 2-core AVX-512 machine of
// benchmarks/RESULTS.md). Used on AVX-512 levels when N is a multiple of the vector width
// (gemm_unpacked_ok); otherwise callers take OpenBLAS.
constexpr bool kUnpackedGemm = gemm::kW >= 16;

inline bool gemm_unpacked_ok(int N) { return kUnpackedGemm && N % gemm::kW == 0; }

// n rounded up to a multiple of the vector width (the unpacked kernel's column unit).
inline int round_up_vector(int n) { return (n + gemm::kW - 1) / gemm::kW * gemm::kW; }

// C (M x N) = alpha A B (+ C when `acc`) with A (i, k) at a[i*sai + k*sak], one of sai,
// sak being 1, B row-major: the unpacked kernel when it applies, OpenBLAS otherwise.
void gemm_ab(bool acc, int M, int N, int K, float alpha, const float* a, I64 sai, I64 sak, const float* b, I64 ldb,
             float* c, I64 ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = 0 (or unchanged)
    if (!acc)
      for (int i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.0f);
    return;
  }
  if (gemm_unpacked_ok(N)) {
    gemm::gemm(acc, M, N, K, alpha, a, sai, sak, b, ldb, gemm::kNR, c, ldc);
    return;
  }
  // sak == 1: A row-major with lda = sai; otherwise A (i, k) at a[i + k*sak], A^T row-major.
  const bool trans_a = sak != 1;
  const I64 lda = trans_a ? (K == 1 ? std::max<I64>(sak, M) : sak) : (M == 1 ? std::max<I64>(sai, K) : sai);
  sgemm(trans_a, false, M, N, K, alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), acc ? 1.0f : 0.0f, c,
        static_cast<int>(ldc));
}

// Floats of a chunked transpose of a (rows x cols) matrix (see transpose_chunked).
inline std::size_t chunked_size(int rows, int cols) { return gemm::packed_bt_size(rows, cols); }

// dst = src (rows x cols, row stride ld)^T stored in panels of gemm::kNR of its columns
// (src rows): panel c holds dst columns [kNR c, kNR c + kNR) as `cols` rows of kNR floats,
// at dst + c*cols*kNR. The unpacked kernel then reads each B row of a block of columns
// from one contiguous panel (a row-major K^T with a stride of Tk floats would map the
// panel's rows to a few L1 sets).
inline void transpose_chunked(const float* src, I64 ld, int rows, int cols, float* dst) {
  gemm::pack_bt(src, ld, rows, cols, dst);
}

// C (M x N) = alpha A Bt[:, j0 : j0 + N) with A (i, k) at a[i*sai + k], Bt (K x *) a
// chunked transpose, j0 a multiple of kNR, N of kW (unpacked kernel only).
inline void gemm_chunked(int M, int N, int K, float alpha, const float* a, I64 sai, const float* bt, int j0, float* c,
                         I64 ldc) {
  gemm::gemm(false, M, N, K, alpha, a, sai, 1, bt + static_cast<I64>(j0) * K, gemm::kNR,
             static_cast<I64>(K) * gemm::kNR, c, ldc);
}

// ---------------------------------------------------------------- plain forward
// Query rows per tile of the plain path (measured on one core, B*H = 32, D = 64): large
// tiles amortise OpenBLAS's packing of K and V, small ones waste less on the causal
// diagonal (and let OpenBLAS take its unpacked small-matrix kernels at short lengths).
int plain_block_q(const AttnShape& s, const AttnOptions& o, bool backward) {
  if (o.causal) return std::clamp(s.Tk / 8, 32, 64);
  return backward ? std::clamp(s.Tk / 4, 64, kAttnPlainBwdBlockQ) : std::clamp(s.Tk / 2, 64, kAttnPlainBlockQ);
}

inline void scale_copy(const float* x, float* y, int n, float c) {
  const Batch cb(c);
  simd::map1(x, y, static_cast<std::size_t>(n), [&](Batch v) { return v * cb; });
}

// y[0, n) = c x[0, n), y written with non-temporal stores where aligned (it is not read
// again soon: no read-for-ownership of its lines, no eviction of the hot tile).
void store_scaled(const float* x, float* y, int n, float c, bool stream) {
  int i = 0;
  if (!stream) {
    scale_copy(x, y, n, c);
    return;
  }
#if defined(__AVX512F__)
  for (; i < n && (reinterpret_cast<std::uintptr_t>(y + i) & 63u) != 0; ++i) y[i] = x[i] * c;
  const __m512 cv = _mm512_set1_ps(c);
  for (; i + 16 <= n; i += 16) _mm512_stream_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), cv));
#elif defined(__AVX__)
  for (; i < n && (reinterpret_cast<std::uintptr_t>(y + i) & 31u) != 0; ++i) y[i] = x[i] * c;
  const __m256 cv = _mm256_set1_ps(c);
  for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), cv));
#endif
  for (; i < n; ++i) y[i] = x[i] * c;
}

inline void stream_fence() {
#if defined(__AVX__) || defined(__AVX512F__)
  _mm_sfence();
#endif
}

// Tiles of plain_block_q query rows against all keys. Per tile, in a per-thread scratch
// that stays in L2: S = scale Q_i K^T, masks, E = exp(S - rowmax), l = rowsum E; the
// cached probabilities P = E / l are written (streamed out when large) in the same pass,
// and O_i = (E V) / l takes the unnormalised E while it is hot (dropout: Ed V / l).
void forward_plain(const AttnShape& s, const AttnOptions& o, AttnView q, AttnView k, AttnView v,
                   AttnMutView out, float* weights, AttentionCache& cache) {
  const int BQ = plain_block_q(s, o, false);
  // Stream the probabilities out when they would not stay in the caches for the backward.
  const int nqb = (s.Tq + BQ - 1) / BQ;
  const I64 TT = static_cast<I64>(s.Tq) * s.Tk;
  const auto n = static_cast<std::size_t>(s.B * s.H * TT);
  const bool stream = n * sizeof(float) >= kAttnStreamBytes;
  if (cache.probs.size() != n) {  // a recycled cache of the same size keeps its (faulted-in) buffer
    cache.probs = xt::xtensor<float, 1>::from_shape({n});
    advise_huge_pages(cache.probs.data(), n);
  }
  float* probs = cache.probs.data();
  const bool drop = o.dropout_p > 0.0f;
  const RowDropout dropout(o, s.Tq);
  // S through the unpacked kernel against K^T (transposed once per head and thread). With
  // enough heads for every thread a work item is a whole head (its K transposed once in all),
  // else one query tile of a head.
  const bool unpacked_s = gemm_unpacked_ok(s.Tk);
  const bool whole_heads = static_cast<I64>(s.B) * s.H >= 4 * static_cast<I64>(get_num_threads());
  const int tiles_per_item = whole_heads ? nqb : 1, items_per_head = nqb / tiles_per_item;
  const bool head_major = heads_major();
  parallel_claim(static_cast<std::size_t>(s.B) * s.H * items_per_head, [&](const ClaimFn& next) {
    auto E = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(BQ) * s.Tk});
    std::vector<float> inv_l(static_cast<std::size_t>(BQ));
    xt::xtensor<float, 1> Kt;
    if (unpacked_s) Kt = xt::xtensor<float, 1>::from_shape({chunked_size(s.Tk, s.D)});
    I64 kt_head = -1;
    for (std::size_t t; next(t);) {
      const I64 bh = head_of_item(static_cast<I64>(t) / items_per_head, s, head_major);
      const int b = static_cast<int>(bh / s.H), h = static_cast<int>(bh % s.H);
      const int first = static_cast<int>(static_cast<I64>(t) % items_per_head) * tiles_per_item;
      for (int tile = first; tile < first + tiles_per_item; ++tile) {
        const int i0 = tile * BQ;
        const int rows = std::min(BQ, s.Tq - i0);
        // Causal: keys from i0 + rows on are masked for every row of the tile.
        const int jend = o.causal ? std::min(s.Tk, i0 + rows) : s.Tk;
        float* P = probs + bh * TT + static_cast<I64>(i0) * s.Tk;
        // S = scale Q_i K^T   (rows, jend)
        if (unpacked_s) {
          if (kt_head != bh) {
            transpose_chunked(head_ptr(k, b, h), k.st, s.Tk, s.D, Kt.data());
            kt_head = bh;
          }
          // Columns up to the next multiple of the vector width (<= Tk): those past jend are never read.
          const int n16 = std::min(s.Tk, round_up_vector(jend));
          gemm_chunked(rows, n16, s.D, o.scale, head_ptr(q, b, h) + i0 * q.st, q.st, Kt.data(), 0, E.data(), s.Tk);
        } else {
          sgemm(false, true, rows, jend, s.D, o.scale, head_ptr(q, b, h) + i0 * q.st, static_cast<int>(q.st),
                head_ptr(k, b, h), static_cast<int>(k.st), 0.0f, E.data(), s.Tk);
        }
        add_masks(s, o, b, h, i0, 0, rows, jend, E.data(), s.Tk);
        for (int r = 0; r < rows; ++r) {
          float* row = E.data() + static_cast<I64>(r) * s.Tk;
          float* prow = P + static_cast<I64>(r) * s.Tk;
          const int n = o.causal ? std::min(jend, i0 + r + 1) : jend;  // keys past n are masked
          const float m = row_max(row, n);
          float c = 0.0f;
          if (m == kNegInf) {  // every key masked: weights 0, output 0
            std::fill(row, row + n, 0.0f);
          } else {
            c = 1.0f / exp_sum(row, n, m);
          }
          std::fill(row + n, row + jend, 0.0f);
          store_scaled(row, prow, n, c, stream);
          std::fill(prow + n, prow + s.Tk, 0.0f);
          inv_l[static_cast<std::size_t>(r)] = c;
          if (drop) dropout.apply(row, n, dropout.row_key(bh, i0 + r), 0);
          if (weights) {
            float* w = weights + bh * TT + static_cast<I64>(i0 + r) * s.Tk;
            store_scaled(row, w, n, c, false);
            std::fill(w + n, w + s.Tk, 0.0f);
          }
        }
        // O_i = (Ed V) / l   (rows, Dv)
        float* O = head_ptr(out, b, h) + i0 * out.st;
        gemm_ab(false, rows, s.Dv, jend, 1.0f, E.data(), s.Tk, 1, head_ptr(v, b, h), v.st, O, out.st);
        for (int r = 0; r < rows; ++r) scale_row(O + r * out.st, s.Dv, inv_l[static_cast<std::size_t>(r)]);
      }
    }
    stream_fence();
  });
}

// ---------------------------------------------------------------- flash forward
void forward_flash(const AttnShape& s, const AttnOptions& o, AttnView q, AttnView k, AttnView v,
                   AttnMutView out, AttentionCache& cache) {
  constexpr int BQ = kAttnBlockQ, BK = kAttnBlockK;
  const int nqb = (s.Tq + BQ - 1) / BQ;
  const auto n = static_cast<std::size_t>(s.B) * s.H * s.Tq;
  if (cache.lse.size() != n) cache.lse = xt::xtensor<float, 1>::from_shape({n});
  float* lse = cache.lse.data();
  const bool drop = o.dropout_p > 0.0f;
  const RowDropout dropout(o, s.Tq);
  // S through the unpacked kernel against K^T (transposed once per head and thread).
  const bool unpacked_s = gemm_unpacked_ok(s.Tk);
  const bool head_major = heads_major();
  parallel_claim(static_cast<std::size_t>(s.B) * s.H * nqb, [&](const ClaimFn& next) {
    auto S = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(BQ) * BK});
    float m[BQ], l[BQ];
    xt::xtensor<float, 1> Kt;
    if (unpacked_s) Kt = xt::xtensor<float, 1>::from_shape({chunked_size(s.Tk, s.D)});
    I64 kt_head = -1;
    for (std::size_t t; next(t);) {
      const I64 bh = head_of_item(static_cast<I64>(t) / nqb, s, head_major);
      const int b = static_cast<int>(bh / s.H), h = static_cast<int>(bh % s.H);
      const int i0 = static_cast<int>(t % nqb) * BQ;
      const int rows = std::min(BQ, s.Tq - i0);
      const float* Q = head_ptr(q, b, h) + i0 * q.st;
      float* O = head_ptr(out, b, h) + i0 * out.st;
      for (int r = 0; r < rows; ++r) {
        std::fill(O + r * out.st, O + r * out.st + s.Dv, 0.0f);
        m[r] = kNegInf;
        l[r] = 0.0f;
      }
      const int jend = o.causal ? std::min(s.Tk, i0 + rows) : s.Tk;
      for (int j0 = 0; j0 < jend; j0 += BK) {
        const int cols = std::min(BK, jend - j0);
        // S = scale Q_i K_j^T   (rows, cols)
        if (unpacked_s) {
          if (kt_head != bh) {
            transpose_chunked(head_ptr(k, b, h), k.st, s.Tk, s.D, Kt.data());
            kt_head = bh;
          }
          gemm_chunked(rows, std::min(BK, round_up_vector(cols)), s.D, o.scale, Q, q.st, Kt.data(), j0, S.data(), BK);
        } else {
          sgemm(false, true, rows, cols, s.D, o.scale, Q, static_cast<int>(q.st), head_ptr(k, b, h) + j0 * k.st,
                static_cast<int>(k.st), 0.0f, S.data(), BK);
        }
        add_masks(s, o, b, h, i0, j0, rows, cols, S.data(), BK);
        for (int r = 0; r < rows; ++r) {
          float* row = S.data() + static_cast<I64>(r) * BK;
          const float mnew = std::max(m[r], row_max(row, cols));
          if (mnew == kNegInf) {  // every key so far masked
            std::fill(row, row + cols, 0.0f);
            continue;
          }
          const float corr = std::exp(m[r] - mnew);
          l[r] = l[r] * corr + exp_sum(row, cols, mnew);
          m[r] = mnew;
          if (corr != 1.0f) scale_row(O + r * out.st, s.Dv, corr);
          if (drop) dropout.apply(row, cols, dropout.row_key(bh, i0 + r), j0);
        }
        // O_i += P V_j   (rows, Dv)
        gemm_ab(true, rows, s.Dv, cols, 1.0f, S.data(), BK, 1, head_ptr(v, b, h) + j0 * v.st, v.st, O, out.st);
      }
      float* L = lse + bh * s.Tq + i0;
      for (int r = 0; r < rows; ++r) {
        if (l[r] > 0.0f) {
          scale_row(O + r * out.st, s.Dv, 1.0f / l[r]);
          L[r] = m[r] + std::log(l[r]);
        } else {
          std::fill(O + r * out.st, O + r * out.st + s.Dv, 0.0f);
          L[r] = kPosInf;
        }
      }
    }
  });
}

// ---------------------------------------------------------------- plain backward
// Per (b, h), tiles of kAttnPlainBwdBlockQ query rows against all (visible) keys, reading
// the tile's cached probabilities once from memory:
//   dPd = dO_i V^T (rows, jend) ; dV += Pd^T dO_i ; dS = P (dP - D_i) in place ;
//   dQ_i = scale dS K ; dK += scale dS^T Q_i
// Every GEMM has one dimension of 512-ish and runs near OpenBLAS's peak; dS stays in L2
// between its three uses. dQ rows are written once (beta 0 when overwritten); dK and dV
// rows are set by the first tile that reaches them when overwritten (no zero pass).
void backward_plain(const AttentionCache& cache, AttnView q, AttnView k, AttnView v, AttnView o, AttnView dO,
                    AttnMutView dq, AttnMutView dk, AttnMutView dv, AttnOverwrite overwrite) {
  const AttnShape& s = cache.shape;
  const AttnOptions& opt = cache.opts;
  const int BQ = plain_block_q(s, opt, true);
  const I64 TT = static_cast<I64>(s.Tq) * s.Tk;
  const bool drop = opt.dropout_p > 0.0f;
  const RowDropout dropout(opt, s.Tq);
  // dP through the unpacked kernel against V^T (transposed once per head).
  const bool unpacked_dp = gemm_unpacked_ok(s.Tk);
  const bool head_major = heads_major();
  parallel_claim(static_cast<std::size_t>(s.B) * s.H, [&](const ClaimFn& next) {
    const auto tile = static_cast<std::size_t>(BQ) * s.Tk;
    auto dP = xt::xtensor<float, 1>::from_shape({tile});
    xt::xtensor<float, 1> Pdrop, Vt;
    if (drop) Pdrop = xt::xtensor<float, 1>::from_shape({tile});
    if (unpacked_dp) Vt = xt::xtensor<float, 1>::from_shape({chunked_size(s.Tk, s.Dv)});
    std::vector<float> Di(static_cast<std::size_t>(BQ));
    for (std::size_t t; next(t);) {
      const I64 bh = head_of_item(static_cast<I64>(t), s, head_major);
      const int b = static_cast<int>(bh / s.H), h = static_cast<int>(bh % s.H);
      const float* Qh = head_ptr(q, b, h);
      const float* Kh = head_ptr(k, b, h);
      const float* Vh = head_ptr(v, b, h);
      const float* Oh = head_ptr(o, b, h);
      const float* dOh = head_ptr(dO, b, h);
      float* dQh = dq.data ? head_ptr(dq, b, h) : nullptr;
      float* dKh = dk.data ? head_ptr(dk, b, h) : nullptr;
      float* dVh = dv.data ? head_ptr(dv, b, h) : nullptr;
      // Keys [0, done) of dK/dV hold values (accumulate); later keys are set on first reach.
      int done_k = overwrite.dk ? 0 : s.Tk;
      int done_v = overwrite.dv ? 0 : s.Tk;
      // C rows [0, jend) of dK or dV += / = alpha A^T B, split at `done`.
      const auto acc_rows = [&](float alpha, const float* A, I64 lda, const float* Bm, I64 ldb, int rows, int jend,
                                int cols, float* C, I64 ldc, int& done) {
        const int n_acc = std::min(done, jend);
        if (n_acc > 0) gemm_ab(true, n_acc, cols, rows, alpha, A, 1, lda, Bm, ldb, C, ldc);
        if (jend > n_acc) gemm_ab(false, jend - n_acc, cols, rows, alpha, A + n_acc, 1, lda, Bm, ldb, C + n_acc * ldc, ldc);
        done = std::max(done, jend);
      };
      if (unpacked_dp && (dQh || dKh)) transpose_chunked(Vh, v.st, s.Tk, s.Dv, Vt.data());
      for (int i0 = 0; i0 < s.Tq; i0 += BQ) {
        const int rows = std::min(BQ, s.Tq - i0);
        const int jend = opt.causal ? std::min(s.Tk, i0 + rows) : s.Tk;  // keys past jend: P = 0 for the tile
        const float* P = cache.probs.data() + bh * TT + static_cast<I64>(i0) * s.Tk;
        const float* dOi = dOh + i0 * dO.st;
        const float* Pd = drop ? Pdrop.data() : P;
        const bool need_ds = dQh || dKh;
        if (need_ds) {
          // D_i = sum_d dO_id O_id  (= sum_j P_ij dP_ij)
          for (int r = 0; r < rows; ++r) Di[r] = row_dot(dOi + r * dO.st, Oh + (i0 + r) * o.st, s.Dv);
          // dPd = dO_i V^T   (rows, jend)
          if (unpacked_dp)
            gemm_chunked(rows, std::min(s.Tk, round_up_vector(jend)), s.Dv, 1.0f, dOi, dO.st, Vt.data(), 0, dP.data(),
                         s.Tk);
          else
            sgemm(false, true, rows, jend, s.Dv, 1.0f, dOi, static_cast<int>(dO.st), Vh, static_cast<int>(v.st), 0.0f,
                  dP.data(), s.Tk);
        }
        // One pass over the tile's probabilities (their only read from memory; dV below
        // finds them in L2): Pd = dropout(P), dS = P (dP - D_i) with dP = dropout(dPd).
        for (int r = 0; r < rows; ++r) {
          const float* prow = P + static_cast<I64>(r) * s.Tk;
          if (drop) {
            float* row = Pdrop.data() + static_cast<I64>(r) * s.Tk;
            std::copy(prow, prow + jend, row);
            dropout.apply(row, jend, dropout.row_key(bh, i0 + r), 0);
          }
          if (!need_ds) continue;
          float* dpr = dP.data() + static_cast<I64>(r) * s.Tk;
          if (drop) dropout.apply(dpr, jend, dropout.row_key(bh, i0 + r), 0);
          const Batch di(Di[r]);
          simd::map2(prow, dpr, dpr, static_cast<std::size_t>(jend), [&](Batch p, Batch g) { return p * (g - di); });
        }
        // dV[0, jend) += Pd^T dO_i   (jend, Dv)
        if (dVh) acc_rows(1.0f, Pd, s.Tk, dOi, dO.st, rows, jend, s.Dv, dVh, dv.st, done_v);
        if (!need_ds) continue;
        // dQ_i (+)= scale dS K ;  dK[0, jend) += scale dS^T Q_i
        if (dQh)
          gemm_ab(!overwrite.dq, rows, s.D, jend, opt.scale, dP.data(), s.Tk, 1, Kh, k.st, dQh + i0 * dq.st, dq.st);
        if (dKh)
          acc_rows(opt.scale, dP.data(), s.Tk, Qh + i0 * q.st, q.st, rows, jend, s.D, dKh, dk.st, done_k);
      }
      // Keys no query row sees (causal with Tk > Tq) have zero gradients.
      const auto zero_tail = [&](float* G, I64 ld, int from, int cols) {
        for (int j = from; j < s.Tk; ++j) std::fill(G + j * ld, G + j * ld + cols, 0.0f);
      };
      if (dKh && done_k < s.Tk) zero_tail(dKh, dk.st, done_k, s.D);
      if (dVh && done_v < s.Tk) zero_tail(dVh, dv.st, done_v, s.Dv);
    }
  });
}

}  // namespace

void attention_forward(const AttnShape& shape, const AttnOptions& opts, AttnView q, AttnView k,
                       AttnView v, AttnMutView o, float* weights, AttentionCache& cache) {
  cache.shape = shape;
  cache.opts = opts;
  // Only the buffer of the path taken is kept (a recycled cache may bring either).
  if (opts.flash && !weights && shape.Tk > 0)
    cache.probs = xt::xtensor<float, 1>();
  else
    cache.lse = xt::xtensor<float, 1>();
  if (shape.B == 0 || shape.H == 0 || shape.Tq == 0) return;
  SerialBlas serial;
  if (shape.Tk == 0) {  // nothing to attend to: every row is fully masked
    for (int b = 0; b < shape.B; ++b)
      for (int h = 0; h < shape.H; ++h)
        for (int i = 0; i < shape.Tq; ++i) {
          float* row = head_ptr(o, b, h) + i * o.st;
          std::fill(row, row + shape.Dv, 0.0f);
        }
    cache.lse = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(shape.B) * shape.H * shape.Tq});
    std::fill(cache.lse.begin(), cache.lse.end(), kPosInf);
    cache.opts.flash = true;
    return;
  }
  if (opts.flash && !weights)
    forward_flash(shape, opts, q, k, v, o, cache);
  else {
    cache.opts.flash = false;
    forward_plain(shape, opts, q, k, v, o, weights, cache);
  }
}

void attention_backward(const AttentionCache& cache, AttnView q, AttnView k, AttnView v, AttnView o,
                        AttnView dO, AttnMutView dq, AttnMutView dk, AttnMutView dv, AttnOverwrite overwrite) {
  const AttnShape& s = cache.shape;
  const AttnOptions& opt = cache.opts;
  if (s.B == 0 || s.H == 0) return;
  // Rows of head (b, h) of a gradient to be overwritten start as zeros.
  const auto zero_head = [](AttnMutView g, bool flag, int b, int h, int rows, int cols) {
    if (!g.data || !flag) return;
    for (int i = 0; i < rows; ++i) {
      float* row = head_ptr(g, b, h) + i * g.st;
      std::fill(row, row + cols, 0.0f);
    }
  };
  if (s.Tq == 0 || s.Tk == 0) {  // no products: the overwritten gradients are zeros
    for (int b = 0; b < s.B; ++b)
      for (int h = 0; h < s.H; ++h) {
        zero_head(dq, overwrite.dq, b, h, s.Tq, s.D);
        zero_head(dk, overwrite.dk, b, h, s.Tk, s.D);
        zero_head(dv, overwrite.dv, b, h, s.Tk, s.Dv);
      }
    return;
  }
  if (!dq.data && !dk.data && !dv.data) return;
  SerialBlas serial;
  if (!opt.flash) {
    backward_plain(cache, q, k, v, o, dO, dq, dk, dv, overwrite);
    return;
  }
  const int BQ = kAttnBwdBlockQ, BK = kAttnBwdBlockK;
  const bool drop = opt.dropout_p > 0.0f;
  const RowDropout dropout(opt, s.Tq);
  // S and dP through the unpacked kernel against K^T and V^T (transposed once per head).
  const bool unpacked = gemm_unpacked_ok(s.Tk);
  const bool head_major = heads_major();
  parallel_claim(static_cast<std::size_t>(s.B) * s.H, [&](const ClaimFn& next) {
    const auto tile = static_cast<std::size_t>(BQ) * BK;
    auto Di = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(s.Tq)});
    auto dP = xt::xtensor<float, 1>::from_shape({tile});
    auto Sbuf = xt::xtensor<float, 1>::from_shape({tile});
    xt::xtensor<float, 1> Pdrop, Kt, Vt;
    if (drop) Pdrop = xt::xtensor<float, 1>::from_shape({tile});
    if (unpacked) {
      Kt = xt::xtensor<float, 1>::from_shape({chunked_size(s.Tk, s.D)});
      Vt = xt::xtensor<float, 1>::from_shape({chunked_size(s.Tk, s.Dv)});
    }
    for (std::size_t t; next(t);) {
      const I64 bh = head_of_item(static_cast<I64>(t), s, head_major);
      const int b = static_cast<int>(bh / s.H), h = static_cast<int>(bh % s.H);
      const float* Qh = head_ptr(q, b, h);
      const float* Kh = head_ptr(k, b, h);
      const float* Vh = head_ptr(v, b, h);
      const float* Oh = head_ptr(o, b, h);
      const float* dOh = head_ptr(dO, b, h);
      zero_head(dq, overwrite.dq, b, h, s.Tq, s.D);
      zero_head(dk, overwrite.dk, b, h, s.Tk, s.D);
      zero_head(dv, overwrite.dv, b, h, s.Tk, s.Dv);
      if (unpacked) {
        transpose_chunked(Kh, k.st, s.Tk, s.D, Kt.data());
        if (dq.data || dk.data) transpose_chunked(Vh, v.st, s.Tk, s.Dv, Vt.data());
      }
      // D_i = sum_d dO_id O_id  (= sum_j P_ij dP_ij)
      for (int i = 0; i < s.Tq; ++i) Di[i] = row_dot(dOh + i * dO.st, Oh + i * o.st, s.Dv);
      const float* L = cache.lse.data() + bh * s.Tq;
      for (int j0 = 0; j0 < s.Tk; j0 += BK) {
        const int cols = std::min(BK, s.Tk - j0);
        const int cols16 = std::min(BK, round_up_vector(cols));  // unpacked: columns past cols never read
        const int i_start = opt.causal ? std::min(j0, s.Tq) : 0;  // rows above j0 see none of these keys
        for (int i0 = i_start; i0 < s.Tq; i0 += BQ) {
          const int rows = std::min(BQ, s.Tq - i0);
          // P = exp(scale Q_i K_j^T + masks - L_i)   (rows, cols)
          float* P = Sbuf.data();
          if (unpacked)
            gemm_chunked(rows, cols16, s.D, opt.scale, Qh + i0 * q.st, q.st, Kt.data(), j0, P, BK);
          else
            sgemm(false, true, rows, cols, s.D, opt.scale, Qh + i0 * q.st, static_cast<int>(q.st), Kh + j0 * k.st,
                  static_cast<int>(k.st), 0.0f, P, BK);
          add_masks(s, opt, b, h, i0, j0, rows, cols, P, BK);
          for (int r = 0; r < rows; ++r) {
            const Batch lb(L[i0 + r]);
            float* row = P + static_cast<I64>(r) * BK;
            simd::map1(row, row, static_cast<std::size_t>(cols), [&](Batch x) { return xsimd::exp(x - lb); });
          }
          const float* Pd = P;
          if (drop) {
            for (int r = 0; r < rows; ++r) {
              float* row = Pdrop.data() + static_cast<I64>(r) * BK;
              std::copy(P + static_cast<I64>(r) * BK, P + static_cast<I64>(r) * BK + cols, row);
              dropout.apply(row, cols, dropout.row_key(bh, i0 + r), j0);
            }
            Pd = Pdrop.data();
          }
          // dV_j += Pd^T dO_i   (cols, Dv)
          if (dv.data)
            gemm_ab(true, cols, s.Dv, rows, 1.0f, Pd, 1, BK, dOh + i0 * dO.st, dO.st, head_ptr(dv, b, h) + j0 * dv.st,
                    dv.st);
          if (!dq.data && !dk.data) continue;
          // dPd = dO_i V_j^T   (rows, cols)
          if (unpacked)
            gemm_chunked(rows, cols16, s.Dv, 1.0f, dOh + i0 * dO.st, dO.st, Vt.data(), j0, dP.data(), BK);
          else
            sgemm(false, true, rows, cols, s.Dv, 1.0f, dOh + i0 * dO.st, static_cast<int>(dO.st), Vh + j0 * v.st,
                  static_cast<int>(v.st), 0.0f, dP.data(), BK);
          for (int r = 0; r < rows; ++r) {
            float* dpr = dP.data() + static_cast<I64>(r) * BK;
            if (drop) dropout.apply(dpr, cols, dropout.row_key(bh, i0 + r), j0);
            const Batch di(Di[i0 + r]);
            simd::map2(P + static_cast<I64>(r) * BK, dpr, dpr, static_cast<std::size_t>(cols),
                       [&](Batch p, Batch g) { return p * (g - di); });
          }
          // dQ_i += scale dS K_j ;  dK_j += scale dS^T Q_i
          if (dq.data)
            gemm_ab(true, rows, s.D, cols, opt.scale, dP.data(), BK, 1, Kh + j0 * k.st, k.st,
                    head_ptr(dq, b, h) + i0 * dq.st, dq.st);
          if (dk.data)
            gemm_ab(true, cols, s.D, rows, opt.scale, dP.data(), 1, BK, Qh + i0 * q.st, q.st,
                    head_ptr(dk, b, h) + j0 * dk.st, dk.st);
        }
      }
    }
  });
}

SEQLAB_LEVEL_END
}  // namespace seqlab
