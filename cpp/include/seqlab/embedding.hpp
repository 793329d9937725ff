// Embedding lookup: out[i, :] = weight[index[i], :].
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <cstdint>

namespace seqlab {

SEQLAB_LEVEL_BEGIN
// Position of the first index outside [0, num_embeddings), or -1 when all are valid.
std::int64_t embedding_first_bad_index(const std::int64_t* index, std::size_t n,
                                       std::int64_t num_embeddings);

// index (n,), weight (V, D) -> out (n, D). Indices must be valid (checked by the caller).
void embedding_forward(const std::int64_t* index, const float* weight, float* out, std::size_t n,
                       std::size_t D);

// ACCUMULATES grad_weight (V, D) += scatter of grad_out (n, D) by index, skipping rows
// whose index equals padding_idx (pass -1 for none). Deterministic: each output column
// block is owned by one thread and rows are added in order.
void embedding_backward(const std::int64_t* index, const float* grad_out, float* grad_weight,
                        std::size_t n, std::size_t D, std::int64_t padding_idx);
SEQLAB_LEVEL_END

}  // namespace seqlab
