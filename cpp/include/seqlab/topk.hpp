// Exact top-k search and target ranks of Q queries against a bank of N vectors.
//
// Two paths, chosen by the number of queries:
//  - few queries (Q < kGemmMinQueries): the bank is split into one contiguous range
//    of rows per thread; each thread scores blocks of 64 rows against all queries with
//    the shared register-tile micro-kernel (seqlab/gemm_microkernel.hpp), bank rows as
//    its A operand read where they lie (nothing of the bank is packed), the queries
//    transposed and packed once as its B panel, and keeps its own bounded heap per query;
//    the heaps are merged at the end. The bank is read once per 64 queries (once here).
//  - many queries: fused per-thread tiles, no BLAS. Work items (a chunk of bank rows,
//    512 at D=384 and 256 at D=768, x all queries, or x a group of queries when the bank
//    has few chunks) are claimed dynamically by the pool's threads. An item packs its chunk
//    into the thread's L2-resident panel buffer, then for each panel of 6 queries fills a
//    6 x chunk score tile with a 6 x 64-row register-tile kernel (AVX-512: 24 accumulators)
//    and at once feeds it to a SIMD threshold filter and that thread's bounded heap per
//    query (or rank counter). No score matrix goes through memory and there is one pool
//    join per call; the per-thread heaps are merged at the end.
// Cosine normalises the queries once and scales by bank norms computed once per bank chunk;
// L2 ranks by 2 q.b - |b|^2 and reports the squared distance |q|^2 - that.
// Candidates are ordered by score, then by the lower bank index, so the result is a
// unique total order: identical for any thread count (each score is one
// multiply-add chain over k, the same wherever its tile lies and whichever thread runs it). The
// bank pointer is only read chunk by chunk, so a memory-mapped bank is streamed, never
// copied.
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "seqlab/similarity.hpp"

namespace seqlab {

enum class SearchPath { automatic, simd, gemm };

// FAISS switches to BLAS at 20 queries; so does seqlab.
inline constexpr std::size_t kGemmMinQueries = 20;

// Raised when a bank row gives a non-finite score (NaN or Inf in the row, or overflow).
class NonFiniteScore : public std::runtime_error {
 public:
  explicit NonFiniteScore(std::int64_t bank_row)
      : std::runtime_error("non-finite score"), row(bank_row) {}
  std::int64_t row;
};

SEQLAB_LEVEL_BEGIN
// queries (Q, D), bank (N, D), 1 <= k <= N. Writes out_scores (Q, k) and out_indices (Q, k)
// best first: inner products or cosines descending, squared L2 distances ascending.
// index_offset is added to every reported bank index (for banks searched in chunks).
void topk_search(const float* queries, std::size_t Q, const float* bank, std::size_t N,
                 std::size_t D, std::size_t k, Metric metric, SearchPath path,
                 std::int64_t index_offset, float* out_scores, std::int64_t* out_indices);

// The ranking score of each query against one row: rows (Q, D) paired with queries (Q, D).
// Inner product, cosine, or 2 q.b - |b|^2 for l2 (higher is better), computed exactly as
// the few-queries path computes it.
void ranking_scores(const float* queries, const float* rows, std::size_t Q, std::size_t D,
                    Metric metric, float* out);

// For each query q, adds to counts[q] the number of bank rows j (global index
// j + index_offset, != targets[q]) whose ranking score is above target_scores[q],
// or equal to it with a lower index than targets[q]. Summed over all rows this is the
// 0-based rank of the target.
void count_ranked_above(const float* queries, std::size_t Q, const float* bank, std::size_t N,
                        std::size_t D, Metric metric, SearchPath path, const float* target_scores,
                        const std::int64_t* targets, std::int64_t index_offset,
                        std::int64_t* counts);
SEQLAB_LEVEL_END

}  // namespace seqlab
