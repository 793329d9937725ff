"""One-line recipes: whole trainings with sensible defaults and a printed report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import nn, optim
from .autograd import Tensor, no_grad, tensor
from .random import generator, manual_seed
from .threads import get_num_threads, set_num_threads

if TYPE_CHECKING:
    from .train.forecaster import Forecaster


@dataclass
class DemoResult:
    """What :func:`sequence_demo` returns: the fitted model and the loss history."""

    model: nn.Module
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


class _NextValueModel(nn.Module):
    """LSTM over (B, T, 1) sequences and a linear read-out predicting the next value."""

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.head(out)


def _noisy_sines(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """n sequences of length+1 steps: sums of two sines with random frequency and phase."""
    t = np.arange(length + 1, dtype=np.float64)[None, :]
    f1, f2 = rng.uniform(0.05, 0.3, (n, 1)), rng.uniform(0.3, 0.6, (n, 1))
    p1, p2 = rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
    x = np.sin(f1 * t + p1) + 0.5 * np.sin(f2 * t + p2) + 0.05 * rng.standard_normal((n, length + 1))
    return x.astype(np.float32)


def sequence_demo(
    epochs: int = 15,
    hidden: int = 64,
    layers: int = 1,
    length: int = 50,
    samples: int = 2048,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    threads: int | None = None,
    verbose: bool = True,
) -> DemoResult:
    """Trains an LSTM to predict the next value of generated noisy sine sequences.

    A short end-to-end check that the kernels, autograd and optimizer work together:
    the printed validation loss falls from about the signal's variance (~0.6) to a
    small fraction of it within a few epochs.

    Args:
        epochs: passes over the training sequences.
        hidden, layers: LSTM size.
        length: timesteps per sequence (inputs are (batch, length, 1)).
        samples: generated training sequences (a quarter as many again for validation).
        batch_size, lr, seed: training settings; same seed and threads give the same run.
        threads: kernel threads (default: all cores).
    """
    if threads is not None:
        set_num_threads(threads)
    manual_seed(seed)
    rng = generator()
    train = _noisy_sines(samples, length, rng)
    val = _noisy_sines(max(1, samples // 4), length, rng)
    model = _NextValueModel(hidden, layers)
    opt = optim.Adam(model.parameters(), lr=lr)
    result = DemoResult(model=model)
    start = time.perf_counter()
    if verbose:
        print(
            f"seqlab demo: LSTM({hidden}, layers={layers}) predicting the next value of "
            f"{samples} noisy sine sequences of length {length}, {get_num_threads()} threads"
        )

    def mse(pred: Tensor, target: np.ndarray) -> Tensor:
        diff = pred - target[:, :, None]
        return (diff * diff).mean()

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train))
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = train[order[i : i + batch_size]]
            x = tensor(batch[:, :-1, None])
            opt.zero_grad()
            loss = mse(model(x), batch[:, 1:])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total += loss.item() * len(batch)
        with no_grad():
            model.eval()
            val_loss = mse(model(tensor(val[:, :-1, None])), val[:, 1:]).item()
            model.train()
        result.train_loss.append(total / len(train))
        result.val_loss.append(val_loss)
        if verbose:
            print(f"epoch {epoch:3d}/{epochs}  train mse {result.train_loss[-1]:.4f}  val mse {val_loss:.4f}")
    result.seconds = time.perf_counter() - start
    if verbose:
        first, last = result.val_loss[0], result.val_loss[-1]
        print(f"done in {result.seconds:.1f}s: val mse {first:.4f} -> {last:.4f}")
    return result


def _default_target(columns: list[str]) -> str:
    """latency for agent event series, otherwise the last column (ETTh1's OT, co2, ...)."""
    return "latency_ms" if "latency_ms" in columns else columns[-1]


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """The evaluation of :meth:`Forecaster.evaluate` as an aligned text table."""
    keys = list(next(iter(scores.values())))
    widths = [max(10, len(k) + 2) for k in keys]
    lines = [f"{'':16s}" + "".join(f"{k:>{w}s}" for k, w in zip(keys, widths))]
    for name, row in scores.items():
        lines.append(f"{name:16s}" + "".join(f"{row[k]:{w}.4g}" for k, w in zip(keys, widths)))
    return "\n".join(lines)


def forecaster(
    data: Any = None,
    model: str = "nbeats",
    horizon: int = 24,
    input_size: int = 96,
    tune: int | None = None,
    target: str | int | None = None,
    split: Any = (0.7, 0.1, 0.2),
    preset: str = "small",
    method: str = "bayesian",
    storage: str | None = None,
    scaler: str = "standard",
    out_dir: str | Path | None = None,
    on_error: str = "raise",
    seed: int = 0,
    threads: int | None = None,
    verbose: bool = True,
    **overrides: Any,
) -> Forecaster:
    """Fits a forecaster in one line and prints its test scores beside naive baselines.

    Args:
        data: a CSV time series, a JSON Lines / JSON event file, ``"co2"`` / ``"sunspots"``
            / ``"nile"``, a TimeSeries or array, or None for the SYNTHETIC agent event
            stream (see :func:`seqlab.data.load_series`).
        model: ``"nbeats"``, ``"tcn"``, ``"lstm"`` or ``"auto"`` (tunes and picks among the three).
        horizon, input_size: steps predicted and steps of history per window.
        tune: None, or the number of Optuna trials to search before the final fit
            (``"auto"`` searches 9 trials when None).
        target: the column to forecast (default ``latency_ms`` for events, else the last column).
        split: (train, val, test) fractions or row counts, in time order.
        preset: ``"tiny"``, ``"small"`` or ``"paper"`` model sizes (:data:`PRESETS`).
        method, storage: the search's method and Optuna storage URL (when tuning).
        scaler: ``"standard"``, ``"robust"`` or ``"none"``, fitted on training rows.
        out_dir: save the forecaster, its evaluation (``evaluation.json``) and the search there.
        on_error: malformed events are refused (``"raise"``) or skipped (``"skip"``).
        overrides: :class:`~seqlab.models.forecast.ForecastConfig` fields (``epochs=5``,
            ``width=128``, ``ensemble_seeds=[0, 1, 2]``, ...).

    Returns the fitted :class:`~seqlab.train.forecaster.Forecaster` (``.predict(history)``,
    ``.evaluate()``, ``.save(path)``).
    """
    from .data.sources import load_series
    from .data.timeseries import make_splits
    from .models.forecast.baselines import guess_season
    from .models.forecast.config import preset as make_preset
    from .serialization import write_json
    from .train.forecaster import Forecaster

    if threads is not None:
        set_num_threads(threads)
    manual_seed(seed)
    series = load_series(data, on_error=on_error, seed=seed)
    tgt = _default_target(series.columns) if target is None else target
    splits = make_splits(series, input_size, horizon, tgt, split, scaler=scaler)
    season = guess_season(series.timestamps)
    base_model = "nbeats" if model == "auto" else model
    base = make_preset(preset, base_model, seed=seed, **overrides)
    if verbose:
        print(f"seqlab forecaster: {model} on {series.source} ({len(series)} steps, {len(series.columns)} "
              f"columns), target {splits.columns[splits.target_columns[0]]!r}, input {input_size}, "
              f"horizon {horizon}, {get_num_threads()} threads")
    trials = tune if tune is not None else (9 if model == "auto" else None)
    if trials:
        from .tune.search import search

        search_dir = None if out_dir is None else Path(out_dir) / "search"
        result = search(model, splits, method=method, trials=trials, storage=storage, base=base,
                        season=season, seed=seed, out_dir=search_dir, verbose=False)
        fitted = result.forecaster
        assert fitted is not None
        fitted.search_result = result
        if verbose:
            print(f"search: {len(result.trials)} trials, best {result.best_params} "
                  f"(val mse {result.best_value:.4g})")
    else:
        fitted = Forecaster.fit(splits, base, season=season, verbose=False)
    scores = fitted.evaluate("test")
    if verbose:
        print(f"trained in {fitted.train_seconds:.1f}s; test scores (data units):")
        print(format_scores(scores))
    if out_dir is not None:
        fitted.save(Path(out_dir))
        write_json(Path(out_dir) / "evaluation.json", {"test": scores, "val": fitted.evaluate("val")})
    return fitted
