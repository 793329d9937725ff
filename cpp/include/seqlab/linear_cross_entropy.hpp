// The tied output layer of a language model fused with its mean cross-entropy: logits
// x W^T over blocks of rows, never the whole (N, V) logit matrix.
//
// Each thread takes a fixed contiguous share of the rows and walks it in blocks of R rows
// (R x V floats, about 4 MiB, 64 to 256 rows). Per block: logits = x_blk W^T (one GEMM),
// per row the max m, the log-sum s = log sum_j exp(l_j - m) and loss = (m - l_t) + s,
// then in place dlogits = scale (softmax - onehot(t)), and with it dx_blk = dlogits W and
// the block's share of dW += dlogits^T x_blk, accumulated in the thread's own (V, D)
// buffer. The buffers are summed in thread order at the end, so the results depend on the
// thread count only, not on the schedule. Every block product is one single-threaded
// OpenBLAS sgemm.
//
// The gradients are formed during the forward (the logits are in cache then): the
// backward of a mean loss only scales them by the upstream gradient. This is three GEMMs
// for the layer, as unfused, with the (N, V) logits never written to or read from memory.
//
// bf16 (AMX levels only): the three products on AMX tiles with operands rounded to bf16 and
// fp32 accumulation (gemm_amx.hpp), the softmax in fp32. W is packed once per call for the
// logits and once for dx; each thread claims blocks of 32-128 rows (about 1 MiB of fp32
// logits): logits, loss and G in place, dx_blk = G W, and G's rows written into G packed
// as B panels, up to 16 MiB of bf16 (all rows at the code LM's sizes). dW^T = x^T G then
// runs once over those rows (K = the rows) instead of once per block, split over blocks of
// G's columns and written transposed into dW: every output is one fixed sequence of fp32
// operations, the same bits at any thread count.
//
// Scratch (the logits blocks, the per-thread dW, the packs) lives in a caller's workspace
// of linear_cross_entropy_workspace() bytes, reused from call to call (no page faults);
// with none or a smaller one the kernel allocates its own.
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>
#include <cstdint>

namespace seqlab {

SEQLAB_LEVEL_BEGIN
// hidden (N, D), weight (V, D), target (N,) in [0, V) or equal to ignore_index.
// Writes loss (N,): the cross-entropy of row i's logits hidden_i W^T against target_i,
// 0 for ignored rows. When dhidden != nullptr (then dweight too) also WRITES
//   dhidden (N, D) = scale * G W   and   dweight (V, D) = scale * G^T hidden,
// G (N, V) = softmax(hidden W^T) - onehot(target), zero rows for ignored targets.
// bf16: the products in bf16 on AMX (throws std::runtime_error where the process cannot
// use AMX: bf16_gemm_engine() is not "amx"). workspace: workspace_bytes bytes of scratch
// (any alignment), or nullptr.
void linear_cross_entropy(const float* hidden, const float* weight, const std::int64_t* target, float* loss,
                          float* dhidden, float* dweight, std::size_t N, std::size_t D, std::size_t V,
                          std::int64_t ignore_index, float scale, bool bf16 = false, void* workspace = nullptr,
                          std::size_t workspace_bytes = 0);
// Bytes of workspace linear_cross_entropy uses for these shapes, at the current thread
// count, with the gradients (grad) or without; 0 for bf16 at a level without it.
std::size_t linear_cross_entropy_workspace(std::size_t N, std::size_t D, std::size_t V, bool grad, bool bf16);
SEQLAB_LEVEL_END

}  // namespace seqlab
