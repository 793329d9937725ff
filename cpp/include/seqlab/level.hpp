// The instruction-set level a kernel translation unit is compiled for.
//
// Every kernel source in cpp/src/ is compiled once per x86-64 level (CMake object
// libraries with -march=x86-64-v2, -v3, -v4 and -DSEQLAB_LEVEL=v2|v3|v4; the native build
// compiles one level, -march=native, -DSEQLAB_LEVEL=native). Kernel functions and the
// inline SIMD helpers of the kernel-only headers live in an inline namespace named by the
// level, so each level's copy has its own mangled names (no ODR clash between levels)
// while code inside the kernels calls them unqualified as before. Public structs and
// enums of the kernel signatures (shapes, caches, options) stay outside it: all levels
// share one type.
//
// Code compiled once (bindings, thread pool, dispatch) sees the declarations in the
// namespace `declarations`, which nothing defines: a direct call links to nothing, so it
// goes through the table of the level selected at import (seqlab/kernels.hpp).
#pragma once

#ifdef SEQLAB_LEVEL
#define SEQLAB_LEVEL_BEGIN inline namespace SEQLAB_LEVEL {
#else
#define SEQLAB_LEVEL_BEGIN inline namespace declarations {
#endif
#define SEQLAB_LEVEL_END }
