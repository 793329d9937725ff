"""``model="auto"``: search the models, then choose between the best trial and the same
configuration as a median ensemble over lookbacks, on the validation windows.

The search (:func:`~seqlab.tune.search.search` over N-BEATS, TCN and LSTM) trains every
trial on one lookback, the middle of :func:`auto_lookbacks` (96 steps of the default
168-step input). The best configuration is then trained once per lookback (a day, four
days and a week of an hourly series by default) and combined by the median
(:class:`~seqlab.models.forecast.ensemble.MedianEnsemble`), as N-BEATS ensembles its
members. The final forecaster is whichever of the two candidates has the lower MSE on the
validation windows: every window of the part just before the test part, at the same stride,
so the choice is judged on the origins nearest to those it is tested on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.timeseries import WindowSplits
from ..models.forecast.config import ForecastConfig
from ..train.forecaster import Forecaster
from .search import SearchResult, _val_mse, search

# the default input of model="auto": a week of an hourly series, the longest lookback
AUTO_INPUT_SIZE = 168
# each lookback as a share of the input: 2/7, 4/7 and 7/7 (48, 96 and 168 steps of 168)
_LOOKBACK_SEVENTHS = (2, 4, 7)


def auto_lookbacks(input_size: int) -> list[int]:
    """The ensemble lookbacks of ``model="auto"`` for windows of ``input_size`` steps:
    2/7, 4/7 and all of the input (``[48, 96, 168]`` for 168), distinct and at least 1."""
    if input_size < 1:
        raise ValueError(f"input_size: expected a positive int, got {input_size}")
    return sorted({max(1, round(input_size * s / 7)) for s in _LOOKBACK_SEVENTHS})


def fit_auto(
    splits: WindowSplits,
    base: ForecastConfig,
    trials: int,
    season: int,
    method: str = "bayesian",
    storage: Any = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
) -> Forecaster:
    """Searches ``trials`` configurations of every model, then returns the better on the
    validation windows of the best trial (refitted) and its median ensemble.

    ``base.ensemble_lookbacks`` (when given) replace :func:`auto_lookbacks`; trials read the
    middle one. The returned forecaster's ``search_result.selection`` records both
    candidates' validation MSE (scaled units, the search's objective), their lookbacks and
    which was chosen.
    """
    lookbacks = sorted(base.ensemble_lookbacks) or auto_lookbacks(splits.input_size)
    trial_base = base.replace(ensemble_lookbacks=[lookbacks[len(lookbacks) // 2]])
    result: SearchResult = search(
        "auto", splits, method=method, trials=trials, storage=storage, base=trial_base, season=season,
        seed=seed, out_dir=out_dir, refit=False, verbose=False,
    )
    params = {k: v for k, v in result.best_params.items() if k != "model"}
    best = trial_base.replace(model=result.best_params["model"], **params)
    candidates: dict[str, dict[str, Any]] = {
        "best trial": {"lookbacks": list(trial_base.ensemble_lookbacks), "val_mse": result.best_value},
    }
    chosen: Forecaster | None = None
    if len(lookbacks) > 1:
        ensemble = Forecaster.fit(splits, best.replace(ensemble_lookbacks=lookbacks), season=season)
        candidates["median ensemble"] = {"lookbacks": lookbacks, "val_mse": _val_mse(ensemble, splits)}
        if candidates["median ensemble"]["val_mse"] <= result.best_value:
            chosen = ensemble
    if chosen is None:
        chosen = Forecaster.fit(splits, best, season=season)  # the best trial again (same seed)
    name = "median ensemble" if len(chosen.lookbacks) > 1 else "best trial"
    result.forecaster = chosen
    result.selection = {"candidates": candidates, "chosen": name}
    chosen.search_result = result
    return chosen
