// Incremental causal self-attention against a key/value cache, for generation:
// Tn new queries (Tn = 1 per generated token; the prompt's length for the prefill)
// attend over the keys and values of every earlier position, held in the cache, and
// over their own. The prefix is never re-projected nor re-run.
//
//   write  K[b, h, pos + i] = k[b, h, i], V[b, h, pos + i] = v[b, h, i]   (i < Tn)
//   o[b, h, i] = softmax_j(scale q_i . K_j, j <= pos + i) V_j               (naive reference:
//                                                                           tests/test_kv_attention.py)
//
// Per (b, h), claimed by the pool's threads (a small call, such as one generated token
// over a short cache, stays on the calling thread); one query row at a time: scores by SIMD
// dot products over the cached rows, a softmax in place, the output as a sum of value
// rows weighted by the probabilities. q, k, v and o are strided views (as in
// attention.hpp), so the packed (B, Tn, 3E) projection and the merged-head (B, Tn, E)
// output need no copies; the caches are contiguous (B, H, Tmax, D) and (B, H, Tmax, Dv).
// Inference only: no backward.
#pragma once
#include "seqlab/level.hpp"

#include "seqlab/attention.hpp"

namespace seqlab {

struct KvShape {
  int B = 0, H = 0, Tn = 0, Tmax = 0, D = 0, Dv = 0;
  int pos = 0;  // positions already in the cache; pos + Tn <= Tmax
};

SEQLAB_LEVEL_BEGIN
void kv_cache_attention(const KvShape& shape, float scale, AttnView q, AttnView k, AttnView v,
                        float* key_cache, float* value_cache, AttnMutView o);
SEQLAB_LEVEL_END

}  // namespace seqlab
