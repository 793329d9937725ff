// One incremental step of a GPT decoder (generation with a key/value cache), in one call:
// Tn new tokens of each of B sequences, after the `pos` positions already cached.
//
//   x     = wte[ids] + wpe[pos + i]                                          (M = B Tn rows, E)
//   per block l:
//     qkv = ln_1(x) Wqkv^T + bqkv                                            (M, 3E)
//     K_l[b, h, pos + i], V_l[b, h, pos + i] = the key and value heads of qkv (kv_cache_attention)
//     a   = softmax(q K_l^T / sqrt(Dh), causal) V_l, heads merged            (M, E)
//     x  += a Wout^T + bout
//     x  += gelu(ln_2(x) Wfc^T + bfc) Wproj^T + bproj                        (M, F) -> (M, E)
//   logits[b] = ln_f(x[b, Tn - 1]) wte^T                                     (B, V), tied output
//
// No autograd, no copies of the parameters (read in place through GptWeights), every
// buffer preallocated in GptDecodeBuffers (resized only when M grows). A few rows (a
// generated token per sequence) go through SIMD matrix-vector products, each weight row
// read once for all rows; the large ones (the tied output layer) split their output rows
// over the pool. Many rows (a prompt) go through linear_forward's GEMMs. The reference is
// the model's full forward (tests/test_gpt_decode.py).
#pragma once
#include "seqlab/level.hpp"

#include <cstdint>
#include <vector>

namespace seqlab {

struct GptDecodeShape {
  int B = 0, Tn = 0;  // sequences, new tokens of each
  int E = 0, H = 0, F = 0, V = 0, L = 0, Tmax = 0;
  float eps = 1e-5f;
  bool gelu_tanh = true;  // GELU's tanh approximation (GPT-2) or the exact erf form
};

// Pointers to one block's parameters, laid out as torch's (weights (out, in)); a null
// bias (or LayerNorm bias) means none.
struct GptBlockWeights {
  const float *ln1_w = nullptr, *ln1_b = nullptr;
  const float *qkv_w = nullptr, *qkv_b = nullptr;  // (3E, E), (3E,)
  const float *out_w = nullptr, *out_b = nullptr;  // (E, E), (E,)
  const float *ln2_w = nullptr, *ln2_b = nullptr;
  const float *fc_w = nullptr, *fc_b = nullptr;      // (F, E), (F,)
  const float *proj_w = nullptr, *proj_b = nullptr;  // (E, F), (E,)
};

struct GptWeights {
  const float* wte = nullptr;  // (V, E): token embedding and tied output layer
  const float* wpe = nullptr;  // (Tmax, E)
  std::vector<GptBlockWeights> blocks;
  const float *lnf_w = nullptr, *lnf_b = nullptr;
};

// Scratch of one decoder, reused from step to step.
struct GptDecodeBuffers {
  std::vector<float> x, h, qkv, att, ff, last, mean, rstd;
};

SEQLAB_LEVEL_BEGIN
// ids (B, Tn) in [0, V); pos + Tn <= Tmax; key_caches[l], value_caches[l] (B, H, Tmax, E / H)
// for l < L, written at positions [pos, pos + Tn). Writes logits (B, V) of each
// sequence's last new token.
void gpt_decode_step(const GptDecodeShape& shape, const GptWeights& weights, const std::int64_t* ids, int pos,
                     float* const* key_caches, float* const* value_caches, float* logits,
                     GptDecodeBuffers& buffers);
SEQLAB_LEVEL_END

}  // namespace seqlab
