"""Trainer: fits a Module with a loss and an optimizer, with callbacks, checkpoints and reports."""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import Tensor, no_grad, tensor
from ..data.batching import ArrayBatches, BatchSource, PaddedBatch
from ..distributed.data_parallel import DataParallel
from ..nn.module import Module
from ..random import generator, get_rng_state, manual_seed, set_rng_state
from ..serialization import atomic_write_bytes, write_json, write_toml
from ..threads import get_num_threads
from .callback import Callback
from .checkpoint import CHECKPOINT_DIR, Checkpoint, checkpoint_files, latest_valid_checkpoint
from .grad_monitor import GradientMonitor
from .nan_guard import NanGuard

MetricFn = Callable[[np.ndarray, np.ndarray], "float | Mapping[str, float]"]
RUN_MARKERS = ("training_metrics.json", CHECKPOINT_DIR, "config.toml")


def _to_tensor(x: Any) -> Any:
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return tensor(x)
    if isinstance(x, tuple):
        return tuple(_to_tensor(v) for v in x)
    return x


def _batch_len(batch: Any) -> int:
    if isinstance(batch, (tuple, list)):
        return len(batch[0])
    return len(batch)


def _as_batch_source(data: Any, batch_size: int, shuffle: bool, name: str) -> BatchSource:
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, np.ndarray) or (
        isinstance(data, (tuple, list)) and data and all(isinstance(a, np.ndarray) for a in data)
    ):
        return ArrayBatches(data, batch_size=batch_size, shuffle=shuffle)
    raise TypeError(
        f"{name}: expected a tuple of arrays (inputs, targets), an array, or a batch source "
        f"such as seqlab.data.SequenceBatches; got {type(data).__name__}"
    )


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"seqlab": __version__, "numpy": np.__version__, "python": platform.python_version()}


class Trainer:
    """Fits ``model`` by minimising ``loss_fn`` with ``optimizer``.

    Args:
        model: the Module to train.
        loss_fn: ``loss_fn(model_output, targets) -> Tensor`` (scalar) for batches
            ``(inputs, targets)``; for other batches ``loss_fn(model_output, batch)``.
            Ignored when ``step_fn`` is given.
        optimizer: a ``seqlab.optim`` optimizer over the model's parameters.
        train_data: ``(inputs, targets)`` arrays (batched by ``batch_size``) or a batch
            source (``seqlab.data.ArrayBatches``, ``SequenceBatches``, ...).
        val_data: the same for validation (evaluated after every epoch), or None.
        epochs: the last epoch to train (resumed runs continue up to it).
        batch_size: samples per micro-batch when arrays are given.
        accumulation_steps: micro-batches per optimizer step (effective batch
            ``batch_size * accumulation_steps``); each micro-batch's loss is weighted by its
            share of the group's samples, so a mean loss gives the big batch's gradient.
        clip_grad_norm: clip the global gradient norm to this value before each step.
        metrics: ``{name: fn(predictions, targets)}`` computed on the whole validation set
            each epoch (a fn may return a dict of several values); logged as ``val_<name>``.
        seed: seeds ``seqlab.manual_seed`` at the start of a fresh run.
        out_dir: run directory for checkpoints, metrics, weights and the report. A
            directory that already holds a run is refused unless ``resume=True``.
        resume: continue the run in ``out_dir`` from its newest valid checkpoint.
        callbacks: extra callbacks (early stopping, schedules, curriculum, ...).
        progress: show progress bars (default: when stderr is a terminal).
        step_fn: ``step_fn(model, batch) -> loss Tensor`` replacing the default step.
        predict_fn: ``predict_fn(model, batch) -> (predictions, targets)`` ndarrays for
            metrics, replacing the default ``(model(inputs), targets)``.
        config: extra configuration saved in ``config.toml`` and the report (e.g. the
            model's hyperparameters).
        nan_guard, grad_monitor: add the default :class:`NanGuard` /
            :class:`GradientMonitor` unless one is in ``callbacks``.
        verbose: print epoch summaries and messages.
        data_parallel: the data-parallel hooks (:class:`seqlab.distributed.DataParallel`);
            default: one when the process runs under MPI with several ranks, so each rank
            trains on its shard and gradients are averaged every step (only rank 0 writes
            files, logs and progress bars). False turns it off (each rank trains alone);
            an explicit one in a single process draws epochs as a world of ranks does.
    """

    def __init__(
        self,
        model: Module,
        loss_fn: Callable[..., Tensor] | None,
        optimizer: Any,
        train_data: Any,
        val_data: Any = None,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        accumulation_steps: int = 1,
        clip_grad_norm: float | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
        seed: int = 0,
        out_dir: str | Path | None = None,
        resume: bool = False,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        # the first argument is this trainer's model, of whatever Module subclass it was given
        step_fn: Callable[[Any, Any], Tensor] | None = None,
        predict_fn: Callable[[Any, Any], tuple[np.ndarray, np.ndarray]] | None = None,
        config: Mapping[str, Any] | None = None,
        nan_guard: bool = True,
        grad_monitor: bool = True,
        verbose: bool = True,
        data_parallel: DataParallel | bool | None = None,
    ) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"Trainer: model must be a seqlab.nn.Module, got {type(model).__name__}")
        if loss_fn is None and step_fn is None:
            raise ValueError("Trainer: give loss_fn or step_fn")
        for name, value in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("accumulation_steps", accumulation_steps),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Trainer: {name} must be a positive integer, got {value!r}")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"Trainer: clip_grad_norm must be > 0, got {clip_grad_norm}")
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.train_data = _as_batch_source(train_data, batch_size, True, "train_data")
        self.val_data = (
            None if val_data is None else _as_batch_source(val_data, batch_size, False, "val_data")
        )
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.accumulation_steps = int(accumulation_steps)
        self.clip_grad_norm = clip_grad_norm
        self.metrics = dict(metrics or {})
        self.seed = int(seed)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.resume = resume
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.step_fn = step_fn
        self.predict_fn = predict_fn
        self.config = dict(config or {})
        if data_parallel is None:
            from ..distributed import world_size

            data_parallel = world_size() > 1
        if isinstance(data_parallel, bool):
            data_parallel = DataParallel() if data_parallel else None
        self.data_parallel: DataParallel | None = data_parallel
        #: whether this process writes the run's files and prints (rank 0 of data-parallel runs)
        self.is_main = data_parallel is None or data_parallel.is_main
        self.verbose = verbose and self.is_main
        self.progress = self.progress and self.is_main

        cbs = list(callbacks)
        if nan_guard and not any(isinstance(c, NanGuard) for c in cbs):
            cbs.insert(0, NanGuard())
        if grad_monitor and not any(isinstance(c, GradientMonitor) for c in cbs):
            cbs.insert(0, GradientMonitor())
        if self.out_dir is not None and not any(isinstance(c, Checkpoint) for c in cbs):
            cbs.append(Checkpoint(monitor="val_loss" if self.val_data is not None else "train_loss"))
        keys = [c.state_key for c in cbs]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise ValueError(
                f"Trainer: callbacks share state keys {sorted(dupes)}; give each a distinct state_key"
            )
        self.callbacks = cbs

        # Run state (restored on resume).
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.step_history: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.stop_training = False
        self.teacher_forcing_ratio: float | None = None
        self.max_len: int | None = None
        self.current_step_record: dict[str, Any] = {}
        self.train_seconds = 0.0

    # ------------------------------------------------------------ utilities
    def log(self, message: str) -> None:
        """Records a message in the run and prints it when verbose."""
        self.messages.append(message)
        if self.verbose:
            if self.progress:
                from tqdm.auto import tqdm

                tqdm.write(message, file=sys.stderr)
            else:
                print(message, flush=True)

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (of each rank in a data-parallel run: its shard's)."""
        batches = self.train_data.num_batches()
        if self.data_parallel is not None and self.data_parallel.world_size > 1:
            batches = -(-batches // self.data_parallel.world_size)
        return -(-batches // self.accumulation_steps)

    def _parameters(self) -> list[Any]:
        return list(self.model.parameters())

    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue the run after ``epoch`` exactly."""
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "rng": get_rng_state(),
            "history": self.history,
            "step_history": self.step_history,
            "stop_training": self.stop_training,
            "threads": get_num_threads(),
            "train_seconds": self.train_seconds,
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for c in self.callbacks:
            c.load_state_dict(state["callbacks"].get(c.state_key, {}))
        set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.step_history = list(state["step_history"])
        self.stop_training = bool(state["stop_training"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if state.get("threads") != get_num_threads():
            self.log(
                f"note: the run was checkpointed with {state.get('threads')} threads, resuming "
                f"with {get_num_threads()}; results may differ in the last bits"
            )

    def _prepare_run_dir(self) -> None:
        if self.out_dir is None:
            if self.resume:
                raise ValueError("Trainer: resume=True needs out_dir (the run directory to resume)")
            manual_seed(self.seed)
            return
        holds_run = self.out_dir.is_dir() and any((self.out_dir / m).exists() for m in RUN_MARKERS)
        if holds_run and not self.resume:
            raise FileExistsError(
                f"{self.out_dir} already holds a training run; pass resume=True to continue it, "
                "or choose another out_dir (nothing was overwritten)"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.resume and holds_run:
            found = latest_valid_checkpoint(self.out_dir)
            if found is None:
                if checkpoint_files(self.out_dir):
                    raise ValueError(f"{self.out_dir}: every checkpoint is damaged; cannot resume")
                self.log(f"{self.out_dir}: no checkpoint was written before the run stopped; "
                         "training from the start")
            else:
                path, state = found
                self._restore(state)
                self.log(f"resumed from {path} (epoch {self.epoch}, step {self.global_step})")
                return
        manual_seed(self.seed)
        write_toml(self.out_dir / "config.toml", self.run_config())

    def run_config(self) -> dict[str, Any]:
        """The trainer settings and the user's config, as saved in config.toml."""
        return {
            "trainer": {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "accumulation_steps": self.accumulation_steps,
                "clip_grad_norm": self.clip_grad_norm,
                "seed": self.seed,
                "optimizer": type(self.optimizer).__name__,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "callbacks": [type(c).__name__ for c in self.callbacks],
                "metrics": list(self.metrics),
            },
            **({"config": self.config} if self.config else {}),
        }

    # ------------------------------------------------------------- training
    def _loss(self, batch: Any) -> Tensor:
        if self.step_fn is not None:
            loss = self.step_fn(self.model, batch)
        elif isinstance(batch, tuple) and len(batch) == 2:
            x, y = batch
            loss = self.loss_fn(self.model(_to_tensor(x)), y)  # type: ignore[misc]
        else:
            loss = self.loss_fn(self.model(batch), batch)  # type: ignore[misc]
        if not isinstance(loss, Tensor) or loss.size != 1:
            raise TypeError(f"the loss must be a one-element seqlab.Tensor, got {loss!r:.80}")
        return loss

    def _optimizer_step(self, group: list[Any]) -> float:
        """One optimizer step over a group of micro-batches; returns the group's loss."""
        sizes = [_batch_len(b) for b in group]
        total = float(sum(sizes))
        self.optimizer.zero_grad()
        self.current_step_record = {"step": self.global_step + 1}
        loss_value = 0.0
        for batch, n in zip(group, sizes):
            loss = self._loss(batch)
            weight = n / total
            value = float(loss.item())
            loss_value += value * weight
            if not math.isfinite(value):
                continue
            if len(group) > 1:
                loss = loss * weight
            loss.backward()
        if self.data_parallel is not None:
            loss_value = self.data_parallel.reduce_gradients(self, loss_value)
        take_step = all(c.before_step(self, loss_value) for c in self.callbacks)
        if take_step:
            if self.clip_grad_norm is not None:
                from ..nn.utils import clip_grad_norm_

                self.current_step_record["clipped_norm"] = float(
                    clip_grad_norm_(self._parameters(), self.clip_grad_norm)
                )
            self.optimizer.step()
        else:
            self.optimizer.zero_grad()
        self.global_step += 1
        record = self.current_step_record
        record.update(
            {"loss": loss_value, "lr": float(self.optimizer.param_groups[0]["lr"]), "skipped": not take_step,
             "samples": int(total), "batches": len(group)}
        )
        self.step_history.append(record)
        for c in self.callbacks:
            c.on_step_end(self, record)
        return loss_value

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        rng = generator()
        batches: Iterable[Any]
        if self.data_parallel is not None:
            batches, num_batches = self.data_parallel.epoch_batches(self, epoch, rng)
        else:
            batches, num_batches = self.train_data.batches(rng), self.train_data.num_batches()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=num_batches,
                desc=f"epoch {epoch}/{self.epochs}",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        losses: list[float] = []
        weights: list[int] = []
        group: list[Any] = []
        for batch in batches:
            group.append(batch)
            if len(group) == self.accumulation_steps:
                losses.append(self._optimizer_step(group))
                weights.append(sum(_batch_len(b) for b in group))
                if bar is not None:
                    bar.update(len(group))
                    bar.set_postfix(self._progress_fields(losses[-1]))
                group = []
        if group:
            losses.append(self._optimizer_step(group))
            weights.append(sum(_batch_len(b) for b in group))
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        finite = [(v, w) for v, w in zip(losses, weights) if math.isfinite(v)]
        if not finite:
            return float("nan")
        return float(np.average([v for v, _ in finite], weights=[w for _, w in finite]))

    def _progress_fields(self, loss: float) -> dict[str, str]:
        """The progress bar's postfix: the loss and any throughput (``*_per_sec``) of the last step."""
        fields = {"loss": f"{loss:.4g}"}
        last = self.step_history[-1] if self.step_history else {}
        for key, value in last.items():
            if key.endswith("_per_sec") and isinstance(value, float):
                fields[key.removesuffix("_per_sec") + "/s"] = f"{value:,.0f}"
        return fields

    def _default_predict(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(batch, tuple) and len(batch) == 2:
            x, y = batch
            out = self.model(_to_tensor(x))
            return np.asarray(out.data if isinstance(out, Tensor) else out), np.asarray(y)
        out = self.model(batch)
        target = batch.targets if isinstance(batch, PaddedBatch) else batch
        return np.asarray(out.data if isinstance(out, Tensor) else out), np.asarray(target)

    def evaluate(self, data: Any = None) -> dict[str, float]:
        """Loss and metrics on ``data`` (default: the validation data), without training.

        Returns ``{"loss": ..., "<metric>": ...}``.
        """
        source = self.val_data if data is None else _as_batch_source(data, self.batch_size, False, "data")
        if source is None:
            raise ValueError("evaluate(): no data given and the Trainer has no val_data")
        was_training = self.model.training
        self.model.eval()
        total = count = 0.0
        preds: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        shard = source if self.data_parallel is None else self.data_parallel.eval_shard(source)
        try:
            with no_grad():
                for batch in shard.batches(None) if shard is not None else ():
                    n = _batch_len(batch)
                    total += float(self._loss(batch).item()) * n
                    count += n
                    if self.metrics:
                        p, t = (self.predict_fn or (lambda _m, b: self._default_predict(b)))(
                            self.model, batch
                        )
                        preds.append(np.asarray(p))
                        targets.append(np.asarray(t))
        finally:
            self.model.train(was_training)
        if self.data_parallel is not None:
            total, count, preds, targets = self.data_parallel.reduce_evaluation(total, count, preds, targets)
        results: dict[str, float] = {"loss": total / max(count, 1.0)}
        if self.metrics:
            try:
                all_p, all_t = np.concatenate(preds), np.concatenate(targets)
            except ValueError as e:
                raise ValueError(
                    "metrics: validation predictions of different shapes cannot be joined "
                    f"({e}); give predict_fn returning fixed-shape arrays"
                ) from e
            for name, fn in self.metrics.items():
                value = fn(all_p, all_t)
                if isinstance(value, Mapping):
                    results.update({str(k): float(v) for k, v in value.items()})
                else:
                    results[name] = float(value)
        return results

    def fit(self) -> list[dict[str, Any]]:
        """Trains up to ``epochs`` (or until a callback stops it); returns the per-epoch history."""
        if self.data_parallel is not None:
            self.data_parallel.prepare(self)
        else:
            self._prepare_run_dir()
        for c in self.callbacks:
            c.on_fit_begin(self)
        if self.verbose and self.epoch == 0:
            n_params = self.model.num_parameters()
            self.log(
                f"training {type(self.model).__name__} ({n_params:,} parameters) for "
                f"{self.epochs} epochs, {self.train_data.num_samples} samples, "
                f"{self.steps_per_epoch()} steps per epoch, {get_num_threads()} threads"
                + (
                    f" on each of {self.data_parallel.world_size} ranks (data-parallel)"
                    if self.data_parallel is not None and self.data_parallel.world_size > 1
                    else ""
                )
            )
        while self.epoch < self.epochs and not self.stop_training:
            epoch = self.epoch + 1
            for c in self.callbacks:
                c.on_epoch_begin(self, epoch)
            start = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            seconds = time.perf_counter() - start
            self.train_seconds += seconds
            logs: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": train_loss,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "seconds": seconds,
            }
            if self.val_data is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate().items()})
            for c in self.callbacks:
                c.on_epoch_end(self, epoch, logs)
            self.epoch = epoch
            self.history.append(logs)
            if self.verbose:
                shown = [
                    f"{k} {v:.4g}"
                    for k, v in logs.items()
                    if k.startswith(("train_", "val_")) and isinstance(v, float)
                ]
                self.log(f"epoch {epoch}/{self.epochs}: " + "  ".join(shown))
            for c in self.callbacks:
                if isinstance(c, Checkpoint) and self.is_main:
                    c.write(self, epoch, logs)
            if self.out_dir is not None and self.is_main:
                write_json(self.out_dir / "training_metrics.json", self.metrics_document())
        for c in self.callbacks:
            c.on_fit_end(self)
        if self.out_dir is not None and self.is_main:
            self._write_run_files()
        return self.history

    # -------------------------------------------------------------- outputs
    def best_epoch(self, monitor: str | None = None, mode: str = "min") -> dict[str, Any] | None:
        """The history entry with the best ``monitor`` (default val_loss, else train_loss)."""
        if not self.history:
            return None
        key = monitor or ("val_loss" if "val_loss" in self.history[0] else "train_loss")
        rows = [h for h in self.history if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
        if not rows:
            return None
        pick = min if mode == "min" else max
        return pick(rows, key=lambda h: h[key])

    def metrics_document(self) -> dict[str, Any]:
        """The content of training_metrics.json."""
        best = self.best_epoch()
        monitor = "val_loss" if self.history and "val_loss" in self.history[0] else "train_loss"
        return {
            "history": self.history,
            "best": {
                "monitor": monitor,
                "epoch": best["epoch"] if best else None,
                "value": best[monitor] if best else None,
            },
            "steps": self.step_history,
            "config": self.run_config(),
            "timing": {
                "train_seconds": self.train_seconds,
                "epochs_run": len(self.history),
                "steps": self.global_step,
            },
            "threads": get_num_threads(),
            "versions": _versions(),
            "messages": self.messages,
        }

    def _write_run_files(self) -> None:
        from safetensors.numpy import save

        from ..report import write_report

        assert self.out_dir is not None
        weights = {k: np.ascontiguousarray(v) for k, v in self.model.state_dict().items()}
        atomic_write_bytes(self.out_dir / "model.safetensors", save(weights))
        write_json(self.out_dir / "training_metrics.json", self.metrics_document())
        write_report(self.out_dir)
