"""Forecasting: accuracy on real data beside naive baselines, and training time against the
same models written in PyTorch (same process, same threads, same data and epochs).

1. The causal convolution kernel: forward + backward of a dilated causal Conv1d,
   seqlab against ``torch.nn.functional.conv1d`` on left-padded input, each timed in its
   own block of repeats (``--interleaved``: alternating), with achieved GFLOP/s.
2. ETTh1 (target OT, input 96, horizon 24, train/val/test = 12/4/4 months; LSTM and TCN
   read all 7 columns, N-BEATS the target) and statsmodels co2 (weekly, input 104,
   horizon 26, 70/10/20 split): MSE and MAE on the test windows, in units of the
   training-set standard deviation (the ETTh1 literature's convention), for LSTM, TCN
   and N-BEATS (interpretable) trained by seqlab and by PyTorch, beside the last-value
   and seasonal-naive baselines; and the training time of each (fixed epochs, validation
   after every epoch, no early stopping) with the ratio PyTorch / seqlab.

    python benchmarks/bench_forecast.py            # ~10 minutes on 2 cores
    python benchmarks/bench_forecast.py --quick    # ~3 minutes: co2 4 epochs, ETTh1 1 epoch on 2048 windows
    python benchmarks/bench_forecast.py --quick --train-repeats 3   # median of 3 trainings each
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import seqlab
from harness import interleaved_medians, machine_description, markdown_table, median_seconds
from seqlab.data.sources import load_series
from seqlab.data.timeseries import WindowSplits, make_splits
from seqlab.models.forecast import baselines, nbeats, preset
from seqlab.train.forecaster import Forecaster

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------- conv kernel
def conv_row(
    torch, shape: tuple[int, int, int, int, int], threads: int, repeats: int, interleaved: bool = False
) -> list[object]:
    """One (B, T, C, K, dilation) row: medians of forward + backward, GFLOP/s and the ratio."""
    b, t, c, k, d = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, c)).astype(np.float32)
    w = (0.1 * rng.standard_normal((c, c, k))).astype(np.float32)
    gy = rng.standard_normal((b, t, c)).astype(np.float32)
    ws, xs = seqlab.nn.Parameter(w), seqlab.tensor(x, requires_grad=True)
    bias = seqlab.nn.Parameter(np.zeros(c, np.float32))

    def ours() -> None:
        y = seqlab.functional.causal_conv1d(xs, ws, bias, dilation=d)
        y.backward(gy)

    xt = torch.tensor(x.transpose(0, 2, 1).copy(), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.zeros(c, requires_grad=True)
    gyt = torch.tensor(gy.transpose(0, 2, 1).copy())

    def theirs() -> None:
        y = torch.nn.functional.conv1d(torch.nn.functional.pad(xt, (d * (k - 1), 0)), wt, bt, dilation=d)
        y.backward(gyt)

    if interleaved:
        s_ours, s_torch = interleaved_medians([ours, theirs], repeats=repeats)
    else:  # each in its own block (PyTorch's idle OpenMP threads spin on the core we need next)
        s_ours, s_torch = (median_seconds(fn, repeats=repeats) for fn in (ours, theirs))
    flops = 3 * 2.0 * b * t * c * c * k  # forward, grad input, grad weight
    return [
        f"B={b} T={t} C={c} K={k} d={d}",
        threads,
        s_ours * 1e3,
        s_torch * 1e3,
        flops / s_ours / 1e9,
        s_torch / s_ours,
    ]


def bench_conv(torch, threads: int, repeats: int, interleaved: bool = False) -> list[list[object]]:
    shapes = [(64, 96, 32, 3, 1), (64, 96, 32, 3, 4), (64, 96, 32, 3, 16), (32, 512, 64, 3, 8)]
    return [conv_row(torch, shape, threads, repeats, interleaved) for shape in shapes]


# ------------------------------------------------------------- torch models
def torch_models(torch):
    nn, F = torch.nn, torch.nn.functional

    class LSTM(nn.Module):
        def __init__(self, c, h, horizon, tcols):
            super().__init__()
            self.enc = nn.LSTM(c, h, batch_first=True)
            self.head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, horizon * len(tcols)))
            self.horizon, self.tcols = horizon, tcols

        def forward(self, x):
            _, (h, _) = self.enc(x)
            out = self.head(h[-1]).reshape(x.shape[0], self.horizon, len(self.tcols))
            return out + x[:, -1:, self.tcols]

    class Block(nn.Module):
        def __init__(self, cin, cout, k, d):
            super().__init__()
            self.c1, self.c2, self.pad = (
                nn.Conv1d(cin, cout, k, dilation=d),
                nn.Conv1d(cout, cout, k, dilation=d),
                d * (k - 1),
            )
            self.down = nn.Conv1d(cin, cout, 1) if cin != cout else None

        def forward(self, x):
            out = F.relu(self.c1(F.pad(x, (self.pad, 0))))
            out = F.relu(self.c2(F.pad(out, (self.pad, 0))))
            return F.relu(out + (x if self.down is None else self.down(x)))

    class TCN(nn.Module):
        def __init__(self, c, ch, k, dilations, horizon, tcols):
            super().__init__()
            self.blocks = nn.Sequential(
                *[Block(c if i == 0 else ch, ch, k, d) for i, d in enumerate(dilations)]
            )
            self.head = nn.Linear(ch, horizon * len(tcols))
            self.horizon, self.tcols = horizon, tcols

        def forward(self, x):
            h = self.blocks(x.transpose(1, 2))[:, :, -1]
            return self.head(h).reshape(x.shape[0], self.horizon, len(self.tcols)) + x[:, -1:, self.tcols]

    class NBeatsBlock(nn.Module):
        def __init__(self, L, H, width, back, fore):
            super().__init__()
            layers = []
            for i in range(4):
                layers += [nn.Linear(L if i == 0 else width, width), nn.ReLU()]
            self.fc = nn.Sequential(*layers)
            self.tb, self.tf = (
                nn.Linear(width, back.shape[0], bias=False),
                nn.Linear(width, fore.shape[0], bias=False),
            )
            self.register_buffer("back", torch.tensor(back))
            self.register_buffer("fore", torch.tensor(fore))

        def forward(self, x):
            h = self.fc(x)
            return self.tb(h) @ self.back, self.tf(h) @ self.fore

    class NBeats(nn.Module):
        def __init__(self, L, H, width, degree, tcol):
            super().__init__()
            harm = max(1, H // 2)
            self.trend = NBeatsBlock(
                L, H, width, nbeats.trend_basis(degree, L), nbeats.trend_basis(degree, H)
            )
            self.season = NBeatsBlock(
                L, H, width, nbeats.seasonality_basis(harm, L), nbeats.seasonality_basis(harm, H)
            )
            self.tcol = tcol

        def forward(self, x):
            level = x[:, -1:, self.tcol]
            r = x[:, :, self.tcol] - level
            f = 0
            for block in [self.trend] * 3 + [self.season] * 3:
                b, fc = block(r)
                r, f = r - b, f + fc
            return (f + level)[:, :, None]

    return LSTM, TCN, NBeats


def torch_fit(torch, model, splits: WindowSplits, epochs: int, batch: int, lr: float, seed: int):
    torch.manual_seed(seed)
    (xtr, ytr), (xva, yva) = splits.train, splits.val
    xtr_t, ytr_t, xva_t = torch.tensor(xtr), torch.tensor(ytr), torch.tensor(xva)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.tensor(rng.permutation(len(xtr)))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss = torch.mean((model(xtr_t[idx]) - ytr_t[idx]) ** 2)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        model.eval()
        with torch.no_grad():
            _ = sum(
                float(torch.mean((model(xva_t[i : i + batch]) - torch.tensor(yva[i : i + batch])) ** 2))
                for i in range(0, len(xva), batch)
            )
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [model(torch.tensor(splits.test[0][i : i + 1024])) for i in range(0, len(splits.test[0]), 1024)]
        ).numpy()
    return pred, seconds


def scores(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float(np.mean((pred - y) ** 2)), float(np.mean(np.abs(pred - y)))


def bench_dataset(
    torch, name: str, splits: WindowSplits, season: int, epochs: int, quick: bool, repeats: int = 1
):
    LSTM, TCN, NBeats = torch_models(torch)
    x_test, y_test = splits.test
    c, L, H, tcols = x_test.shape[2], splits.input_size, splits.horizon, list(splits.target_columns)
    rows: list[list[object]] = []
    raw_x = splits.scaler.inverse_transform(x_test)
    for base_name, pred_raw in (
        ("last value", baselines.last_value(raw_x, H, tcols)),
        ("seasonal naive", baselines.seasonal_naive(raw_x, H, tcols, season)),
    ):
        pred = splits.scaler.transform(pred_raw, tcols)
        rows.append([name, base_name, *scores(pred, y_test), "", "", "", "", ""])
    sizes = {"hidden_size": 64, "channels": 32, "width": 128 if quick else 256}
    for model in ("lstm", "tcn", "nbeats"):
        cfg = preset("small", model, epochs=epochs, patience=0, lr=1e-3, batch_size=64, **sizes)
        ours_s: list[float] = []
        torch_s: list[float] = []
        for _ in range(repeats):  # alternating, so load drift hits both alike; medians
            f = Forecaster.fit(splits, cfg, season=season)
            ours_s.append(f.train_seconds)
            torch.manual_seed(cfg.seed)
            if model == "lstm":
                tm = LSTM(c, cfg.hidden_size, H, tcols)
            elif model == "tcn":
                tm = TCN(c, cfg.channels, cfg.kernel_size, cfg.dilations, H, tcols)
            else:
                tm = NBeats(L, H, cfg.width, cfg.degree, tcols[0])
            tpred, tsec = torch_fit(torch, tm, splits, epochs, cfg.batch_size, cfg.lr, cfg.seed)
            torch_s.append(tsec)
        ours = scores(f.predict_scaled(x_test), y_test)
        theirs = scores(tpred, y_test)
        sec, tsec = statistics.median(ours_s), statistics.median(torch_s)
        rows.append([name, model, *ours, *theirs, sec, tsec, tsec / sec])
        print(
            f"  {name} {model}: seqlab {sec:.2f}s mse {ours[0]:.4f}, torch {tsec:.2f}s mse {theirs[0]:.4f} "
            f"(medians of {repeats})",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few epochs, ETTh1 on a quarter of its windows")
    parser.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: all)")
    parser.add_argument("--repeats", type=int, default=15, help="repetitions of each convolution timing")
    parser.add_argument(
        "--train-repeats", type=int, default=1, help="trainings of each model per library (median time)"
    )
    parser.add_argument(
        "--interleaved", action="store_true", help="alternate the convolution calls instead of timing blocks"
    )
    parser.add_argument("--skip-training", action="store_true", help="only the convolution kernel")
    args = parser.parse_args()
    import torch

    threads = args.threads or seqlab.get_num_threads()
    seqlab.set_num_threads(threads)
    torch.set_num_threads(threads)
    print(f"# Forecasting benchmark\n\n{machine_description()}, {threads} threads\n")

    conv = bench_conv(torch, threads, args.repeats, args.interleaved)
    print("## Causal Conv1d forward + backward\n")
    print(
        markdown_table(
            ["shape", "threads", "seqlab ms", "torch ms", "seqlab GFLOP/s", "torch / seqlab"], conv
        )
    )

    if args.skip_training:
        return
    rows: list[list[object]] = []
    co2 = load_series("co2")
    co2_splits = make_splits(co2, 104, 26, "co2", (0.7, 0.1, 0.2))
    print("\ntraining...", flush=True)
    reps = args.train_repeats
    rows += bench_dataset(torch, "co2", co2_splits, 52, 4 if args.quick else 8, args.quick, reps)
    etth1 = DATA / "ETTh1.csv"
    if etth1.is_file():
        series = load_series(etth1)
        month = 30 * 24
        sp = make_splits(series, 96, 24, "OT", (12 * month, 4 * month, 4 * month))
        if args.quick:  # the time ratio on one epoch of a quarter of the training windows
            sp.train = (sp.train[0][-2048:], sp.train[1][-2048:])
        rows += bench_dataset(torch, "ETTh1", sp, 24, 1 if args.quick else 2, args.quick, reps)
    else:
        print(f"(ETTh1 skipped: {etth1} not found)")
    print("\n## Accuracy (test MSE / MAE in training-std units) and training time\n")
    print(
        markdown_table(
            [
                "data",
                "model",
                "seqlab MSE",
                "seqlab MAE",
                "torch MSE",
                "torch MAE",
                "seqlab s",
                "torch s",
                "torch / seqlab",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
