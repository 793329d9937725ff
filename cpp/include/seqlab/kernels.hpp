// The table of kernel entry points, one per instruction-set level (see level.hpp).
//
// Each level's translation units define seqlab::<level>::kernel_table() (kernel_table.cpp,
// compiled once per level); cpu_dispatch.cpp picks one table at import from the CPU's
// features and SEQLAB_ARCH, and kernels() returns it. Code compiled once (the bindings)
// calls seqlab::kernels().name(...), never a kernel directly.
#pragma once
#include "seqlab/activations.hpp"
#include "seqlab/adam.hpp"
#include "seqlab/attention.hpp"
#include "seqlab/clip.hpp"
#include "seqlab/conv1d.hpp"
#include "seqlab/cross_entropy.hpp"
#include "seqlab/decoder.hpp"
#include "seqlab/embedding.hpp"
#include "seqlab/gpt_decode.hpp"
#include "seqlab/kv_attention.hpp"
#include "seqlab/layer_norm.hpp"
#include "seqlab/level.hpp"
#include "seqlab/linear.hpp"
#include "seqlab/linear_cross_entropy.hpp"
#include "seqlab/losses.hpp"
#include "seqlab/pointer_generator.hpp"
#include "seqlab/recurrent.hpp"
#include "seqlab/sgd.hpp"
#include "seqlab/similarity.hpp"
#include "seqlab/softmax.hpp"
#include "seqlab/topk.hpp"

// Every kernel the bindings call, by name (the one list: the table's fields and each
// level's table are generated from it).
#define SEQLAB_KERNELS(X)                                                                  \
  X(sigmoid_forward) X(sigmoid_backward) X(tanh_forward) X(tanh_backward) X(relu_forward)  \
  X(relu_backward) X(add_relu_forward) X(add_forward) X(gelu_forward) X(gelu_backward)     \
  X(adam_step) X(sgd_step) X(grad_total_norm) X(grad_clip_scale)                           \
  X(attention_forward) X(attention_backward) X(kv_cache_attention) X(gpt_decode_step)     \
  X(conv1d_forward) X(conv1d_backward) X(temporal_block_forward) X(temporal_block_backward) \
  X(cross_entropy_forward) X(cross_entropy_backward) X(cosine_mse_forward)                 \
  X(cosine_mse_backward) X(decoder_forward) X(decoder_backward)                            \
  X(pointer_generator_forward) X(pointer_generator_backward)                               \
  X(make_pointer_generator_stepper) X(embedding_first_bad_index) X(embedding_forward)      \
  X(embedding_backward) X(layer_norm_forward) X(layer_norm_backward) X(linear_forward)     \
  X(linear_backward) X(bf16_gemm_supported) X(bf16_gemm_engine) X(linear_bf16_forward) X(linear_bf16_backward)     \
  X(linear_cross_entropy) X(linear_cross_entropy_workspace)                                \
  X(recurrent_forward) X(recurrent_backward) X(rowwise_cosine)          \
  X(pairwise_scores) X(softmax_forward) X(softmax_backward) X(topk_search)                 \
  X(ranking_scores) X(count_ranked_above)

namespace seqlab {

// One pointer per kernel, of the kernel's own type (all levels share the signatures).
struct Kernels {
#define SEQLAB_KERNEL_POINTER(name) decltype(&::seqlab::name) name;
  SEQLAB_KERNELS(SEQLAB_KERNEL_POINTER)
#undef SEQLAB_KERNEL_POINTER
};

// The table of the level selected at import (cpu_dispatch.cpp).
const Kernels& kernels();

SEQLAB_LEVEL_BEGIN
// This level's table (kernel_table.cpp); defined only by the level's own objects.
const Kernels& kernel_table();
SEQLAB_LEVEL_END

}  // namespace seqlab
