"""Data-parallel training: what the Trainer does differently when several ranks train one model.

The :class:`~seqlab.train.Trainer` calls a :class:`DataParallel` at four points, and
nowhere else:

* :meth:`DataParallel.prepare` at the start of ``fit``: rank 0 prepares the run
  directory (fresh or resumed from its newest checkpoint) and sends the whole run state
  (parameters, optimizer state, callbacks, RNG, epoch, history) to every other rank, so
  every rank starts from bit-identical parameters and optimizer state;
* :meth:`DataParallel.epoch_batches` each epoch: this rank's shard of the training data,
  as PyTorch's ``DistributedSampler`` cuts it (a permutation drawn from ``seed + epoch``,
  padded by repeating its start to a multiple of the world size, every ``world_size``-th
  item from position ``rank``);
* :meth:`DataParallel.reduce_gradients` once per optimizer step, after the micro-batches
  of an accumulation group and before the callbacks, clipping and the update: one
  in-place allreduce of the optimizer's flat gradient buffer, averaged over the ranks;
* :meth:`DataParallel.eval_shard` / :meth:`DataParallel.reduce_evaluation`: each rank
  evaluates its strided share of the validation data (not padded, so no sample counts
  twice); losses are summed and predictions gathered, so every rank logs the same
  metrics and early stopping agrees everywhere.

Only rank 0 writes checkpoints, metrics, reports and progress bars. Since the shard of
an epoch depends on the seed and the epoch only, a checkpoint written by N ranks resumes
on M ranks. With equal shard batches, the mean of the ranks' mean gradients is the
gradient of the whole step's samples: ``N`` ranks with batch ``b`` follow the path of one
process with batch ``N * b`` (to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.batching import BatchSource, ShardableSource
from . import comm

if TYPE_CHECKING:
    from ..train.trainer import Trainer


def shard_indices(
    n: int, rank: int, world_size: int, seed: int, epoch: int, shuffle: bool = True
) -> np.ndarray:
    """The items of ``rank`` among ``n`` in ``epoch`` (``DistributedSampler``'s cut).

    A permutation from ``seed + epoch`` (or ``0..n-1`` without ``shuffle``), padded by its
    first items to ``ceil(n / world_size) * world_size``, then every ``world_size``-th item
    from ``rank``: each rank gets ``ceil(n / world_size)`` items.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"shard_indices: rank {rank} outside a world of {world_size}")
    order = np.random.default_rng(seed + epoch).permutation(n) if shuffle else np.arange(n)
    total = -(-n // world_size) * world_size
    if total > n:
        order = np.concatenate([order, np.resize(order, total - n)])
    return order[rank:total:world_size]


def _shardable(source: BatchSource, name: str) -> ShardableSource:
    if not isinstance(source, ShardableSource):
        raise TypeError(
            f"{name}: data-parallel training splits the data between ranks with the source's "
            f"subset_size and subset(indices); {type(source).__name__} has neither (ArrayBatches, "
            "SequenceBatches and SegmentBatches have them)"
        )
    return source


class DataParallel:
    """The Trainer's data-parallel hooks over the MPI world (:mod:`seqlab.distributed`).

    The Trainer creates one itself when the world has more than one rank. Giving one
    explicitly in a single process (``Trainer(..., data_parallel=DataParallel())``)
    makes that process draw its epochs exactly as a world of ranks shares them, which is
    how a one-process run reproduces a many-rank run.
    """

    def __init__(self) -> None:
        comm.init()
        self.rank = comm.rank()
        self.world_size = comm.world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ start
    def prepare(self, trainer: Trainer) -> None:
        """Rank 0 prepares the run (fresh or resumed); every rank then holds its state."""
        error: BaseException | None = None
        state = None
        if self.is_main:
            try:
                trainer._prepare_run_dir()
                if self.world_size > 1:
                    state = trainer.checkpoint_state(trainer.epoch)
            except BaseException as e:  # sent to the other ranks before raising here
                error = e
        if self.world_size == 1:
            if error is not None:
                raise error
            return
        outcome = comm.broadcast_object(
            ("error", f"{type(error).__name__}: {error}") if error is not None else ("state", state)
        )
        if error is not None:
            raise error
        if outcome[0] == "error":
            raise RuntimeError(f"rank 0 could not start the run: {outcome[1]}")
        if not self.is_main:
            trainer._restore(outcome[1])

    # --------------------------------------------------------------- training
    def epoch_batches(
        self, trainer: Trainer, epoch: int, rng: np.random.Generator
    ) -> tuple[Iterator[Any], int]:
        """This rank's batches of ``epoch`` and their number (the same on every rank)."""
        source = _shardable(trainer.train_data, "train_data")
        shuffle = bool(getattr(source, "shuffle", True))
        idx = shard_indices(source.subset_size, self.rank, self.world_size, trainer.seed, epoch, shuffle)
        shard = source.subset(idx)
        count = np.array([shard.num_batches()], dtype=np.int64)
        # chain sources give ranks shards of unequal length; every rank takes as many
        # steps as the shortest, or the longer ones would wait forever in an allreduce
        comm.all_reduce_(count, "min")
        n = int(count[0])

        def take() -> Iterator[Any]:
            for k, batch in enumerate(shard.batches(rng)):
                if k == n:
                    return
                yield batch

        return take(), n

    def reduce_gradients(self, trainer: Trainer, loss: float) -> float:
        """Averages the step's gradients over the ranks in place; returns the ranks' mean loss."""
        if self.world_size == 1:
            return loss
        flat = getattr(trainer.optimizer, "flat", None)
        if flat is not None:
            flat.sync()
            comm.all_reduce_(flat.grad, "mean")
        else:
            for p in trainer.model.parameters():
                if p.grad is not None:
                    p.grad = comm.all_reduce_(np.ascontiguousarray(p.grad, dtype=np.float32), "mean")
        value = np.array([loss], dtype=np.float64)
        return float(comm.all_reduce_(value, "mean")[0])

    # ------------------------------------------------------------- evaluation
    def eval_shard(self, source: BatchSource) -> BatchSource | None:
        """This rank's share of ``source`` for evaluation (None when it gets no item)."""
        if self.world_size == 1:
            return source
        src = _shardable(source, "val_data")
        idx = np.arange(self.rank, src.subset_size, self.world_size)
        return src.subset(idx) if len(idx) else None

    def reduce_evaluation(
        self, total: float, count: float, preds: list[np.ndarray], targets: list[np.ndarray]
    ) -> tuple[float, float, list[np.ndarray], list[np.ndarray]]:
        """Sums the loss totals and sample counts, gathers predictions and targets (rank order)."""
        if self.world_size == 1:
            return total, count, preds, targets
        sums = comm.all_reduce_(np.array([total, count], dtype=np.float64), "sum")
        gathered = comm.all_gather_object((preds, targets))
        return (
            float(sums[0]),
            float(sums[1]),
            [p for ps, _ in gathered for p in ps],
            [t for _, ts in gathered for t in ts],
        )
