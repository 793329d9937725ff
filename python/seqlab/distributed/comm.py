"""The MPI world: rank, size, barrier and in-place collectives over NumPy buffers.

Backed by mpi4py (``pip install 'seqlab[mpi]'`` on an MPI such as Debian's Open MPI).
Outside a launcher (``mpirun``, ``srun``, ``python -m mpi4py``) or without mpi4py, the
world is one process: every call returns at once and MPI is never imported, so code
written for many ranks runs unchanged, at no cost, in one.

Under MPI with more than one rank, an exception that escapes to the top level aborts the
whole job (``MPI_Abort``) after printing its traceback with the rank, so a failing rank
takes every rank down instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import numpy as np

#: environment variables a launcher sets in every process it starts
_LAUNCHER_VARS = (
    "OMPI_COMM_WORLD_SIZE",  # Open MPI's mpirun
    "PMI_SIZE",  # MPICH's hydra, Intel MPI
    "PMIX_RANK",  # PMIx launchers (Open MPI 5, Slurm with pmix)
    "MV2_COMM_WORLD_SIZE",  # MVAPICH
)
OPS = ("mean", "sum", "min", "max")


class _World:
    comm: Any = None  # mpi4py's COMM_WORLD when the world has several ranks
    rank = 0
    size = 1
    initialized = False


_world = _World()


def _launched() -> bool:
    return "mpi4py.MPI" in sys.modules or any(v in os.environ for v in _LAUNCHER_VARS)


def init() -> int:
    """Joins the MPI world when the process was started by an MPI launcher; returns the
    world size. Idempotent; every other function of this module calls it.

    Raises:
        ImportError: started by a launcher but mpi4py is missing (the message names
            the install command).
    """
    if _world.initialized:
        return _world.size
    _world.initialized = True
    if not _launched():
        return 1
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "this process was started by an MPI launcher but mpi4py is not installed: "
            "pip install 'seqlab[mpi]' (it builds against the system's MPI, e.g. Debian's "
            "openmpi-bin libopenmpi-dev)"
        ) from e
    comm = MPI.COMM_WORLD
    if comm.Get_size() > 1:
        _world.comm = comm
        _world.rank = comm.Get_rank()
        _world.size = comm.Get_size()
        _install_abort_hook()
        _share_cores(comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size())
    return _world.size


def _share_cores(local_ranks: int) -> None:
    """Ranks on one host split its cores (unless OMP_NUM_THREADS says otherwise), so two
    ranks on two cores run one kernel thread each instead of four competing ones."""
    if local_ranks <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    from ..threads import set_num_threads

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    set_num_threads(max(1, cores // local_ranks))


def _install_abort_hook() -> None:
    previous = sys.excepthook

    def abort_job(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
            return
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"[rank {_world.rank}/{_world.size}] {text}")
        sys.stderr.write(f"[rank {_world.rank}/{_world.size}] aborting the MPI job\n")
        sys.stderr.flush()
        abort(1)

    sys.excepthook = abort_job


def rank() -> int:
    """This process's rank in the world (0 outside MPI)."""
    init()
    return _world.rank


def world_size() -> int:
    """Number of processes in the world (1 outside MPI)."""
    return init()


def is_main() -> bool:
    """True on rank 0, the rank that writes files, logs and progress bars."""
    return rank() == 0


def barrier() -> None:
    """Waits until every rank reaches this call."""
    if init() > 1:
        _world.comm.Barrier()


def abort(code: int = 1) -> None:
    """Ends every rank of the job with exit status ``code`` (outside MPI: ``sys.exit``)."""
    if init() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        _world.comm.Abort(code)
    raise SystemExit(code)


def _check_buffer(array: Any, name: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(array).__name__}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"{name}: expected a writeable C-contiguous array (shape {array.shape})")
    return array


def all_reduce_(array: np.ndarray, op: str = "mean") -> np.ndarray:
    """Reduces ``array`` over every rank in place and returns it.

    Args:
        array: a writeable C-contiguous numpy array of the same shape and dtype on every rank.
        op: ``"mean"`` (the sum divided by the world size), ``"sum"``, ``"min"`` or ``"max"``.
    """
    if op not in OPS:
        raise ValueError(f"all_reduce_: op must be one of {OPS}, got {op!r}")
    _check_buffer(array, "all_reduce_: array")
    if init() == 1:
        return array
    from mpi4py import MPI

    mpi_op = {"mean": MPI.SUM, "sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}[op]
    _world.comm.Allreduce(MPI.IN_PLACE, array, op=mpi_op)
    if op == "mean":
        if array.dtype.kind == "f":
            array *= array.dtype.type(1.0 / _world.size)
        else:
            array //= _world.size
    return array


def broadcast_(array: np.ndarray, root: int = 0) -> np.ndarray:
    """Overwrites ``array`` on every rank with its values on rank ``root``; returns it."""
    _check_buffer(array, "broadcast_: array")
    size = init()
    if not 0 <= root < size:
        raise ValueError(f"broadcast_: root must be a rank in [0, {size}), got {root}")
    if size > 1:
        _world.comm.Bcast(array, root=root)
    return array


def broadcast_object(obj: Any, root: int = 0) -> Any:
    """``obj`` of rank ``root`` on every rank (any picklable object)."""
    if init() == 1:
        return obj
    return _world.comm.bcast(obj, root=root)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if init() == 1:
        return [obj]
    return list(_world.comm.allgather(obj))
