// xtensor's container allocator, the same in every translation unit (CMake includes this
// file first, with -include). Left to itself xtensor aligns to the widest register of the
// unit's -march (16, 32 or 64 bytes), which would make xt::xtensor a different type at
// each instruction-set level (level.hpp): the caches the bindings hand to the kernels
// must be one type, and xtensor's out-of-line code must link once.
#pragma once

#define XTENSOR_DEFAULT_ALIGNMENT 64
#define XTENSOR_DEFAULT_ALLOCATOR(T) xsimd::aligned_allocator<T, 64>
