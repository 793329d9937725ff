"""Forecaster quality against Holt-Winters exponential smoothing and the naive baselines.

The recipe's defaults (input 96, horizon 24, 70/10/20 split in time, preset "small") on
ETTh1 (target OT, hourly, season 24) and statsmodels co2 (weekly, season 52). For each
seed, each configuration is fitted by ``seqlab.forecaster`` and scored on the test
windows in the data's units: on every window beside last value and seasonal naive, and
on ``--origins`` windows spread evenly over the test part beside Holt-Winters refitted at
each of those origins (statsmodels' ExponentialSmoothing, additive damped trend and
season, at most 10 seasons of history; it does not depend on the seed, so it is fitted
once per series). "seconds" is the whole fit, search included.

    python benchmarks/bench_forecast_quality.py --markdown
    python benchmarks/bench_forecast_quality.py --series co2 --configs ensemble --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import seqlab
from harness import machine_description, markdown_table
from seqlab.data.sources import load_series
from seqlab.data.timeseries import make_splits
from seqlab.models.forecast import baselines
from seqlab.models.forecast.baselines import guess_season
from seqlab.models.forecast.exp_smoothing import holt_winters, spread_origins
from seqlab.models.forecast.forecast_metrics import forecast_scores

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SERIES = {"ETTh1": str(DATA / "ETTh1.csv"), "co2": "co2"}
CONFIGS: dict[str, dict[str, Any]] = {
    "nbeats": {"model": "nbeats"},
    "ensemble": {"model": "nbeats", "ensemble_lookbacks": [48, 72, 96]},
    "ensemble_mse_mae": {"model": "nbeats", "ensemble_lookbacks": [48, 96],
                         "ensemble_losses": ["mse", "mae"]},
    "auto": {"model": "auto"},
    # levers tried on ETTh1 one at a time (issue 17): every member trained on MAE; a week of
    # history for the hourly series; more members (seeds) in the median
    "ensemble_mae": {"model": "nbeats", "ensemble_lookbacks": [48, 72, 96], "ensemble_losses": ["mae"]},
    "ensemble_168": {"model": "nbeats", "input_size": 168, "ensemble_lookbacks": [48, 96, 168]},
    "nbeats_168": {"model": "nbeats", "input_size": 168},
    "ensemble_168_mae": {"model": "nbeats", "input_size": 168, "ensemble_lookbacks": [48, 96, 168],
                         "ensemble_losses": ["mae"]},
}


def _spread(runs: list[dict[str, float]], key: str) -> str:
    """The median over seeds and the range."""
    vals = [r[key] for r in runs]
    return f"{statistics.median(vals):.4g} ({min(vals):.4g}-{max(vals):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=["ETTh1", "co2"])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["ensemble", "auto"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--origins", type=int, default=50, help="Holt-Winters origins in the test part")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log", default=None,
                        help="append one JSON line per fit to this file; fits already in it are reused")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    seqlab.set_num_threads(args.threads)
    done = {}
    if args.log and Path(args.log).is_file():  # fits logged by an earlier run are read, not redone
        for text in Path(args.log).read_text().splitlines():
            line = json.loads(text)
            done[line["series"], line["config"], line["seed"]] = line
    rows = []
    for name in args.series:
        series = load_series(SERIES[name])
        splits = make_splits(series, 96, 24, series.columns[-1])
        x, y = splits.test  # the targets of test window i start at the same row whatever the input size
        picked = spread_origins(len(x), args.origins)
        truth = splits.unscale_targets(y[picked])
        season = guess_season(series.timestamps)
        cache = Path(f"{args.log}.{name}.hw{args.origins}.npy") if args.log else None
        if cache is not None and cache.is_file():  # it does not depend on the seed
            es = np.load(cache)
        else:
            es = holt_winters(splits.raw[:, splits.target_columns], splits.bounds[2] + picked, 24, season)
            if cache is not None:
                np.save(cache, es)
        es_scores = forecast_scores(es, truth)
        print(json.dumps({"series": name, "holt_winters": es_scores, "origins": len(picked)}), flush=True)
        fits: dict[str, list[dict[str, float]]] = {c: [] for c in args.configs}
        for config in args.configs:
            for seed in args.seeds:
                if (name, config, seed) in done:
                    fits[config].append(done[name, config, seed])
                    continue
                t0 = time.perf_counter()
                f = seqlab.forecaster(SERIES[name], seed=seed, verbose=False, baseline_origins=0,
                                      **CONFIGS[config])
                seconds = time.perf_counter() - t0
                scores = f.evaluate("test")
                fx = f.splits.test[0]  # the config's own input size
                at = forecast_scores(f.splits.unscale_targets(f.predict_scaled(fx[picked])), truth)
                row = {"mse": scores["model"]["mse"], "mae": scores["model"]["mae"],
                       "es_mse": at["mse"], "es_mae": at["mae"], "seconds": seconds}
                fits[config].append(row)
                line = {"series": name, "config": config, "seed": seed, **row,
                        "params": getattr(f.search_result, "best_params", None),
                        "selection": getattr(f.search_result, "selection", None) or None}
                print(json.dumps(line), flush=True)
                if args.log:
                    with open(args.log, "a") as log:
                        log.write(json.dumps(line) + "\n")
        raw_x, all_truth = splits.scaler.inverse_transform(x), splits.unscale_targets(y)
        n_all, n_es = len(x), len(picked)
        for base, pred in (
            ("last_value", baselines.last_value(raw_x, 24, splits.target_columns)),
            ("seasonal_naive", baselines.seasonal_naive(raw_x, 24, splits.target_columns, season)),
        ):
            b = forecast_scores(pred, all_truth)
            rows.append([name, base, b["mse"], b["mae"], n_all, "", "", n_es, ""])
        rows.append([name, "Holt-Winters", "", "", "", es_scores["mse"], es_scores["mae"], n_es, ""])
        for config, runs in fits.items():
            rows.append([name, f"{config} ({len(runs)} seeds)", _spread(runs, "mse"), _spread(runs, "mae"),
                         n_all, _spread(runs, "es_mse"), _spread(runs, "es_mae"), n_es,
                         _spread(runs, "seconds")])
    header = ["series", "forecaster", "MSE, every window", "MAE", "windows", "MSE at HW origins",
              "MAE at HW origins", "origins", "seconds"]
    if args.markdown:
        print(machine_description())
        print(markdown_table(header, rows))
    else:
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
