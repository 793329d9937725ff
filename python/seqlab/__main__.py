"""``python -m seqlab`` (and ``python -m mpi4py -m seqlab`` under MPI): the ``seqlab`` command."""

import sys

from .cli import main

sys.exit(main())
