"""Latency of one next-vector prediction: seqlab's predictor against the same GRU in PyTorch.

The model of the recipe with 768-d inputs and a 256-unit GRU: cold prediction reads a
whole context of 100 or 500 vectors; streaming adds one vector to a kept state. Both
libraries run the same weights through their public API, inputs normalised, prediction
``normalize(last + head(h))``; each library is timed in its own block (PyTorch's
OpenMP threads spin after a call and slow whatever runs next), medians of many calls.

The compute floor is the prediction's FLOPs over the GEMM speed measured here at the
same shapes: the input projection as one (T x 768) x (768 x 768) product, each
recurrent step as a (1 x 256) x (256 x 768) product, the head once.

    python benchmarks/bench_vectors.py --threads 1 2 --markdown
"""

from __future__ import annotations

import argparse

import numpy as np

import seqlab
from harness import machine_description, markdown_table, median_seconds
from seqlab.models.vectors.config import VectorPredictorConfig
from seqlab.models.vectors.model import NextVectorModel
from seqlab.recipes.vectors import VectorPredictor

D, H = 768, 256


def _seqlab_predictor(context: int) -> VectorPredictor:
    seqlab.manual_seed(0)
    config = VectorPredictorConfig(context=context, hidden_size=H)
    return VectorPredictor(NextVectorModel(config, D), config)


def _torch_twin(torch, predictor: VectorPredictor):
    gru = torch.nn.GRU(D, H, batch_first=True)
    head = torch.nn.Linear(H, D)
    state = predictor.model.state_dict()
    with torch.no_grad():
        for name, p in gru.named_parameters():
            p.copy_(torch.from_numpy(state[f"rnn.{name}"]))
        head.weight.copy_(torch.from_numpy(state["head.weight"]))
        head.bias.copy_(torch.from_numpy(state["head.bias"]))
    F = torch.nn.functional

    @torch.inference_mode()
    def cold(window):
        x = F.normalize(torch.from_numpy(window), dim=1)
        _, h = gru(x[None])
        return F.normalize(x[-1] + head(h[0, 0]), dim=0).numpy()

    @torch.inference_mode()
    def step(vector, h):
        x = F.normalize(torch.from_numpy(vector), dim=0)
        out, h = gru(x[None, None], h)
        return F.normalize(x + head(out[0, 0]), dim=0).numpy(), h

    return cold, step


def _gemm_floor(context: int, repeats: int) -> tuple[float, float]:
    """(floor seconds, FLOPs) of a cold prediction from GEMMs timed at its shapes."""
    w_in = seqlab.tensor(np.random.default_rng(0).standard_normal((3 * H, D)).astype(np.float32))
    w_hh = seqlab.tensor(np.random.default_rng(1).standard_normal((3 * H, H)).astype(np.float32))
    x = seqlab.tensor(np.ones((context, D), np.float32))
    h = seqlab.tensor(np.ones((1, H), np.float32))
    t_in = median_seconds(lambda: seqlab.functional.linear(x, w_in), repeats)
    t_hh = median_seconds(lambda: seqlab.functional.linear(h, w_hh), repeats, min_seconds=0.2)
    flops = 2.0 * context * 3 * H * D + 2.0 * context * 3 * H * H + 2.0 * H * D
    return t_in + context * t_hh + t_hh * D / (3 * H), flops


def _measure(torch, threads: int, context: int, repeats: int) -> list[list[object]]:
    rng = np.random.default_rng(context)
    predictor = _seqlab_predictor(context)
    torch_cold, torch_step = _torch_twin(torch, predictor)
    window = rng.standard_normal((context, D)).astype(np.float32)
    vector = rng.standard_normal(D).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_next(window), torch_cold(window), atol=2e-4)

    stream = predictor.stream()
    for v in window:
        stream.step(v)
    s_cold = median_seconds(lambda: predictor.predict_next(window), repeats)
    s_step = median_seconds(lambda: stream.step(vector), repeats, min_seconds=0.3)

    state = {"h": None}
    for v in window:
        _, state["h"] = torch_step(v, state["h"])

    def torch_stream_step() -> None:
        _, state["h"] = torch_step(vector, state["h"])

    t_cold = median_seconds(lambda: torch_cold(window), repeats)
    t_step = median_seconds(torch_stream_step, repeats, min_seconds=0.3)
    floor, flops = _gemm_floor(context, repeats)
    step_flops = 2.0 * 3 * H * (D + H) + 2.0 * H * D
    return [
        [threads, context, "cold", s_cold * 1e3, t_cold * 1e3, t_cold / s_cold, floor * 1e3,
         floor / s_cold, flops / s_cold / 1e9],
        [threads, context, "streaming", s_step * 1e3, t_step * 1e3, t_step / s_step, "", "",
         step_flops / s_step / 1e9],
    ]


def run(threads: int, contexts: list[int], repeats: int) -> list[list[object]]:
    import torch

    seqlab.set_num_threads(threads)
    torch.set_num_threads(threads)
    return [row for context in contexts for row in _measure(torch, threads, context, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--contexts", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        rows += run(threads, args.contexts, args.repeats)
    header = ["threads", "context", "mode", "seqlab ms", "torch ms", "torch / seqlab", "floor ms",
              "floor / seqlab", "seqlab GFLOP/s"]
    print(machine_description())
    if args.markdown:
        print(markdown_table(header, rows))
    else:
        for r in rows:
            print("  ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r))


if __name__ == "__main__":
    main()
