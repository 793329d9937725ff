"""The next-vector predictor recipe: ``seqlab.vector_predictor(...)``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import Tensor, no_grad, tensor
from ..data.vector_chains import VectorChains
from ..data.vector_windows import SegmentBatch, SegmentBatches, padded_windows, window_spans
from ..models.vectors.baselines import LinearPredictor, context_mean, copy_last, unit_rows
from ..models.vectors.config import WARMUP_FRACTION, VectorPredictorConfig
from ..models.vectors.config import preset as make_preset
from ..models.vectors.dataset import VectorData, as_windows_input, prepare
from ..models.vectors.evaluate import CONTRASTIVE_BATCH, format_table, retrieval_scores
from ..models.vectors.loss import loss_from_config, next_vector_loss
from ..models.vectors.mix import choose_mix
from ..models.vectors.model import NextVectorModel
from ..models.vectors.negatives import mine_hard_negatives, negatives_for
from ..models.vectors.stream import VectorStream
from ..optim import AdamW
from ..report.evaluation import EvaluationSummary, append_to_report, recipe_html
from ..serialization import atomic_write_text, write_json
from ..train import Checkpoint, EarlyStopping, Trainer
from ..train.schedules import WarmupSchedule
from .loading import read_model_files, save_model_files, saved_evaluation
from .run_dir import claim_run_dir, interruptible, read_run, resume_data, resumed_config

KIND = "vector_predictor"
BEST_CHECKPOINT = "best_val_hit5"
_EVAL_BATCH = 256


class VectorPredictor:
    """A fitted next-vector predictor.

    Attributes:
        model: the :class:`~seqlab.models.vectors.NextVectorModel`.
        config: its :class:`~seqlab.models.vectors.VectorPredictorConfig`.
        data: the prepared corpus it was trained on (None after :func:`seqlab.load`).
        encoder: the text encoder when trained from text (``.encode(texts)`` uses it).
        history: the per-epoch training history.
        best_epoch: the epoch whose weights the model holds (0: the untrained model, its
            mix chosen on validation, beat every trained epoch on validation Hit@5);
            None when unknown (no validation chains, or loaded from disk).
        evaluation: the last :meth:`evaluate` result.
        run_dir: the run directory (weights, config, metrics, report, evaluation).
    """

    def __init__(
        self,
        model: NextVectorModel,
        config: VectorPredictorConfig,
        data: VectorData | None = None,
        encoder: Any = None,
        history: list[dict[str, Any]] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.data = data
        self.encoder = encoder
        self.history = history or []
        self.best_epoch: int | None = None
        self.evaluation: dict[str, Any] = {}
        self.summary: EvaluationSummary | None = None
        self.run_dir = run_dir

    def _repr_html_(self) -> str:
        return recipe_html(repr(self), self.summary, self.run_dir)

    def __repr__(self) -> str:
        c = self.config
        return (f"VectorPredictor({c.cell}, hidden={c.hidden_size}, dim={self.dim}, context={c.context}, "
                f"run_dir={self.run_dir})")

    @property
    def dim(self) -> int:
        return self.model.dim

    # ------------------------------------------------------------------ use
    def _predict_padded(self, windows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Unit predictions ``(B, D)`` after the last real vector of each padded window."""
        m = self.model
        was_training = m.training
        if was_training:
            m.eval()
        try:
            with no_grad():
                y = m.predict_last(windows, lengths)
        finally:
            if was_training:
                m.train()
        return unit_rows(y)

    def predict_next(self, contexts: Any) -> np.ndarray:
        """The predicted next vector of each context.

        Args:
            contexts: ``(T, D)`` one context, ``(B, T, D)`` or a list of ``(T_i, D)``
                arrays; only the last ``config.context`` vectors of each are read, and
                vectors are L2-normalised first.

        Returns:
            ``(D,)`` for one context, else ``(B, D)``: unit vectors.
        """
        windows, lengths, single = as_windows_input(contexts, self.dim, self.config.context)
        out = np.concatenate([
            self._predict_padded(windows[s : s + _EVAL_BATCH], lengths[s : s + _EVAL_BATCH])
            for s in range(0, len(lengths), _EVAL_BATCH)
        ])
        return out[0] if single else out

    def stream(self) -> VectorStream:
        """A :class:`~seqlab.models.vectors.stream.VectorStream`: ``.step(vector)`` adds one
        vector and returns the prediction of the next, keeping the state between calls."""
        return VectorStream(self.model, lambda window: self.predict_next(window))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, D)`` vectors of text chunks, by the encoder fitted in training."""
        if self.encoder is None:
            raise ValueError("encode(): this predictor was trained on vectors, it has no text encoder")
        return unit_rows(self.encoder.encode(list(texts)))

    def predict_windows(self, chains: VectorChains) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every window of ``chains`` (its last ``context`` vectors): (predictions ``(Q, D)``,
        starts, target rows)."""
        starts, targets = window_spans(chains, self.config.context)
        preds = []
        for s in range(0, len(targets), _EVAL_BATCH):
            part = slice(s, s + _EVAL_BATCH)
            w, lens = padded_windows(chains.vectors, starts[part], targets[part])
            preds.append(self._predict_padded(w, lens))
        if not preds:
            raise ValueError(f"{chains.source}: no window to evaluate (every chain has one vector)")
        return np.concatenate(preds), starts, targets

    def evaluate(self, data: Any = None, split: str = "test") -> dict[str, Any]:
        """Hit@1/5/10, MRR and contrastive accuracy of the model and three baselines.

        The bank is every vector of the evaluated chains; every window (each target with
        the ``context`` vectors before it in its chain) is scored.

        Args:
            data: None evaluates the ``split`` of the training corpus; otherwise chains
                (``.npz`` path, list of arrays, :class:`VectorChains`) of the model's dimension.

        Returns ``{"model": {...}, "copy_last": {...}, "context_mean": {...},
        "linear": {...}, "beats_copy_last": bool}``.
        """
        from ..data.vector_chains import load_vector_chains

        if data is None:
            if self.data is None:
                raise ValueError("evaluate(): this predictor has no training corpus attached; pass data=...")
            chains = self.data.splits[split]
        else:
            chains = load_vector_chains(data)
            if chains.dim != self.dim:
                raise ValueError(f"evaluate(): the data has vectors of dimension {chains.dim}, the model "
                                 f"was trained on dimension {self.dim}")
            chains = VectorChains(unit_rows(chains.vectors), chains.offsets, chains.names, chains.source)
        preds, starts, targets = self.predict_windows(chains)
        bank = chains.vectors
        results: dict[str, Any] = {"model": retrieval_scores(preds, targets, bank)}
        results["copy_last"] = retrieval_scores(copy_last(bank, starts, targets), targets, bank)
        results["context_mean"] = retrieval_scores(context_mean(bank, starts, targets), targets, bank)
        if self.data is not None:
            linear = LinearPredictor().fit(self.data.splits["train"])
            results["linear"] = retrieval_scores(linear(bank, starts, targets), targets, bank)
        results["beats_copy_last"] = bool(
            results["model"]["hit@5"] > results["copy_last"]["hit@5"]
            and results["model"]["mrr"] > results["copy_last"]["mrr"]
        )
        self.evaluation = results
        return results

    # -------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Writes ``model.safetensors`` (with the text encoder's arrays) and ``model_config.toml``."""
        path = Path(path)
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        meta: dict[str, Any] = {"dim": self.dim}
        if self.encoder is not None and hasattr(self.encoder, "state"):
            arrays, settings = self.encoder.state()
            weights.update({f"encoder.{k}": v for k, v in arrays.items()})
            atomic_write_text(path / "encoder.json", json.dumps(settings))
            meta["encoder"] = settings["name"]
        return save_model_files(path, KIND, self.config, weights, **meta)

    @classmethod
    def load(cls, path: str | Path) -> VectorPredictor:
        """Restores a predictor written by :meth:`save`."""
        from ..data.text_encoders import encoder_from_state

        path = Path(path)

        def sizes(config: VectorPredictorConfig, meta: dict[str, Any]) -> dict[str, Any]:
            out = {"dim": meta["dim"], "hidden_size": config.hidden_size, "num_layers": config.num_layers}
            if config.cell == "transformer":
                out.update(num_heads=config.num_heads, context=config.context)
            return out

        meta, config, weights = read_model_files(path, VectorPredictorConfig.from_dict, sizes)
        model = NextVectorModel(config, int(meta["dim"]))
        state = {k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")}
        state.setdefault("mix", model.mix)  # saved before the mix existed: none
        model.load_state_dict(state)
        model.eval()
        encoder = None
        if "encoder" in meta:
            settings = json.loads((path / "encoder.json").read_text())
            arrays = {k.removeprefix("encoder."): v for k, v in weights.items() if k.startswith("encoder.")}
            encoder = encoder_from_state(arrays, settings)
        fitted = cls(model, config, encoder=encoder, run_dir=path)
        fitted.evaluation = (saved_evaluation(path) or {}).get("results", {})
        if isinstance(fitted.evaluation.get("model"), dict):
            fitted.summary = evaluation_summary(fitted.evaluation)
        return fitted


# ---------------------------------------------------------------- training
def _step_fn(config: VectorPredictorConfig, train: VectorChains, val: VectorChains, mined: np.ndarray | None):
    weights: dict[str, Any] = dict(loss_from_config(config))

    def step(m: NextVectorModel, batch: SegmentBatch) -> Tensor:
        y = m(tensor(batch.inputs), batch.lengths)
        bank = train if m.training else val
        targets = bank.vectors[batch.targets]
        negatives = mask = None
        if mined is not None and m.training:
            negatives, mask = negatives_for(batch.targets, mined, train.vectors)
        if config.bank_negatives:  # rank each target among every vector of its split
            return next_vector_loss(y, batch.positions, targets, bank=bank.vectors, target_rows=batch.targets,
                                    **weights)
        return next_vector_loss(y, batch.positions, targets, negatives=negatives, negative_mask=mask,
                                groups=batch.segments if config.cross_segment_negatives else None,
                                **weights)

    return step


def _predict_fn(m: NextVectorModel, batch: SegmentBatch) -> tuple[np.ndarray, np.ndarray]:
    y = m(tensor(batch.inputs), batch.lengths).data.reshape(-1, m.dim)[batch.positions]
    return unit_rows(y), batch.targets


def _mix_text(weights: Any) -> str:
    """``"last + 0.1 x previous - 0.2 x context mean"``: the fixed mix of a model."""
    a, b = (float(w) for w in weights)
    return (f"last {'-' if a < 0 else '+'} {abs(a):g} x previous "
            f"{'-' if b < 0 else '+'} {abs(b):g} x context mean")


def evaluation_summary(evaluation: dict[str, Any]) -> EvaluationSummary:
    """The held-out figures of :meth:`VectorPredictor.evaluate` (the model, then the
    baselines) as the report's :class:`~seqlab.report.EvaluationSummary`."""
    rows = {k: v for k, v in evaluation.items() if isinstance(v, dict)}
    keys = [k for k in rows["model"] if k not in ("windows", "bank")]
    beats = ("The model beats copy-last." if evaluation.get("beats_copy_last")
             else "**The model does not beat the copy-last baseline.**")
    return EvaluationSummary(
        "held-out chains, every window, bank of every held-out vector", rows, int(rows["model"]["windows"]),
        "windows", keys=keys, detail=f"bank of {int(rows['model']['bank']):,} vectors", notes=[beats],
        parameters={"contrastive_batch": CONTRASTIVE_BATCH},
    )


def _append_evaluation_to_report(run_dir: Path, summary: EvaluationSummary, data: VectorData) -> None:
    append_to_report(run_dir, summary, [
        f"Data: {data.summary()}", "", data.gates.summary(), "",
        "Files: [evaluation.json](evaluation.json), [model_config.toml](model_config.toml)",
    ])


def fit_vector_predictor(
    data: Any = None,
    config: VectorPredictorConfig | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    *,
    other_data: bool = False,
    arguments: dict[str, Any] | None = None,
) -> VectorPredictor:
    """Prepares the chains, trains, evaluates and reports; see :func:`seqlab.vector_predictor`.

    A new run claims ``out`` first (an existing run is refused before any work); a resumed
    run (``resume``: its directory) trains on the data recorded in it.
    """
    config = config or VectorPredictorConfig()
    if resume is not None:
        run_dir = Path(resume)
        data = resume_data(run_dir, read_run(run_dir, KIND), data, other_data)
    else:
        run_dir = claim_run_dir(out, KIND, data, arguments or {"config": config.to_dict()})
    start = time.perf_counter()
    prepared = prepare(data, config, verbose=verbose)
    from ..random import manual_seed

    manual_seed(config.seed)
    train_chains, val_chains = prepared.splits["train"], prepared.splits["val"]
    model = NextVectorModel(config, prepared.dim)
    optimizer = AdamW(model.parameters(), lr=1.0, weight_decay=config.weight_decay)  # rate set below
    train = SegmentBatches(train_chains, config.context, config.segments_per_batch, shuffle=True)
    windows_per_micro_batch = config.segments_per_batch * train.mean_segment_windows()
    accumulation = max(1, round(config.batch_size / windows_per_micro_batch))
    val = None
    if val_chains.num_vectors >= 2:
        val = SegmentBatches(val_chains, config.context, config.segments_per_batch * 4, shuffle=False)
    mined = None
    if config.hard_negatives:
        low, high = config.hard_negative_range
        mined = mine_hard_negatives(train_chains.vectors, config.hard_negatives, low, high)
        if verbose:
            print(f"hard negatives: {int((mined >= 0).sum())} mined for {len(mined)} training vectors")

    def retrieval(preds: np.ndarray, target_rows: np.ndarray) -> dict[str, float]:
        scores = retrieval_scores(preds, target_rows, val_chains.vectors)
        return {k: v for k, v in scores.items() if k.startswith("hit@") or k == "mrr"}

    callbacks: list[Any] = []
    schedule = WarmupSchedule(decay="cosine") if config.lr_schedule != "constant" else None
    if schedule is not None:
        callbacks.append(schedule)
    stopping = None
    if val is not None:
        stopping = EarlyStopping("val_hit@5", mode="max", patience=config.patience)
        callbacks += [stopping, Checkpoint(monitor="val_hit@5", mode="max", best_name=BEST_CHECKPOINT)]
    longest = int(train_chains.lengths.max())
    if verbose and longest - 1 < config.context:
        print(f"note: the longest training chain has {longest} vectors, so no window reaches the context "
              f"of {config.context} (windows hold up to {longest - 1})")
    trainer = Trainer(
        model, None, optimizer, train, val,
        epochs=config.epochs, accumulation_steps=accumulation, clip_grad_norm=config.clip_grad_norm,
        metrics={"retrieval": retrieval} if val is not None else None, seed=config.seed,
        out_dir=run_dir, resume=resume is not None, callbacks=callbacks, progress=progress,
        step_fn=_step_fn(config, train_chains, val_chains, mined), predict_fn=_predict_fn,
        config={"kind": KIND, **config.to_dict()}, verbose=verbose,
    )
    total_steps = config.epochs * trainer.steps_per_epoch()
    lr = config.learning_rate(total_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if schedule is not None:
        schedule.warmup_steps = max(1, round(WARMUP_FRACTION * total_steps))
        schedule.min_lr = lr / 10 if config.lr_schedule == "cosine" else lr
    if verbose:
        rate = (f"lr {lr:.3g} ({'from the steps, ' if config.lr == 'auto' else ''}"
                + (f"warmup {schedule.warmup_steps} steps" if schedule else "constant")
                + (f", cosine to {lr / 10:.2g})" if config.lr_schedule == "cosine" else ")"))
        print(f"training a {config.cell.upper()} ({config.hidden_size} units) on {train.num_samples} windows "
              f"of up to {config.context} vectors; {accumulation} micro-batches of "
              f"{config.segments_per_batch} segments per step (about {config.batch_size} windows); "
              f"{trainer.steps_per_epoch()} steps per epoch, at most {total_steps}; {rate}", flush=True)
    if stopping is not None and config.mix:  # a resumed run chooses the same again (the checkpoint holds it)
        weights, chosen = choose_mix(val_chains, config.context)
        model.mix[:] = weights
        if verbose:
            print(f"mix chosen on validation: {_mix_text(weights)} (val hit@5 {chosen['hit@5']:.4g}, "
                  f"mrr {chosen['mrr']:.4g}; copy-last {chosen['copy_last_hit@5']:.4g}, "
                  f"{chosen['copy_last_mrr']:.4g})", flush=True)
    # The untrained model (the mix, the head near zero) is scored as epoch 0: a trained
    # epoch is kept only if it beats it on validation Hit@5. Patience counts trained epochs
    # only, so a slow start is not cut short. A resumed run starts from the same weights.
    untrained = None
    if stopping is not None:
        untrained = (model.state_dict(), trainer.evaluate()["hit@5"])
        if verbose:
            print(f"epoch 0 (untrained): val hit@5 {untrained[1]:.4g}", flush=True)
    with interruptible(run_dir, KIND):
        history = trainer.fit()
    fitted = VectorPredictor(model, config, prepared, prepared.encoder, history, run_dir)
    if stopping is not None and untrained is not None:
        fitted.best_epoch = stopping.best_epoch
        if stopping.best is None or untrained[1] >= stopping.best:
            model.load_state_dict(untrained[0])
            fitted.best_epoch = 0
    held_out = [s for s in ("test", "val") if len(window_spans(prepared.splits[s], 1)[1])]
    split = held_out[0] if held_out else "train"
    if not held_out and verbose:
        print("note: no held-out chains (split fractions leave none); evaluating on the training chains")
    evaluation = fitted.evaluate(split=split)
    fitted.save(run_dir)
    write_json(run_dir / "evaluation.json", {
        "split": split, "results": evaluation, "gates": prepared.gates.to_dict(),
        "data": {"source": prepared.source, "dim": prepared.dim,
                 "splits": {s: {"chains": len(c), "vectors": c.num_vectors}
                            for s, c in prepared.splits.items()}},
        "seconds": time.perf_counter() - start,
    })
    fitted.summary = evaluation_summary(evaluation)
    _append_evaluation_to_report(run_dir, fitted.summary, prepared)
    if verbose:
        print(f"{split} split, {fitted.summary.sample_line()}:")
        print(format_table({k: v for k, v in evaluation.items() if isinstance(v, dict)}))
        if fitted.best_epoch == 0:
            print("note: no trained epoch beat the untrained model on validation; it is kept (the mix "
                  f"{_mix_text(model.mix)})")
        if not evaluation["beats_copy_last"]:
            print("note: the model does not beat the copy-last baseline on Hit@5 and MRR")
        print(f"report: {run_dir / 'training_report.md'}")
    return fitted


def vector_predictor(
    data: Any = None,
    context: int | None = None,
    cell: str | None = None,
    *,
    preset: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    other_data: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
    **overrides: Any,
) -> VectorPredictor:
    """Trains, evaluates and reports a next-vector predictor in one line.

    Args:
        data: None (the documentation of Python's standard library, one chain of
            paragraphs per module, embedded by TF-IDF + SVD), a folder of ``.txt``/``.md``
            files or a list of document strings (embedded the same way, or by
            ``encoder="minilm"``), an ``.npz`` with ``vectors`` and ``chain_offsets`` or
            ``chain_ids``, a list of ``(L_i, D)`` arrays, or :class:`VectorChains`.
        context: the most vectors a prediction reads (the preset's: 100 by default; 500 works).
        cell: ``"gru"`` (the preset's default), ``"lstm"`` or ``"transformer"``.
        preset: ``"default"`` (a learning rate from the optimizer steps the corpus allows,
            after a warmup; InfoNCE weight 0.2; the previous vector and the context mean
            mixed into the prediction with weights chosen on validation) or ``"original"``
            (the original project's constant 1e-4, InfoNCE weight 0.05, no mix); see
            :data:`~seqlab.models.vectors.config.PRESETS`.
        out: run directory (default ``runs/vector_predictor-<time>``); never overwritten: an
            existing run is refused before any work.
        resume: a run directory to continue from its last checkpoint, on the data and with
            the settings it was started with (``data`` may be left out). ``epochs=N`` is
            honoured: training continues up to epoch N counted from the run's start (an
            early-stopped run stays stopped); other changed settings are refused.
        other_data: with ``resume``, continue training on ``data`` although it is not the
            data the run was started on (refused otherwise).
        **overrides: any :class:`VectorPredictorConfig` field (``hidden_size=512``,
            ``epochs=10``, ``infonce_weight=0.1``, ``hard_negatives=4``, ...).

    Returns:
        The fitted :class:`VectorPredictor` (``.predict_next``, ``.stream``, ``.evaluate``,
        ``.save``); its ``run_dir`` holds the weights, checkpoints (``best_val_hit5``),
        metrics, ``evaluation.json`` and ``training_report.md``.

    Raises:
        FileExistsError: ``out`` already holds a run.
        KeyboardInterrupt: Ctrl-C during training, with the last checkpoint and the call
            that resumes the run in its message.
    """
    settings = dict(overrides)
    if context is not None:
        settings["context"] = context
    if cell is not None:
        settings["cell"] = cell
    if resume is not None:
        config = resumed_config(Path(resume), KIND, preset, settings, VectorPredictorConfig.from_dict,
                                make_preset)
    else:
        preset = preset or "default"
        config = make_preset(preset, **settings)
    return fit_vector_predictor(data, config, out=out, resume=resume, progress=progress, verbose=verbose,
                                other_data=other_data, arguments={"preset": preset, "overrides": settings})
