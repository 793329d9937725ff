"""Forecaster: a trained forecasting model with its data scaling, ``predict``, ``evaluate``
and ``save``; :meth:`Forecaster.fit` trains one (or a median ensemble) with the Trainer."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import optim
from ..autograd import no_grad
from ..data.timeseries import Scaler, WindowSplits
from ..models.forecast import baselines, exp_smoothing
from ..models.forecast.config import ForecastConfig, build_model
from ..models.forecast.ensemble import MedianEnsemble
from ..models.forecast.forecast_metrics import forecast_scores, success_accuracy, within_threshold
from ..models.forecast.losses import get_loss
from ..nn.module import Module
from ..serialization import load_bundle, save_bundle, write_toml
from .callback import Callback
from .early_stopping import EarlyStopping
from .trainer import Trainer

BUNDLE = "forecaster.safetensors"


@dataclass
class Forecaster:
    """A fitted forecaster.

    Attributes:
        model: the trained module (a :class:`MedianEnsemble` for ensembles), in eval mode.
        config: its hyperparameters.
        scaler: the scaling fitted on the training rows.
        columns, target_columns: input column names and the targets' indices among them.
        input_size, horizon: window and forecast lengths.
        season: the seasonal-naive baseline's season in steps.
        splits: the data it was fitted on (None after :meth:`load`).
        history: per-epoch logs of every trained member.
        train_seconds: training time of all members.
        lookbacks: each member's lookback.
        search_result: the hyperparameter search that chose it, if any.
    """

    model: Module
    config: ForecastConfig
    scaler: Scaler
    columns: list[str]
    target_columns: list[int]
    input_size: int
    horizon: int
    season: int = 24
    splits: WindowSplits | None = None
    history: list[list[dict[str, Any]]] = field(default_factory=list)
    train_seconds: float = 0.0
    lookbacks: list[int] = field(default_factory=list)
    search_result: Any = field(default=None, repr=False)
    evaluation: dict[str, Any] = field(default_factory=dict, repr=False)
    summary: Any = field(default=None, repr=False)
    run_dir: Path | None = field(default=None, repr=False)

    def _repr_html_(self) -> str:
        from ..report.evaluation import recipe_html

        return recipe_html(repr(self), self.summary, self.run_dir)

    def __repr__(self) -> str:
        members = len(self.lookbacks) or 1
        targets = ", ".join(repr(self.columns[c]) for c in self.target_columns)
        return (
            f"Forecaster({self.config.model}, input {self.input_size} -> horizon {self.horizon}, "
            f"target {targets}, {len(self.columns)} input columns, {members} member"
            f"{'s' if members > 1 else ''}, season {self.season}, trained {self.train_seconds:.1f}s)"
        )

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls,
        splits: WindowSplits,
        config: ForecastConfig,
        season: int = 24,
        callbacks: Sequence[Callback] = (),
        out_dir: str | Path | None = None,
        verbose: bool = False,
        resume: bool = False,
    ) -> Forecaster:
        """Trains ``config``'s model on ``splits`` (early stopping on validation loss when
        ``config.patience > 0``, restoring the best epoch).

        With ``config.ensemble_*`` lists, one member is trained per combination of lookback,
        loss and seed and the result is a :class:`MedianEnsemble`. ``callbacks`` (e.g. an
        Optuna pruning callback) are given to the first member's Trainer only.

        With ``out_dir`` each member trains in its own run directory ``out_dir/member<i>``
        (checkpoints, metrics, report); ``resume=True`` continues each from its last checkpoint.
        """
        lookbacks = config.ensemble_lookbacks or [splits.input_size]
        losses = config.ensemble_losses or [config.loss]
        seeds = config.ensemble_seeds or [config.seed]
        for lb in lookbacks:
            if not 1 <= lb <= splits.input_size:
                raise ValueError(f"ensemble_lookbacks: {lb} is not in 1..input_size={splits.input_size}")
        members: list[Module] = []
        member_lookbacks: list[int] = []
        histories: list[list[dict[str, Any]]] = []
        start = time.perf_counter()
        for i, (lb, loss, seed) in enumerate(itertools.product(lookbacks, losses, seeds)):
            run_dir = None if out_dir is None else Path(out_dir) / f"member{i}"
            model, hist = _train_member(
                splits, config, lb, loss, seed, callbacks if i == 0 else (), run_dir, verbose, resume
            )
            members.append(model)
            member_lookbacks.append(lb)
            histories.append(hist)
        seconds = time.perf_counter() - start
        single = len(members) == 1 and member_lookbacks[0] == splits.input_size
        model = members[0] if single else MedianEnsemble(members, member_lookbacks)
        model.eval()
        return cls(
            model,
            config,
            splits.scaler,
            list(splits.columns),
            list(splits.target_columns),
            splits.input_size,
            splits.horizon,
            season,
            splits,
            histories,
            seconds,
            member_lookbacks,
        )

    # -------------------------------------------------------------- predict
    def predict_scaled(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Forecasts for scaled windows x (B, input_size, C) -> scaled (B, horizon, n_targets)."""
        self.model.eval()
        out = []
        with no_grad():
            for i in range(0, len(x), batch_size):
                out.append(np.asarray(self.model(np.ascontiguousarray(x[i : i + batch_size])).data))
        return (
            np.concatenate(out) if out else np.zeros((0, self.horizon, len(self.target_columns)), np.float32)
        )

    def predict(self, history: Any) -> np.ndarray:
        """Forecasts the next ``horizon`` steps after ``history``, in the data's units.

        Args:
            history: (T, C) values of the input columns (T >= input_size; the last
                ``input_size`` rows are used), or a batch (B, T, C); for a univariate
                series (one input column) also a 1-D (T,) history.

        Returns:
            (horizon, n_targets), or (B, horizon, n_targets) for a batch; (horizon,) for a
            1-D history.
        """
        h = np.asarray(history, dtype=np.float32)
        flat = h.ndim == 1 and len(self.columns) == 1
        if flat:
            h = h[:, None]
        single = h.ndim == 2
        if single:
            h = h[None]
        if h.ndim != 3 or h.shape[2] != len(self.columns):
            raise ValueError(
                f"predict: history must be (T, {len(self.columns)}) or (B, T, {len(self.columns)}) "
                f"with columns {self.columns}, got shape {np.shape(history)}"
            )
        if h.shape[1] < self.input_size:
            raise ValueError(
                f"predict: history has {h.shape[1]} steps, fewer than input_size {self.input_size}"
            )
        if not np.isfinite(h).all():
            raise ValueError("predict: history contains NaN or infinite values")
        scaled = self.scaler.transform(h[:, -self.input_size :])
        y = self.scaler.inverse_transform(self.predict_scaled(scaled), self.target_columns)
        if flat:
            return y[0, :, 0]
        return y[0] if single else y

    # ------------------------------------------------------------- evaluate
    def evaluate(
        self,
        split: str = "test",
        latency_threshold: float = 0.1,
        success_cut: float = 0.95,
        exp_smoothing_origins: int = 0,
    ) -> dict[str, dict[str, float]]:
        """Scores on the ``"val"`` or ``"test"`` windows, in the data's units, beside the
        naive baselines (last value, seasonal naive) on the same windows.

        With ``exp_smoothing_origins=K > 0``, Holt-Winters exponential smoothing
        (:mod:`~seqlab.models.forecast.exp_smoothing`) is refitted at K origins spread
        evenly over the windows, and the model is scored on the same K windows.

        Returns ``{"model": {...}, "last_value": {...}, "seasonal_naive": {...}}`` (and
        ``"model_at_es_origins"``, ``"exp_smoothing"`` with K) with MSE, MAE, R^2, sMAPE
        and ``windows`` (the number of windows scored) each; when the target is
        ``latency_ms`` also the share within ``latency_threshold`` (relative), when it is
        ``success_rate`` the accuracy of predicting a rate of at least ``success_cut``.
        """
        if self.splits is None:
            raise ValueError("evaluate(): this forecaster was loaded without its data; use predict()")
        if split not in ("val", "test"):
            raise ValueError(f"evaluate(): split must be 'val' or 'test', got {split!r}")
        x, y = getattr(self.splits, split)
        truth = self.splits.unscale_targets(y)
        raw_x = self.scaler.inverse_transform(x)
        model = self.splits.unscale_targets(self.predict_scaled(x))
        preds = {
            "model": (model, truth),
            "last_value": (baselines.last_value(raw_x, self.horizon, self.target_columns), truth),
            "seasonal_naive": (
                baselines.seasonal_naive(raw_x, self.horizon, self.target_columns, self.season),
                truth,
            ),
        }
        if exp_smoothing_origins > 0:
            picked = exp_smoothing.spread_origins(len(x), exp_smoothing_origins)
            first_target_row = self.splits.bounds[1 if split == "val" else 2]
            rows = max(0, first_target_row - self.input_size) + self.input_size + picked
            raw_targets = self.splits.raw[:, self.target_columns]
            es = exp_smoothing.holt_winters(raw_targets, rows, self.horizon, self.season)
            preds["model_at_es_origins"] = (model[picked], truth[picked])
            preds["exp_smoothing"] = (es, truth[picked])
        names = [self.columns[c] for c in self.target_columns]
        out: dict[str, dict[str, float]] = {}
        for key, (p, t) in preds.items():
            scores = forecast_scores(p, t)
            for j, name in enumerate(names):
                if name == "latency_ms":
                    scores["latency_within_threshold"] = within_threshold(
                        p[..., j], t[..., j], latency_threshold
                    )
                if name == "success_rate":
                    scores["success_accuracy"] = success_accuracy(p[..., j], t[..., j], success_cut)
            scores["windows"] = float(len(p))
            out[key] = scores
        return out

    # ---------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Writes the forecaster to directory ``path`` (weights, scaling and metadata in one
        checksummed safetensors bundle, the config as TOML); returns the directory."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "columns": self.columns,
            "target_columns": self.target_columns,
            "input_size": self.input_size,
            "horizon": self.horizon,
            "season": self.season,
            "lookbacks": self.lookbacks,
            "train_seconds": self.train_seconds,
        }
        save_bundle(
            d / BUNDLE,
            {
                "config": self.config.to_dict(),
                "meta": meta,
                "scaler": self.scaler.state(),
                "weights": dict(self.model.state_dict()),
            },
        )
        write_toml(d / "config.toml", {"forecaster": self.config.to_dict(), "data": meta})
        write_toml(d / "model_config.toml", {"kind": "forecaster", "bundle": BUNDLE})
        return d

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Reads a forecaster written by :meth:`save` (without its training data)."""
        d = Path(path)
        if not (d / BUNDLE).is_file():
            raise FileNotFoundError(f"{d}: no {BUNDLE} (not a saved forecaster)")
        doc = load_bundle(d / BUNDLE)
        config = ForecastConfig(**doc["config"])
        meta = doc["meta"]
        n_features, tcols = len(meta["columns"]), [int(c) for c in meta["target_columns"]]
        lookbacks = [int(v) for v in meta["lookbacks"]]
        members = [build_model(config, n_features, lb, int(meta["horizon"]), tcols) for lb in lookbacks]
        single = len(members) == 1 and lookbacks[0] == int(meta["input_size"])
        model = members[0] if single else MedianEnsemble(members, lookbacks)
        model.load_state_dict(doc["weights"])
        model.eval()
        return cls(
            model,
            config,
            Scaler.from_state(doc["scaler"]),
            list(meta["columns"]),
            tcols,
            int(meta["input_size"]),
            int(meta["horizon"]),
            int(meta["season"]),
            None,
            [],
            float(meta["train_seconds"]),
            lookbacks,
        )


def _train_member(
    splits: WindowSplits,
    config: ForecastConfig,
    lookback: int,
    loss: str,
    seed: int,
    callbacks: Sequence[Callback],
    out_dir: Path | None,
    verbose: bool,
    resume: bool = False,
) -> tuple[Module, list[dict[str, Any]]]:
    from ..random import manual_seed

    manual_seed(seed)
    (xtr, ytr), (xva, yva) = splits.train, splits.val
    xtr, xva = np.ascontiguousarray(xtr[:, -lookback:]), np.ascontiguousarray(xva[:, -lookback:])
    model = build_model(config, xtr.shape[2], lookback, splits.horizon, list(splits.target_columns))
    opt = optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    cbs = list(callbacks)
    if config.patience > 0:
        cbs.append(EarlyStopping(monitor="val_loss", patience=config.patience))
    trainer = Trainer(
        model,
        get_loss(loss),
        opt,
        (xtr, ytr),
        (xva, yva),
        epochs=config.epochs,
        batch_size=config.batch_size,
        clip_grad_norm=config.clip_grad_norm or None,
        seed=seed,
        out_dir=out_dir,
        resume=resume,
        callbacks=cbs,
        progress=False,
        verbose=verbose,
        config=config.to_dict(),
        grad_monitor=False,
    )
    history = trainer.fit()
    model.eval()
    return model, history
