// This instruction-set level's table of kernels (compiled once per level, see level.hpp).
#include "seqlab/kernels.hpp"

namespace seqlab {
SEQLAB_LEVEL_BEGIN

const Kernels& kernel_table() {
#define SEQLAB_KERNEL_ENTRY(name) &name,
  static const Kernels table{SEQLAB_KERNELS(SEQLAB_KERNEL_ENTRY)};
#undef SEQLAB_KERNEL_ENTRY
  return table;
}

SEQLAB_LEVEL_END
}  // namespace seqlab
