// Teacher-forced pointer-generator decoder (See et al. 2017) over a whole target, as
// one forward/backward pair: the attention decoder of decoder.hpp (LSTM cell, no input
// feeding: step t reads only the embedding of the previous target token), its
// vocabulary projection as one GEMM over all steps, then per step the copy gate, the
// mixture of the vocabulary and copy distributions, and the masked negative
// log-likelihood of the target's extended ids.
//
// Shapes (batch-first, float32 unless said), V vocabulary size, Z = 2H, X = V + OOV
// slots (the extended vocabulary):
//   inputs (B, T, E)   embeddings of the previous target tokens: step t reads
//                      inputs[:, t-1], step 0 the learned start (E) (decoder.hpp)
//   source_ids (B, S) int64 in [0, X): the source tokens' extended ids (vocabulary ids
//                      for known tokens, V + k for the k-th distinct unknown one)
//   target_ids (B, T) int64 in [0, X): the extended ids to predict
//   target_mask (B, T) uint8: steps counted in the loss
//   w_out (V, Z) b_out (V): vocabulary logits from [h_t; ctx_t]
//   w_gen (Z + E) b_gen (1): p_gen = sigmoid(w_gen . [h_t; ctx_t; u_t] + b_gen)
//
// Per step, with a_t the attention weights averaged over the heads (the copy
// distribution is the mean over heads) and len_b the source length:
//   P(w) = p_gen * softmax(logits)[w] (w < V)
//        + (1 - p_gen) * sum_{s < len_b, source_ids[b, s] == w} a_t[s]
//   loss = sum_{(b, t) in mask} -log(P(target_ids[b, t]) + eps) / |mask|
// (eps = 1e-12; loss 0 when the mask is empty).
//
// Cost: the decoder's recurrent core without its output head (one GEMM for the input
// projection, per step the recurrent, query and attention-output products, the
// attention SIMD rows), then the head over the counted rows only (padding steps cost
// nothing): one GEMM for their logits, and per row one pass adding the bias and
// taking the max, one pass for the log-sum-exp; the probabilities are never written.
// Backward turns the logits into their gradient in one pass per row (the output
// bias's gradient summed in the same pass), then one GEMM each for the features' and
// the output weight's gradients, and runs the decoder's backward with the head's, the
// gate's and the copy's gradients.
#pragma once
#include "seqlab/level.hpp"
#include <xtensor/xtensor.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "seqlab/decoder.hpp"

namespace seqlab {

constexpr float kPointerGeneratorEps = 1e-12f;

struct PointerGeneratorShape {
  DecoderShape dec;   // B, T, E, H, O = V, S, A, heads (> 0)
  int extended = 0;   // X = V + OOV slots
};

struct PointerGeneratorCache {
  DecoderCache dec;   // the recurrent core (its output head unused)
  PointerGeneratorShape shape;
  const float* w_out = nullptr;
  const float* b_out = nullptr;
  const float* w_gen = nullptr;
  float b_gen = 0.0f;
  std::vector<std::int64_t> source_ids, target_ids;  // (B*S), (B*T)
  std::vector<std::uint8_t> mask;                    // (B*T)
  std::vector<std::size_t> rows;                     // (count) the counted rows (b, t), ascending
  std::size_t count = 0;                             // steps in the mask
  xt::xtensor<float, 1> p_gen, p_vocab, p_copy;      // (B*T) at the target id
  xt::xtensor<float, 2> head_features;  // (count, Z) [h_t; ctx_t] of the counted rows
  xt::xtensor<float, 2> logits;         // (count, V) biased logits, then their gradient
  xt::xtensor<float, 1> log_norm;       // (count) log-sum-exp of each row of logits
  // Backward workspaces.
  xt::xtensor<float, 2> d_head;      // (count, Z) d [h_t; ctx_t] through the logits
  xt::xtensor<float, 2> d_bias;      // (chunks, V) partial sums of the output bias's gradient
  xt::xtensor<float, 2> d_features;  // (B*T, Z)
  xt::xtensor<float, 2> d_probs;     // (B*T*heads, S)
  xt::xtensor<float, 2> d_inputs;    // (B*T, E) d u_t
  xt::xtensor<float, 1> d_gate;      // (B*T) d of the gate's pre-activation
};

SEQLAB_LEVEL_BEGIN
// Forward: returns the mean masked NLL. memory_lengths, h0, c0 may be null.
float pointer_generator_forward(const PointerGeneratorShape& shape, const DecoderWeights& w,
                                const float* w_gen, const float* b_gen, const float* inputs,
                                const float* h0, const float* c0, const float* memory,
                                const std::int64_t* memory_lengths, const std::int64_t* source_ids,
                                const std::int64_t* target_ids, const std::uint8_t* target_mask,
                                PointerGeneratorCache& cache);

// Backward of the loss scaled by d_loss. Adds the parameter gradients into grads,
// d_w_gen (Z + E), d_b_gen (1) and d_start; writes d_inputs (B, T, E), dh0, dc0
// (B, H) and d_memory (B, S, A) (each may be null).
void pointer_generator_backward(PointerGeneratorCache& cache, float d_loss, const DecoderGrads& grads,
                                float* d_w_gen, float* d_b_gen, float* d_inputs, float* dh0,
                                float* dc0, float* d_memory);
SEQLAB_LEVEL_END

// Incremental decoding (beam search, sampling): built once per batch of sources, it
// projects the memory's keys and values and packs the step's weights; each step then
// advances N rows (beams or samples) by one token, row n reading the memory of example
// rows[n], without re-running the prefix.
//
// One step: gates = x W_ih^T + h W_hh^T + b, the LSTM cell, q = h' W_q^T + b_q, the
// heads' attention over the cached keys and values, ctx W_o^T + b_o, the logits
// [h'; ctx] W_out^T + b_out (for up to 32 rows a kernel that streams W_out once, split
// over the pool by columns, each 128 kB block of it serving every group of 8 rows from
// L2; one GEMM split over the pool for more), p_gen, and
//   log_probs[n, w] = log(p_gen softmax(logits)[w] + (1 - p_gen) sum_{s: source[s] = w} a[s])
// over the X extended ids (-inf for ids neither in the vocabulary nor in the source).
// An id outside the source gets log p_gen + logits[w] - logsumexp(logits) (one SIMD
// pass, no exp or log per id); only the source's distinct ids (listed per example
// when the stepper is built) take the mixture's log.
class PointerGeneratorStepper {
 public:
  virtual ~PointerGeneratorStepper() = default;
  // rows (N) in [0, B); x (N, E) the inputs' embeddings; h, c (N, H). Writes h_new,
  // c_new (N, H) and, unless null, log_probs (N, X) and attention (N, S) (the heads'
  // mean). With top_k > 0 also writes each row's top_k largest log-probabilities,
  // largest first (ties: the smaller id first), into top_values and their extended
  // ids into top_ids (N, top_k) (top_k <= X): what beam search reads, in the same
  // pass as the log-probabilities.
  virtual void step(int N, const std::int64_t* rows, const float* x, const float* h, const float* c,
                    float* h_new, float* c_new, float* log_probs, float* attention, int top_k = 0,
                    float* top_values = nullptr, std::int64_t* top_ids = nullptr) = 0;
  virtual const PointerGeneratorShape& shape() const = 0;
};

SEQLAB_LEVEL_BEGIN
// The stepper of this instruction-set level. shape.dec: B, S, A (memory), E, H, O = V,
// heads; shape.extended = X. The weights (and w_gen (Z + E), b_gen (1) or null) must
// outlive the stepper; memory (B, S, A), memory_lengths (B) (null: all S) and
// source_ids (B, S) are copied or projected.
//
// bf16_logits: the stepper keeps a bf16 copy of w_out (made here, once: V x Z x 2 bytes)
// and each step streams it instead of the fp32 weight, half the bytes (the step is bound
// by reading w_out); the fp32 accumulation and everything else stay fp32. The ids that
// can rank among a row's max(top_k, 1) best (those within twice a bound on the rounding
// error, 2^-8 sum_j |z_j| max_v |w_out[v, j]|, of the k-th bf16 value) are re-scored in
// fp32 (bit-identical to the fp32 step's logits). The log-sum-exp takes their exact terms
// (the largest) and the other ids' bf16 ones, so the log-probabilities differ from the
// fp32 step's by a shift bounded by the other ids' share of the mass times the rounding
// bound (~1e-6 on peaked rows, up to ~1e-4 on flat rows of large logits). The top-k ids
// (and the argmax of log_probs) are the fp32 step's except where a copied source id and
// a vocabulary id are closer than that shift (it moves them by different amounts); the
// other ids' log_probs are the bf16 ones. A row with more candidates than the re-scoring
// buffer holds is computed in fp32, and so are steps of more than 32 rows (their GEMM is
// compute-bound, not memory-bound).
std::unique_ptr<PointerGeneratorStepper> make_pointer_generator_stepper(
    const PointerGeneratorShape& shape, const DecoderWeights& w, const float* w_gen, const float* b_gen,
    const float* memory, const std::int64_t* memory_lengths, const std::int64_t* source_ids,
    bool bf16_logits);
SEQLAB_LEVEL_END

}  // namespace seqlab
