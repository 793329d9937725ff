"""Data-parallel training on MPI (``pip install 'seqlab[mpi]'``).

Start any script or recipe under an MPI launcher and the :class:`~seqlab.train.Trainer`
trains one model on all ranks: ``mpirun -np 4 seqlab poetry`` or
``mpirun -np 4 python -m mpi4py train.py``. Outside a launcher, or without mpi4py, the
functions below describe a world of one process and cost nothing.

    import seqlab.distributed as dist
    dist.init()
    if dist.is_main():
        print(f"{dist.world_size()} ranks")
    dist.all_reduce_(grad, op="mean")      # in place, every rank gets the mean
"""

from .comm import (
    abort,
    all_gather_object,
    all_reduce_,
    barrier,
    broadcast_,
    broadcast_object,
    init,
    is_main,
    rank,
    world_size,
)
from .data_parallel import DataParallel, shard_indices

__all__ = [
    "DataParallel",
    "abort",
    "all_gather_object",
    "all_reduce_",
    "barrier",
    "broadcast_",
    "broadcast_object",
    "init",
    "is_main",
    "rank",
    "shard_indices",
    "world_size",
]
