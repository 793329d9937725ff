"""Loads the OpenBLAS that the core's BLAS calls resolve against, before the core loads.

seqlab's C++ core is compiled against the headers of the ``scipy-openblas32`` wheel (the
OpenBLAS NumPy and SciPy build against: a DYNAMIC_ARCH build that picks its kernels for
the CPU it runs on) and calls its ``scipy_``-prefixed symbols, but does not link its
library: it is loaded here, into the process's global symbol scope, from the
``scipy-openblas32`` package installed beside seqlab (its documented ``get_lib_dir()`` /
``get_library()``), as its own ``get_pkg_config(use_preloading=True)`` intends. So the
same extension works from a source build, an editable install and the wheel, and never
picks up a system OpenBLAS.
"""

from __future__ import annotations

import ctypes
import os

try:
    import scipy_openblas32
except ImportError as err:  # a declared dependency; missing only in a broken environment
    raise ImportError(
        "seqlab needs OpenBLAS from the scipy-openblas32 package: pip install scipy-openblas32"
    ) from err

_library = ctypes.CDLL(
    os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True)),
    mode=ctypes.RTLD_GLOBAL,
)
