// Linear layer: y = act(x W^T + b) over M rows (all leading dimensions flattened), with
// the bias and an optional activation fused into the GEMM's epilogue.
//
// Every GEMM here splits its rows over the kernel thread pool, each part one
// single-threaded OpenBLAS call (SerialBlas): OpenBLAS's own worker threads spin for a
// while after each call and would otherwise compete with the pool's threads of the
// next kernel (attention, LayerNorm, activations) for the cores.
#pragma once
#include "seqlab/level.hpp"
#include <cstddef>

namespace seqlab {

enum class Activation { kNone, kRelu, kGelu, kGeluTanh };

SEQLAB_LEVEL_BEGIN
// x (M, K), w (N, K), b (N,) or nullptr -> y (M, N) = act(x w^T + b). When `pre` is not
// null it receives x w^T + b (gelu's backward needs it; relu's uses y). Each thread adds
// the bias and applies the activation to a block of rows right after its GEMM, while the
// block is still in cache.
void linear_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                    std::size_t K, std::size_t N, Activation act = Activation::kNone,
                    float* pre = nullptr);

// grad_y (M, N) is the gradient of y. With an activation, `saved` is y (relu) or pre
// (gelu) from the forward, and dz = grad_y * act' is formed first in a scratch buffer.
// Writes dx (M, K) = dz W when dx != nullptr; ACCUMULATES dw (N, K) += dz^T x when
// dw != nullptr and db (N,) += column sums of dz when db != nullptr.
void linear_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                     float* db, std::size_t M, std::size_t K, std::size_t N,
                     Activation act = Activation::kNone, const float* saved = nullptr);

// bf16 GEMMs (AVX512_BF16 levels): linear_forward and linear_backward with every GEMM's
// operands rounded to bf16 (round to nearest even) and fp32 accumulation, on AMX tiles
// (gemm_amx.hpp) where the CPU and the OS allow them, else on the shared micro-kernel's
// vdpbf16ps tile; bias, activation, outputs and gradients in fp32. The same arguments and
// results (up to the operands' rounding and the summation order) as the fp32 pair. Each
// GEMM rounds and packs both its operands once per call. Every output element is one fp32
// accumulation over k in a fixed order, whatever the schedule: results do not depend on
// the thread count.
// At levels without AVX512_BF16 (bf16_gemm_supported() false) both throw std::runtime_error.
bool bf16_gemm_supported();
// The engine of the bf16 GEMMs: "amx" (AMX-BF16 tiles, where the CPU has them and the OS
// grants them; SEQLAB_BF16_AMX=0 turns them off), "avx512_bf16" (vdpbf16ps register
// tiles) or "none" (levels without AVX512_BF16).
const char* bf16_gemm_engine();
void linear_bf16_forward(const float* x, const float* w, const float* b, float* y, std::size_t M,
                         std::size_t K, std::size_t N, Activation act = Activation::kNone,
                         float* pre = nullptr);
void linear_bf16_backward(const float* grad_y, const float* x, const float* w, float* dx, float* dw,
                          float* db, std::size_t M, std::size_t K, std::size_t N,
                          Activation act = Activation::kNone, const float* saved = nullptr);
SEQLAB_LEVEL_END

}  // namespace seqlab
