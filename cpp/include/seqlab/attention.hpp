// Scaled dot-product attention over (B, H, Tq, D) queries and (B, H, Tk, D) keys,
// (B, H, Tk, Dv) values, as a forward/backward pair with two paths:
//
//   plain: per (b, h) and tile of query rows against all keys, in a per-thread scratch
//          that stays in L2: S = scale Q K^T (one GEMM), masks, E = exp(S - rowmax),
//          P = E / rowsum stored for the backward (memory B*H*Tq*Tk floats; streamed out
//          with non-temporal stores once it outgrows the caches), O = (E V) / rowsum (one
//          GEMM on the hot tile). The backward recomputes nothing: per (b, h), tiles of
//          query rows against all keys, dP = dO V^T, dS = P (dP - rowsum(dO O)) while the
//          tile is in L2, dV += P^T dO, dQ = scale dS K, dK += scale dS^T Q.
//   flash: tiles of kBlockQ queries x kBlockK keys with an online softmax (running
//          row max and sum, output rescaled per key tile); only the per-row
//          logsumexp is kept (B*H*Tq floats) and backward recomputes P tile by tile.
//
// The flash backward runs FlashAttention-2's schedule per (b, h): key tiles of
// kAttnBwdBlockK outer, query tiles of kAttnBwdBlockQ inner, dV and dK accumulated per
// key tile, dQ across key tiles. Causal attention skips the tiles above the diagonal
// on both paths (flash backward: a key tile starts at its first query row that sees it;
// plain: a query tile's products stop at its last row's last visible key; the forward's
// softmax stops at each row's last visible key). Tiles (forward) and heads (backward)
// are claimed dynamically by the pool's threads (parallel_claim).
//
// The products run on an unpacked AVX-512 GEMM kernel (attention.cpp: 6 x 64 register
// blocks, A broadcast element by element, B rows read in place; K^T and V^T transposed
// once per head into 64-column panels) when the key length and head sizes are multiples
// of 16 on an AVX-512 build, on OpenBLAS otherwise: at these shapes OpenBLAS spends
// 10-15% of its time packing operands it uses once.
//
// Every tensor is a strided view: element strides for batch, head and token, the
// feature dimension contiguous. So q, k, v may be slices of one packed (B, T, 3E)
// projection and the output may be written in (B, T, H*Dv) layout, without copies.
//
// Masking, all optional and combined: an additive float mask broadcast to
// (B, H, Tq, Tk) (element strides, 0 for broadcast dimensions, last dimension
// contiguous), an additive key bias (B, Tk) (key padding), and causal masking
// (query i sees keys j <= i, top-left aligned as torch's is_causal). A boolean mask
// is passed as 0 / -inf. A row whose keys are all masked (-inf) yields output 0 and
// gradient 0 (torch's math path), never NaN; its logsumexp is stored as +inf.
//
// Dropout on the weights (p in [0, 1)) uses a counter-based hash of
// (seed, b*H + h, i, j), so both paths and the backward recompute the same mask
// without storing it, independently of the thread count.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <cstddef>
#include <cstdint>

namespace seqlab {

// Tile sizes of the flash path (PyTorch's CPU flash kernel: query blocks 32-256, key blocks 512).
constexpr int kAttnBlockQ = 64;
constexpr int kAttnBlockK = 256;
// Backward tiles (key tiles outer): smaller key tiles waste less on the causal diagonal.
constexpr int kAttnBwdBlockQ = 128;
constexpr int kAttnBwdBlockK = 64;
// Plain path: query rows per tile (against all keys) at most, forward and backward
// (scratch 512 KiB and 256 KiB at Tk = 512); fewer at short or causal lengths.
constexpr int kAttnPlainBlockQ = 256;
constexpr int kAttnPlainBwdBlockQ = 128;
// Plain path: probabilities of at least this many bytes in all are written with
// non-temporal stores (they would not stay in the caches until the backward).
constexpr std::size_t kAttnStreamBytes = std::size_t{16} << 20;

struct AttnShape {
  int B = 0, H = 0, Tq = 0, Tk = 0, D = 0, Dv = 0;
};

// A read-only strided view: element (b, h, t, d) at data[b*sb + h*sh + t*st + d].
struct AttnView {
  const float* data = nullptr;
  std::int64_t sb = 0, sh = 0, st = 0;
};

// A writable strided view of the same form.
struct AttnMutView {
  float* data = nullptr;
  std::int64_t sb = 0, sh = 0, st = 0;
};

struct AttnOptions {
  float scale = 1.0f;
  bool causal = false;
  // Additive mask, element (b, h, i, j) at mask[b*mb + h*mh + i*mq + j]; null for none.
  const float* mask = nullptr;
  std::int64_t mb = 0, mh = 0, mq = 0;
  // Additive per-key bias (B, Tk) row-major (key padding); null for none.
  const float* key_bias = nullptr;
  float dropout_p = 0.0f;
  std::uint64_t seed = 0;
  bool flash = false;
};

// What backward needs besides the inputs (which the caller keeps alive and unchanged).
// A cache whose backward has run may be passed to the next forward, which then reuses
// its buffer when the size matches instead of allocating and page-faulting a new one.
struct AttentionCache {
  AttnShape shape;
  AttnOptions opts;
  xt::xtensor<float, 1> probs;  // plain path: (B*H, Tq, Tk) softmax before dropout
  xt::xtensor<float, 1> lse;    // flash path: (B*H, Tq) row logsumexp (+inf for fully masked rows)
};

SEQLAB_LEVEL_BEGIN
// Writes o (B, H, Tq, Dv). If `weights` is not null it receives the attention weights
// (B, H, Tq, Tk) contiguous, after dropout (plain path only). Fills `cache`.
void attention_forward(const AttnShape& shape, const AttnOptions& opts, AttnView q, AttnView k,
                       AttnView v, AttnMutView o, float* weights, AttentionCache& cache);
SEQLAB_LEVEL_END

// ACCUMULATES dq (B, H, Tq, D), dk (B, H, Tk, D), dv (B, H, Tk, Dv) (+=; any data may be
// null when that gradient is not needed) from do_ (B, H, Tq, Dv), given the forward's
// inputs, output o and cache. A gradient whose `overwrite` flag is set is written
// instead: each head's task zeroes its rows first (in parallel, leaving them in cache),
// so the caller need not zero a fresh buffer. The zeroing of all three precedes any
// accumulation of a head, so views of one buffer may alias.
struct AttnOverwrite {
  bool dq = false, dk = false, dv = false;
};
SEQLAB_LEVEL_BEGIN
void attention_backward(const AttentionCache& cache, AttnView q, AttnView k, AttnView v,
                        AttnView o, AttnView do_, AttnMutView dq, AttnMutView dk, AttnMutView dv,
                        AttnOverwrite overwrite = {});
SEQLAB_LEVEL_END

}  // namespace seqlab
