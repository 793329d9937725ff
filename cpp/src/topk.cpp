#include "seqlab/topk.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "seqlab/gemm_microkernel.hpp"
#include "seqlab/similarity.hpp"
#include "seqlab/thread_pool.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN
namespace {

using simd::fbatch;
using simd::kW;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr std::size_t kRowBlock = 64;          // few-queries path: bank rows scored per block
constexpr std::size_t kMinRowsPerThread = 1024;
// Many-queries path, on the shared micro-kernel's tile of gemm::kMR queries x gemm::kNR
// bank rows (6 x 64 with AVX-512, 6 x 16 with AVX2): bank rows per work item (a multiple
// of gemm::kNR), so the packed chunk (<= 768 KB) stays in the core's L2 while every query
// panel streams over it.
constexpr std::size_t kPackedChunkFloats = std::size_t{3} << 16;
constexpr std::size_t kMaxBankChunk = 512;
constexpr std::size_t kItemsPerContext = 4;  // split query panels when chunks are fewer

std::size_t gemm_bank_chunk(std::size_t D) {
  constexpr std::size_t kTileR = gemm::kNR;
  const std::size_t rows = kPackedChunkFloats / D / kTileR * kTileR;
  return std::clamp<std::size_t>(rows, kTileR, kMaxBankChunk);
}
std::size_t gemm_contexts() { return static_cast<std::size_t>(get_num_threads()); }

struct Cand {
  float s;
  std::int64_t j;
};

// The total order of results: higher score first, then lower index.
inline bool better(const Cand& a, const Cand& b) { return a.s > b.s || (a.s == b.s && a.j < b.j); }

// A bounded heap over external storage; the worst kept candidate sits at d[0].
struct Heap {
  Cand* d;
  std::size_t n;
  std::size_t k;
  float threshold() const { return n < k ? -kInf : d[0].s; }
  void push(float s, std::int64_t j) {
    const Cand c{s, j};
    if (n < k) {
      d[n++] = c;
      std::push_heap(d, d + n, better);
    } else if (better(c, d[0])) {
      std::pop_heap(d, d + k, better);
      d[k - 1] = c;
      std::push_heap(d, d + k, better);
    }
  }
};

[[noreturn]] void report_nonfinite(const float* s, std::size_t n, std::int64_t j0) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(s[i])) throw NonFiniteScore(j0 + static_cast<std::int64_t>(i));
  throw NonFiniteScore(j0);
}

// Ranking score from a raw dot product and the row's term (see row_term).
template <Metric M>
inline float transform(float dot, float term) {
  if constexpr (M == Metric::inner_product) return dot;
  else if constexpr (M == Metric::cosine) return dot * term;
  else return 2.0f * dot - term;
}

template <Metric M>
inline float row_term(float sq) {
  if constexpr (M == Metric::cosine) return simd::inv_norm(sq);
  else return sq;
}

// Feeds ranking scores s[0, n) of bank rows j0.. (in increasing order) into the heap.
void scan_topk(const float* s, std::size_t n, std::int64_t j0, Heap& h) {
  const fbatch zero(0.0f);
  fbatch bad(0.0f);
  float thr = h.threshold();
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const fbatch v = fbatch::load_unaligned(s + i);
    bad += v * zero;  // NaN/Inf leave a non-zero mark
    if (xsimd::any(v > fbatch(thr))) {
      for (std::size_t l = 0; l < kW; ++l)
        if (s[i + l] > thr) {
          h.push(s[i + l], j0 + static_cast<std::int64_t>(i + l));
          thr = h.threshold();
        }
    }
  }
  bool finite = !std::isnan(xsimd::hadd(bad));  // bad is 0 or NaN
  for (; i < n; ++i) {
    if (!std::isfinite(s[i])) finite = false;
    else if (s[i] > thr) {
      h.push(s[i], j0 + static_cast<std::int64_t>(i));
      thr = h.threshold();
    }
  }
  if (!finite) report_nonfinite(s, n, j0);
}

// Largest rounding gap between a GEMM score and the SIMD score of the same pair, for
// rows of squared norm <= max_sq (both dots err by at most ~D u |q| |b|; the transforms
// are the same, adding at most an ulp of the result each).
template <Metric M>
float gemm_tolerance(std::size_t D, float qnorm, float max_sq, float ts) {
  const float u = std::numeric_limits<float>::epsilon() * 0.5f;
  const float bn = std::sqrt(max_sq);
  const float dot_err = 4.0f * static_cast<float>(D + 2) * u * qnorm * bn;
  if constexpr (M == Metric::inner_product) return dot_err + 8.0f * u * (std::fabs(ts) + qnorm * bn);
  else if constexpr (M == Metric::cosine) return 4.0f * static_cast<float>(D + 2) * u + 16.0f * u;
  else return 2.0f * dot_err + 16.0f * u * (2.0f * qnorm * bn + max_sq + std::fabs(ts));
}

// Rank count from micro-kernel scores: rows clearly above the target are counted in SIMD;
// rows within the rounding band of the target score are rescored exactly as
// ranking_scores does, so the rank is the exact one, ties included, on both paths.
// Squared norms of the scored rows and their largest (the GEMM path computes both once
// per bank chunk).
struct RowNorms {
  const float* sq;
  float max_sq;
};

template <Metric M>
std::int64_t count_above_banded(const float* s, std::size_t n, std::int64_t j0, float ts,
                                std::int64_t t, const float* q, const float* rows, std::size_t D,
                                const RowNorms& norms, float qnorm) {
  const float* sq = norms.sq;
  const float tol = gemm_tolerance<M>(D, qnorm, norms.max_sq, ts);
  const float hi = ts + tol, lo = ts - tol;
  const fbatch zero(0.0f), one(1.0f), hiv(hi), lov(lo);
  fbatch bad(0.0f), cnt(0.0f);
  std::int64_t extra = 0;
  auto exact = [&](std::size_t r) {
    const std::int64_t j = j0 + static_cast<std::int64_t>(r);
    if (j == t) return;
    const float e = transform<M>(simd::dot(q, rows + r * D, D), row_term<M>(sq[r]));
    if (e > ts || (e == ts && j < t)) ++extra;
  };
  std::size_t i = 0;
  for (; i + kW <= n; i += kW) {
    const fbatch v = fbatch::load_unaligned(s + i);
    bad += v * zero;
    cnt += xsimd::select(v > hiv, one, zero);
    if (xsimd::any((v >= lov) & (v <= hiv)))
      for (std::size_t l = 0; l < kW; ++l)
        if (s[i + l] >= lo && s[i + l] <= hi) exact(i + l);
  }
  std::int64_t total = static_cast<std::int64_t>(xsimd::hadd(cnt));
  bool finite = !std::isnan(xsimd::hadd(bad));
  for (; i < n; ++i) {
    if (!std::isfinite(s[i])) finite = false;
    else if (s[i] > hi) ++total;
    else if (s[i] >= lo) exact(i);
  }
  if (!finite) report_nonfinite(s, n, j0);
  // The target itself scores ts exactly, so its GEMM score lies in the band: never counted.
  return total + extra;
}

struct TopKSink {
  static constexpr bool kNeedsNorms = false;
  Cand* storage;
  std::size_t* sizes;
  std::size_t Q, k;
  template <class Tag>
  void operator()(Tag, std::size_t c, std::size_t a, const float* s, std::size_t n,
                  std::int64_t j0, const float*, const RowNorms*) const {
    const std::size_t slot = c * Q + a;
    Heap h{storage + slot * k, sizes[slot], k};
    scan_topk(s, n, j0, h);
    sizes[slot] = h.n;
  }
};

struct RankSink {
  static constexpr bool kNeedsNorms = true;
  std::int64_t* partial;
  std::size_t Q, D;
  const float* qp;
  const float* qnorm;
  const float* target_scores;
  const std::int64_t* targets;
  template <class Tag>
  void operator()(Tag, std::size_t c, std::size_t a, const float* s, std::size_t n,
                  std::int64_t j0, const float* rows, const RowNorms* norms) const {
    // kNeedsNorms: both paths pass the rows' norms
    partial[c * Q + a] += count_above_banded<Tag::value>(
        s, n, j0, target_scores[a], targets[a], qp + a * D, rows, D, *norms, qnorm[a]);
  }
};

// Queries as the kernels use them: normalised for cosine, as given otherwise.
struct PreparedQueries {
  std::vector<float> storage;
  const float* data;
};

PreparedQueries prepare_queries(const float* q, std::size_t Q, std::size_t D, Metric metric) {
  PreparedQueries p;
  p.data = q;
  if (metric == Metric::cosine) {
    p.storage.resize(Q * D);
    for (std::size_t a = 0; a < Q; ++a) {
      const float inv = simd::inv_norm(simd::sqnorm(q + a * D, D));
      for (std::size_t i = 0; i < D; ++i) p.storage[a * D + i] = q[a * D + i] * inv;
    }
    p.data = p.storage.data();
  }
  return p;
}

template <Metric M>
using MetricTag = std::integral_constant<Metric, M>;

// Sinks take (MetricTag, context, query, scores s[0, n), first global row j0, the bank
// rows scored, their squared norms). Both paths score with the micro-kernel, whose
// summation order differs from ranking_scores'; a sink that sets kNeedsNorms gets the
// norms (else they may be null) to bound that rounding and recompute near-ties exactly.

using AlignedFloats = std::vector<float, xsimd::aligned_allocator<float, 64>>;

// Few-queries path on the shared micro-kernel, the bank streamed where it lies: per block
// of bank rows, C (rows x queries) = rows (the tile's A operand, read in place: nothing
// of the bank is packed) x the queries transposed (B: panels of gemm::kNR queries, packed
// once per call). Per k the tile broadcasts one element of each of its rows against the
// query vectors, so each bank row is read from memory once per panel of queries (once for
// Q <= kNR) and the FMAs, not the loads, bound the loop. Each context owns one contiguous
// range of rows (as FAISS and PyTorch split a GEMV over the bank); blocks of kRowBlock rows
// are scored, transformed and fed to the sinks per query while in L1, with the rows'
// norms: these are GEMM scores, so a sink bounds their rounding as on the many-queries path.
template <Metric M, class Sink>
void scan_stream(const float* qp, std::size_t Q, const float* bank, std::size_t N, std::size_t D,
                 std::int64_t offset, bool need_norms, std::size_t ncontexts, Sink&& sink) {
  constexpr std::size_t kQR = gemm::kNR;  // queries per packed panel
  const auto Di = static_cast<gemm::I64>(D);
  const std::size_t qpanels = (Q + kQR - 1) / kQR;
  AlignedFloats qt(gemm::packed_bt_size(static_cast<gemm::I64>(Q), Di));
  gemm::pack_bt(qp, Di, static_cast<gemm::I64>(Q), Di, qt.data());
  const bool norms = M != Metric::inner_product || need_norms;
  parallel_for(ncontexts, 1, [&](std::size_t cb, std::size_t ce) {
    AlignedFloats C(kRowBlock * kQR);
    std::vector<float> buf(Q * kRowBlock), sq(kRowBlock), term(kRowBlock);
    for (std::size_t c = cb; c < ce; ++c) {
      const std::size_t r0 = N * c / ncontexts, r1 = N * (c + 1) / ncontexts;
      for (std::size_t j = r0; j < r1; j += kRowBlock) {
        const std::size_t nb = std::min(kRowBlock, r1 - j);
        const float* rows = bank + j * D;
        RowNorms row_norms{sq.data(), 0.0f};
        if (norms)
          for (std::size_t r = 0; r < nb; ++r) {
            sq[r] = simd::sqnorm(rows + r * D, D);
            term[r] = row_term<M>(sq[r]);
            row_norms.max_sq = std::fmax(row_norms.max_sq, sq[r]);
          }
        for (std::size_t p = 0; p < qpanels; ++p) {
          const std::size_t a0 = p * kQR, nq = std::min(kQR, Q - a0);
          const std::size_t width = (nq + gemm::kW - 1) / gemm::kW * gemm::kW;
          // C (nb x width) = rows (nb x D) . queries^T (D x width)
          gemm::gemm(false, static_cast<gemm::I64>(nb), static_cast<gemm::I64>(width), Di, 1.0f, rows, Di, 1,
                     qt.data() + a0 * D, kQR, Di * static_cast<gemm::I64>(kQR), C.data(), kQR);
          for (std::size_t a = 0; a < nq; ++a) {
            float* out = buf.data() + (a0 + a) * kRowBlock;
            for (std::size_t r = 0; r < nb; ++r) out[r] = transform<M>(C[r * kQR + a], term[r]);
          }
        }
        for (std::size_t a = 0; a < Q; ++a)
          sink(MetricTag<M>{}, c, a, buf.data() + a * kRowBlock, nb, offset + static_cast<std::int64_t>(j), rows,
               norms ? &row_norms : nullptr);
      }
    }
  });
}

// Many-queries path: fused per-thread tiles. The work is split into items of
// (bank chunk of gemm_bank_chunk(D) rows) x (group of query panels), claimed dynamically
// by the pool's threads. An item computes its chunk's norms once and packs the chunk into
// the thread's panel buffer (L2-sized); then for each panel of kTileQ queries it fills a
// kTileQ x chunk score tile with the register-tile kernel, applies the metric transform
// and feeds the tile's rows to the sinks while they are in L1. Sinks get the running
// thread's context index, so every context owns its heaps/counters; the caller merges
// the contexts. Every score is computed the same way wherever it lies, so results do not
// depend on the schedule or the thread count. A non-finite score is reported for the
// lowest such bank row (items past a known one are skipped).
template <Metric M, class Sink>
void scan_gemm(const float* qp, std::size_t Q, const float* bank, std::size_t N, std::size_t D,
               std::int64_t offset, bool need_norms, std::size_t ncontexts, Sink&& sink) {
  constexpr std::size_t kTileQ = gemm::kMR, kTileR = gemm::kNR;
  const std::size_t npanels = (Q + kTileQ - 1) / kTileQ;
  const std::size_t rb = std::min(N, gemm_bank_chunk(D));
  const std::size_t nchunks = (N + rb - 1) / rb;
  // Few chunks (small banks): split the query panels too, so every thread gets items.
  const std::size_t want = kItemsPerContext * ncontexts;
  const std::size_t ngroups =
      nchunks >= want ? 1 : std::min(npanels, (want + nchunks - 1) / nchunks);
  const std::size_t nitems = nchunks * ngroups;
  const std::size_t rpanels_max = (rb + kTileR - 1) / kTileR;
  const std::size_t ld = rpanels_max * kTileR;
  const bool norms = M != Metric::inner_product || need_norms;
  constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::max();
  std::atomic<std::int64_t> first_bad{kNone};
  std::atomic<std::size_t> next_context{0};
  parallel_claim(nitems, [&](const ClaimFn& next) {
    const std::size_t c = next_context.fetch_add(1, std::memory_order_relaxed);
    if (c >= ncontexts) return;  // the pool grew since ncontexts was read: others take all items
    AlignedFloats packed(rpanels_max * kTileR * D);
    AlignedFloats S(kTileQ * ld);
    std::vector<float> sq(norms ? rb : 0), term(norms ? rb : 0);
    RowNorms row_norms{sq.data(), 0.0f};
    std::size_t packed_chunk = nchunks;  // the chunk now in `packed`
    for (std::size_t item; next(item);) {
      const std::size_t chunk = item / ngroups, group = item % ngroups;
      const std::size_t j0 = chunk * rb, nb = std::min(rb, N - j0);
      const std::int64_t gj0 = offset + static_cast<std::int64_t>(j0);
      if (gj0 > first_bad.load(std::memory_order_relaxed)) continue;
      const float* rows = bank + j0 * D;
      const std::size_t rpanels = (nb + kTileR - 1) / kTileR;
      if (packed_chunk != chunk) {
        if (norms) {
          row_norms.max_sq = 0.0f;
          for (std::size_t r = 0; r < nb; ++r) {
            sq[r] = simd::sqnorm(rows + r * D, D);
            term[r] = row_term<M>(sq[r]);
            row_norms.max_sq = std::fmax(row_norms.max_sq, sq[r]);
          }
        }
        gemm::pack_bt(rows, static_cast<gemm::I64>(D), static_cast<gemm::I64>(nb), static_cast<gemm::I64>(D),
                      packed.data());
        packed_chunk = chunk;
      }
      const std::size_t p0 = npanels * group / ngroups, p1 = npanels * (group + 1) / ngroups;
      std::int64_t bad = kNone;
      for (std::size_t pnl = p0; pnl < p1; ++pnl) {
        const std::size_t a0 = pnl * kTileQ, nq = std::min(kTileQ, Q - a0);
        // S (nq x rpanels kTileR) = queries . packed rows: per score one multiply-add chain
        // over k = 0..D-1 from zero, whatever the tile's position (same query and row, same float).
        const auto Di = static_cast<gemm::I64>(D);
        gemm::gemm(false, static_cast<gemm::I64>(nq), static_cast<gemm::I64>(rpanels * kTileR), Di, 1.0f,
                   qp + a0 * D, Di, 1, packed.data(), kTileR, Di * static_cast<gemm::I64>(kTileR), S.data(),
                   static_cast<gemm::I64>(ld));
        for (std::size_t i = 0; i < nq; ++i) {
          float* row = S.data() + i * ld;
          if constexpr (M != Metric::inner_product) {
            std::size_t r = 0;
            for (; r + kW <= nb; r += kW) {
              const fbatch v = fbatch::load_aligned(row + r);
              const fbatch t = fbatch::load_unaligned(term.data() + r);
              fbatch out;
              if constexpr (M == Metric::cosine) out = v * t;
              else out = fbatch(2.0f) * v - t;
              out.store_aligned(row + r);
            }
            for (; r < nb; ++r) row[r] = transform<M>(row[r], term[r]);
          }
          try {
            sink(MetricTag<M>{}, c, a0 + i, row, nb, gj0, rows, norms ? &row_norms : nullptr);
          } catch (const NonFiniteScore& e) {
            bad = std::min(bad, e.row);
          }
        }
      }
      if (bad != kNone) {
        std::int64_t seen = first_bad.load(std::memory_order_relaxed);
        while (bad < seen &&
               !first_bad.compare_exchange_weak(seen, bad, std::memory_order_relaxed)) {
        }
      }
    }
  });
  if (first_bad.load() != kNone) throw NonFiniteScore(first_bad.load());
}

bool use_gemm(SearchPath path, std::size_t Q) {
  if (path == SearchPath::gemm) return true;
  if (path == SearchPath::simd) return false;
  return Q >= kGemmMinQueries;
}

std::size_t simd_contexts(std::size_t N) {
  const std::size_t by_rows = std::max<std::size_t>(1, N / kMinRowsPerThread);
  return std::min<std::size_t>(static_cast<std::size_t>(get_num_threads()), by_rows);
}

template <Metric M, class Sink>
void scan(const float* qp, std::size_t Q, const float* bank, std::size_t N, std::size_t D,
          std::int64_t offset, bool gemm, std::size_t ncontexts, Sink&& sink) {
  if (gemm)
    scan_gemm<M>(qp, Q, bank, N, D, offset, std::decay_t<Sink>::kNeedsNorms, ncontexts, sink);
  else scan_stream<M>(qp, Q, bank, N, D, offset, std::decay_t<Sink>::kNeedsNorms, ncontexts, sink);
}

template <class Sink>
void dispatch(Metric metric, const float* qp, std::size_t Q, const float* bank, std::size_t N,
              std::size_t D, std::int64_t offset, bool gemm, std::size_t ncontexts, Sink&& sink) {
  switch (metric) {
    case Metric::inner_product:
      scan<Metric::inner_product>(qp, Q, bank, N, D, offset, gemm, ncontexts, sink);
      break;
    case Metric::cosine:
      scan<Metric::cosine>(qp, Q, bank, N, D, offset, gemm, ncontexts, sink);
      break;
    case Metric::l2:
      scan<Metric::l2>(qp, Q, bank, N, D, offset, gemm, ncontexts, sink);
      break;
  }
}

void check_sizes(std::size_t Q, std::size_t N, std::size_t D) {
  if (N == 0) throw std::invalid_argument("bank is empty");
  if (D == 0) throw std::invalid_argument("dimension D is 0");
  if (Q > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      D > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw std::invalid_argument("Q or D too large for BLAS");
}

}  // namespace

void topk_search(const float* queries, std::size_t Q, const float* bank, std::size_t N,
                 std::size_t D, std::size_t k, Metric metric, SearchPath path,
                 std::int64_t index_offset, float* out_scores, std::int64_t* out_indices) {
  check_sizes(Q, N, D);
  if (k == 0 || k > N) throw std::invalid_argument("k must be in [1, N]");
  if (Q == 0) return;
  const PreparedQueries p = prepare_queries(queries, Q, D, metric);
  const bool gemm = use_gemm(path, Q);
  const std::size_t ncontexts = gemm ? gemm_contexts() : simd_contexts(N);
  std::vector<Cand> storage(ncontexts * Q * k);
  std::vector<std::size_t> sizes(ncontexts * Q, 0);
  TopKSink sink{storage.data(), sizes.data(), Q, k};
  dispatch(metric, p.data, Q, bank, N, D, index_offset, gemm, ncontexts, sink);

  parallel_for(Q, 16, [&](std::size_t b, std::size_t e) {
    std::vector<Cand> merged;
    merged.reserve(ncontexts * k);
    for (std::size_t a = b; a < e; ++a) {
      merged.clear();
      for (std::size_t c = 0; c < ncontexts; ++c) {
        const Cand* d = storage.data() + (c * Q + a) * k;
        merged.insert(merged.end(), d, d + sizes[c * Q + a]);
      }
      std::partial_sort(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(k),
                        merged.end(), better);
      const float qsq = metric == Metric::l2 ? simd::sqnorm(queries + a * D, D) : 0.0f;
      for (std::size_t i = 0; i < k; ++i) {
        float s = merged[i].s;
        if (metric == Metric::l2) s = std::fmax(qsq - s, 0.0f);
        out_scores[a * k + i] = s;
        out_indices[a * k + i] = merged[i].j;
      }
    }
  });
}

void ranking_scores(const float* queries, const float* rows, std::size_t Q, std::size_t D,
                    Metric metric, float* out) {
  const PreparedQueries p = prepare_queries(queries, Q, D, metric);
  for (std::size_t a = 0; a < Q; ++a) {
    const float* row = rows + a * D;
    const float d = simd::dot(p.data + a * D, row, D);
    switch (metric) {
      case Metric::inner_product:
        out[a] = d;
        break;
      case Metric::cosine:
        out[a] = transform<Metric::cosine>(d, row_term<Metric::cosine>(simd::sqnorm(row, D)));
        break;
      case Metric::l2:
        out[a] = transform<Metric::l2>(d, row_term<Metric::l2>(simd::sqnorm(row, D)));
        break;
    }
  }
}

void count_ranked_above(const float* queries, std::size_t Q, const float* bank, std::size_t N,
                        std::size_t D, Metric metric, SearchPath path, const float* target_scores,
                        const std::int64_t* targets, std::int64_t index_offset,
                        std::int64_t* counts) {
  check_sizes(Q, N, D);
  if (Q == 0) return;
  const PreparedQueries p = prepare_queries(queries, Q, D, metric);
  const bool gemm = use_gemm(path, Q);
  const std::size_t ncontexts = gemm ? gemm_contexts() : simd_contexts(N);
  std::vector<std::int64_t> partial(ncontexts * Q, 0);
  std::vector<float> qnorm(Q);
  for (std::size_t a = 0; a < Q; ++a) qnorm[a] = std::sqrt(simd::sqnorm(p.data + a * D, D));
  RankSink sink{partial.data(), Q, D, p.data, qnorm.data(), target_scores, targets};
  dispatch(metric, p.data, Q, bank, N, D, index_offset, gemm, ncontexts, sink);
  for (std::size_t c = 0; c < ncontexts; ++c)
    for (std::size_t a = 0; a < Q; ++a) counts[a] += partial[c * Q + a];
}

SEQLAB_LEVEL_END
}  // namespace seqlab
