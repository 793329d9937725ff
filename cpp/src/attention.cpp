#include "seqlab/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "seqlab/blas.hpp"
#include "seqlab/simd.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {

namespace {

using simd::Batch;
using simd::exp_sum;
using simd::kLanes;
using simd::row_dot;
using simd::row_max;
using simd::scale_row;
using simd::softmax_row;
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

// ---------------------------------------------------------------- plain forward
// Tiles of kAttnBlockQ query rows against all keys, written straight into the cached
// probabilities (the tile's scores stay in L2 for the softmax and the P V product).
void forward_plain(const AttnShape& s, const AttnOptions& o, AttnView q, AttnView k, AttnView v,
                   AttnMutView out, float* weights, AttentionCache& cache) {
  constexpr int BQ = kAttnBlockQ;
  const int nqb = (s.Tq + BQ - 1) / BQ;
  const I64 TT = static_cast<I64>(s.Tq) * s.Tk;
  const auto n = static_cast<std::size_t>(s.B * s.H * TT);
  if (cache.probs.size() != n) {  // a recycled cache of the same size keeps its (faulted-in) buffer
    cache.probs = xt::xtensor<float, 1>::from_shape({n});
    advise_huge_pages(cache.probs.data(), n);
  }
  float* probs = cache.probs.data();
  const bool drop = o.dropout_p > 0.0f;
  const RowDropout dropout(o, s.Tq);
  parallel_claim(static_cast<std::size_t>(s.B) * s.H * nqb, [&](const ClaimFn& next) {
    xt::xtensor<float, 1> scratch;
    if (drop) scratch = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(BQ) * s.Tk});
    for (std::size_t t; next(t);) {
      const I64 bh = static_cast<I64>(t) / nqb;
      const int b = static_cast<int>(bh / s.H), h = static_cast<int>(bh % s.H);
      const int i0 = static_cast<int>(t % nqb) * BQ;
      const int rows = std::min(BQ, s.Tq - i0);
      // Causal: keys from i0 + rows on are masked for every row of the tile.
      const int jend = o.causal ? std::min(s.Tk, i0 + rows) : s.Tk;
      float* P = probs + bh * TT + static_cast<I64>(i0) * s.Tk;
      // S = scale Q_i K^T   (rows, jend)
      sgemm(false, true, rows, jend, s.D, o.scale, head_ptr(q, b, h) + i0 * q.st, static_cast<int>(q.st),
            head_ptr(k, b, h), static_cast<int>(k.st), 0.0f, P, s.Tk);
      add_masks(s, o, b, h, i0, 0, rows, jend, P, s.Tk);
      for (int r = 0; r < rows; ++r) {
        float* row = P + static_cast<I64>(r) * s.Tk;
        const int n = o.causal ? std::min(jend, i0 + r + 1) : jend;  // keys past n are masked
        softmax_row(row, n);
        std::fill(row + n, row + s.Tk, 0.0f);
      }
      const float* Pd = P;
      if (drop) {
        for (int r = 0; r < rows; ++r) {
          float* row = scratch.data() + static_cast<I64>(r) * s.Tk;
          std::copy(P + static_cast<I64>(r) * s.Tk, P + static_cast<I64>(r + 1) * s.Tk, row);
          dropout.apply(row, jend, dropout.row_key(bh, i0 + r), 0);
        }
        Pd = scratch.data();
      }
      if (weights) std::copy(Pd, Pd + static_cast<I64>(rows) * s.Tk, weights + bh * TT + static_cast<I64>(i0) * s.Tk);
      // O_i = P V   (rows, Dv)
      sgemm(false, false, rows, s.Dv, jend, 1.0f, Pd, s.Tk, head_ptr(v, b, h), static_cast<int>(v.st), 0.0f,
            head_ptr(out, b, h) + i0 * out.st, static_cast<int>(out.st));
    }
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
  parallel_claim(static_cast<std::size_t>(s.B) * s.H * nqb, [&](const ClaimFn& next) {
    auto S = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(BQ) * BK});
    float m[BQ], l[BQ];
    for (std::size_t t; next(t);) {
      const I64 bh = static_cast<I64>(t) / nqb;
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
        sgemm(false, true, rows, cols, s.D, o.scale, Q, static_cast<int>(q.st), head_ptr(k, b, h) + j0 * k.st,
              static_cast<int>(k.st), 0.0f, S.data(), BK);
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
        sgemm(false, false, rows, s.Dv, cols, 1.0f, S.data(), BK, head_ptr(v, b, h) + j0 * v.st,
              static_cast<int>(v.st), 1.0f, O, static_cast<int>(out.st));
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
  const bool flash = opt.flash;
  const int BQ = kAttnBwdBlockQ, BK = kAttnBwdBlockK;
  const I64 TT = static_cast<I64>(s.Tq) * s.Tk;
  const bool drop = opt.dropout_p > 0.0f;
  const RowDropout dropout(opt, s.Tq);
  parallel_claim(static_cast<std::size_t>(s.B) * s.H, [&](const ClaimFn& next) {
    const auto tile = static_cast<std::size_t>(BQ) * BK;
    auto Di = xt::xtensor<float, 1>::from_shape({static_cast<std::size_t>(s.Tq)});
    auto dP = xt::xtensor<float, 1>::from_shape({tile});
    xt::xtensor<float, 1> Sbuf, Pdrop;
    if (flash) Sbuf = xt::xtensor<float, 1>::from_shape({tile});
    if (drop) Pdrop = xt::xtensor<float, 1>::from_shape({tile});
    for (std::size_t t; next(t);) {
      const I64 bh = static_cast<I64>(t);
      const int b = static_cast<int>(bh / s.H), h = static_cast<int>(bh % s.H);
      const float* Qh = head_ptr(q, b, h);
      const float* Kh = head_ptr(k, b, h);
      const float* Vh = head_ptr(v, b, h);
      const float* Oh = head_ptr(o, b, h);
      const float* dOh = head_ptr(dO, b, h);
      zero_head(dq, overwrite.dq, b, h, s.Tq, s.D);
      zero_head(dk, overwrite.dk, b, h, s.Tk, s.D);
      zero_head(dv, overwrite.dv, b, h, s.Tk, s.Dv);
      // D_i = sum_d dO_id O_id  (= sum_j P_ij dP_ij)
      for (int i = 0; i < s.Tq; ++i) Di[i] = row_dot(dOh + i * dO.st, Oh + i * o.st, s.Dv);
      const float* L = flash ? cache.lse.data() + bh * s.Tq : nullptr;
      for (int j0 = 0; j0 < s.Tk; j0 += BK) {
        const int cols = std::min(BK, s.Tk - j0);
        const int i_start = opt.causal ? std::min(j0, s.Tq) : 0;  // rows above j0 see none of these keys
        for (int i0 = i_start; i0 < s.Tq; i0 += BQ) {
          const int rows = std::min(BQ, s.Tq - i0);
          const float* P;
          int ldp;
          if (flash) {
            float* S = Sbuf.data();
            sgemm(false, true, rows, cols, s.D, opt.scale, Qh + i0 * q.st, static_cast<int>(q.st), Kh + j0 * k.st,
                  static_cast<int>(k.st), 0.0f, S, BK);
            add_masks(s, opt, b, h, i0, j0, rows, cols, S, BK);
            for (int r = 0; r < rows; ++r) {
              const Batch lb(L[i0 + r]);
              float* row = S + static_cast<I64>(r) * BK;
              simd::map1(row, row, static_cast<std::size_t>(cols), [&](Batch x) { return xsimd::exp(x - lb); });
            }
            P = S;
            ldp = BK;
          } else {
            P = cache.probs.data() + bh * TT + static_cast<I64>(i0) * s.Tk + j0;
            ldp = s.Tk;
          }
          const float* Pd = P;
          if (drop) {
            for (int r = 0; r < rows; ++r) {
              float* row = Pdrop.data() + static_cast<I64>(r) * BK;
              std::copy(P + static_cast<I64>(r) * ldp, P + static_cast<I64>(r) * ldp + cols, row);
              dropout.apply(row, cols, dropout.row_key(bh, i0 + r), j0);
            }
            Pd = Pdrop.data();
          }
          const int ldpd = drop ? BK : ldp;
          // dV_j += Pd^T dO_i   (cols, Dv)
          if (dv.data)
            sgemm(true, false, cols, s.Dv, rows, 1.0f, Pd, ldpd, dOh + i0 * dO.st, static_cast<int>(dO.st), 1.0f,
                  head_ptr(dv, b, h) + j0 * dv.st, static_cast<int>(dv.st));
          if (!dq.data && !dk.data) continue;
          // dPd = dO_i V_j^T   (rows, cols)
          sgemm(false, true, rows, cols, s.Dv, 1.0f, dOh + i0 * dO.st, static_cast<int>(dO.st), Vh + j0 * v.st,
                static_cast<int>(v.st), 0.0f, dP.data(), BK);
          for (int r = 0; r < rows; ++r) {
            float* dpr = dP.data() + static_cast<I64>(r) * BK;
            if (drop) dropout.apply(dpr, cols, dropout.row_key(bh, i0 + r), j0);
            const Batch di(Di[i0 + r]);
            simd::map2(P + static_cast<I64>(r) * ldp, dpr, dpr, static_cast<std::size_t>(cols),
                       [&](Batch p, Batch g) { return p * (g - di); });
          }
          // dQ_i += scale dS K_j ;  dK_j += scale dS^T Q_i
          if (dq.data)
            sgemm(false, false, rows, s.D, cols, opt.scale, dP.data(), BK, Kh + j0 * k.st, static_cast<int>(k.st),
                  1.0f, head_ptr(dq, b, h) + i0 * dq.st, static_cast<int>(dq.st));
          if (dk.data)
            sgemm(true, false, cols, s.D, rows, opt.scale, dP.data(), BK, Qh + i0 * q.st, static_cast<int>(q.st),
                  1.0f, head_ptr(dk, b, h) + j0 * dk.st, static_cast<int>(dk.st));
        }
      }
    }
  });
}

}  // namespace seqlab
