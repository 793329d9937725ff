"""Poetry autoencoder training step: seqlab's recipe against the same whole model in PyTorch.

A step is the recipe's: word-vector lookup of a batch of real poem chunks
(``../shared/data/poems.json``, batched by ``SequenceBatches`` as the recipe does), the
encoder (RNN/LSTM/GRU over the padded batch with its lengths; PyTorch: packed
sequences), the ``tanh(Linear)`` bottleneck and back, the teacher-forced decoder (ratio
``--ratio`` per row and step; the code fed to every step; with or without 8-head
attention over the encoder states, half the rows without them: memory dropout), the
masked hybrid loss (0.9 cosine + 0.1 MSE), backward, gradient clipping to norm 1 and an
Adam(W) step. The PyTorch twin (``torch_twins.TorchAutoencoder``) has the
same weights; its decoder is a loop over timesteps with ``GRUCell``/``LSTMCell``/
``RNNCell`` and, with attention, keys and values projected once per sequence (the
hand-optimised loop; ``nn.MultiheadAttention`` per step is 4-8x slower, see
bench_decoder.py). Before timing, both compute the loss and gradients of one batch
with the same teacher-forcing mask and the script checks they agree.

Each library is timed in its own block (a pass over ``--batches`` batches, repeated),
blocks alternating over ``--rounds``; medians of the passes. "seqlab trainer" is the
same step through ``Trainer._optimizer_step`` (with its default gradient monitor and
NaN guard), what ``seqlab.poetry_autoencoder`` runs.

    python benchmarks/bench_poetry_step.py                          # small preset, 300-d vectors
    python benchmarks/bench_poetry_step.py --threads 1 2 --dim 50 --markdown
    python benchmarks/bench_poetry_step.py --cells gru --profile    # cProfile of seqlab's step
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from pathlib import Path

import numpy as np

import seqlab
from harness import block_medians, machine_description, markdown_table
from seqlab.data.batching import SequenceBatches
from seqlab.models.poetry import SequenceAutoencoder, preset
from seqlab.models.poetry.dataset import prepare
from seqlab.models.poetry.loss import loss_weights
from seqlab.recipes.poetry import _step
from seqlab.train import Trainer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_batches(config, dim: int, count: int, seed: int = 0):
    """``count`` training batches of the poems corpus and the (V, dim) word vectors.

    ``dim`` 50: the real GloVe vectors; otherwise random unit vectors of that size for the
    same vocabulary (the preset's 300-d word2vec shape; step time does not depend on values).
    """
    glove = DATA / "glove.6B.50d.subset.txt"
    data = prepare(str(DATA / "poems.json"), config.with_overrides(embeddings=str(glove)))
    embedding = data.embedding
    if dim != embedding.shape[1]:
        rng = np.random.default_rng(seed)
        embedding = rng.standard_normal((len(embedding), dim)).astype(np.float32)
        embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
        embedding[0] = 0.0
    source = SequenceBatches(data.chunks["train"], batch_size=config.batch_size, max_len=config.max_len)
    batches = []
    for b in source.batches(np.random.default_rng(seed)):
        batches.append(b)
        if len(batches) == count:
            break
    return batches, np.ascontiguousarray(embedding)


def seqlab_runner(model, embedding, config, batches, ratio: float, trainer: bool = False):
    params = list(model.parameters())
    opt = seqlab.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step_fn = _step(model, embedding, config)
    model.train()
    model.teacher_forcing_ratio = ratio
    if trainer:
        data = SequenceBatches([b.inputs[0] for b in batches])
        t = Trainer(model, None, opt, data, epochs=1, clip_grad_norm=config.clip_grad_norm,
                    step_fn=step_fn, verbose=False, progress=False)

        def one(batch) -> float:
            return t._optimizer_step([batch])
    else:

        def one(batch) -> float:
            opt.zero_grad()
            loss = step_fn(model, batch)
            loss.backward()
            seqlab.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
            opt.step()
            return loss.item()

    return lambda: [one(b) for b in batches]


def torch_runner(torch, twin, embedding, config, batches, ratio: float):
    from torch_twins import hybrid_loss

    params = list(twin.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    emb = torch.from_numpy(embedding)
    cos_w, mse_w = loss_weights(config)
    prepared = []
    for b in batches:
        lengths = torch.from_numpy(b.lengths)
        mask = torch.arange(b.inputs.shape[1])[None, :] < lengths[:, None]
        prepared.append((torch.from_numpy(b.inputs), lengths, mask))
    twin.train()

    def one(ids, lengths, mask) -> float:
        opt.zero_grad(set_to_none=True)
        x = torch.nn.functional.embedding(ids, emb)
        tf = torch.rand(ids.shape) < ratio
        loss = hybrid_loss(twin(x, lengths, tf), x, mask, cos_w, mse_w, config.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
        opt.step()
        return loss.item()

    return lambda: [one(*p) for p in prepared]


def check_twin(torch, model, twin, embedding, config, batch, ratio: float) -> tuple[float, float]:
    """(relative loss difference, relative gradient difference of the encoder's input
    weights) of one batch through both models with the same teacher-forcing mask."""
    from torch_twins import hybrid_loss

    cos_w, mse_w = loss_weights(config)
    mask_tf = np.random.default_rng(1).random(batch.inputs.shape) < ratio
    model.eval()  # no memory dropout (its draws differ); the teacher-forcing mask is explicit
    twin.eval()
    model.zero_grad()
    x = seqlab.tensor(embedding[batch.inputs])
    pred, _ = model(x, batch.lengths, teacher_forcing=mask_tf)
    loss = seqlab.losses.cosine_mse_loss(pred, x, batch.lengths, cos_w, mse_w, config.temperature)
    loss.backward()
    twin.zero_grad(set_to_none=True)
    xt = torch.from_numpy(embedding[batch.inputs])
    lengths = torch.from_numpy(batch.lengths)
    mask = torch.arange(xt.shape[1])[None, :] < lengths[:, None]
    tloss = hybrid_loss(twin(xt, lengths, torch.from_numpy(mask_tf)), xt, mask, cos_w, mse_w,
                        config.temperature)
    tloss.backward()
    model.train()
    twin.train()
    g = model.encoder.weight_ih_l0.grad
    tg = twin.encoder.weight_ih_l0.grad.numpy()
    return (abs(loss.item() - tloss.item()) / abs(tloss.item()),
            float(np.abs(g - tg).max() / max(np.abs(tg).max(), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], choices=["rnn", "lstm", "gru"])
    parser.add_argument("--attention", nargs="+", default=["no", "yes"], choices=["no", "yes"])
    parser.add_argument("--dim", type=int, default=300, help="word-vector size (50: the real GloVe vectors)")
    parser.add_argument("--max-len", type=int, default=None, help="default: the preset's")
    parser.add_argument("--ratio", type=float, default=0.5, help="teacher-forcing ratio")
    parser.add_argument("--batches", type=int, default=8, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile seqlab's step instead")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args()
    if not (DATA / "poems.json").is_file():
        raise SystemExit(f"needs {DATA / 'poems.json'} and the GloVe subset (the shared real-data folder)")

    import torch

    from torch_twins import torch_autoencoder

    overrides = {} if args.max_len is None else {"max_len": args.max_len}
    # the PyTorch twin is the recurrent autoencoder with the cosine + MSE loss: the presets'
    # linear path and word softmax loss are off here, so both sides do the same work
    base = preset(args.preset, linear_path=False, vocab_loss_weight=0.0, **overrides)
    batches, embedding = real_batches(base, args.dim, args.batches)
    tokens = sum(int(b.lengths.sum()) for b in batches)
    shape = f"B={base.batch_size} T<={base.max_len} E={embedding.shape[1]} H={base.hidden_size}"
    print(machine_description())
    print(f"preset {args.preset}: {shape}, bottleneck {base.bottleneck}, {len(batches)} real batches "
          f"({tokens} tokens), teacher forcing {args.ratio}")
    print(f"{'cell':4} {'attn':4} {'thr':>3} | {'seqlab ms':>9} {'trainer ms':>10} {'torch ms':>9} | "
          f"{'ratio':>5} {'trainer ratio':>13} | {'seqlab tok/s':>12} {'torch tok/s':>11} | check")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        seqlab.set_num_threads(threads)
        for cell in args.cells:
            for attention in args.attention:
                config = base.with_overrides(cell=cell, attention=attention == "yes")
                seqlab.manual_seed(0)
                model = SequenceAutoencoder(config, embedding.shape[1])
                twin = torch_autoencoder(model)
                loss_diff, grad_diff = check_twin(torch, model, twin, embedding, config, batches[0],
                                                  args.ratio)
                if args.profile:
                    run = seqlab_runner(model, embedding, config, batches, args.ratio, trainer=True)
                    run()
                    prof = cProfile.Profile()
                    prof.enable()
                    for _ in range(args.repeats):
                        run()
                    prof.disable()
                    print(f"--- {cell} attention={attention} threads={threads}")
                    pstats.Stats(prof).sort_stats("tottime").print_stats(18)
                    continue
                runs = [seqlab_runner(model, embedding, config, batches, args.ratio),
                        seqlab_runner(model, embedding, config, batches, args.ratio, trainer=True),
                        torch_runner(torch, twin, embedding, config, batches, args.ratio)]
                ts, tr, tt = (t / len(batches) for t in block_medians(runs, args.repeats, args.rounds))
                per_step = tokens / len(batches)
                rows.append((cell, attention, threads, ts * 1e3, tr * 1e3, tt * 1e3, tt / ts, tt / tr,
                             per_step / ts, per_step / tt))
                print(f"{cell:4} {attention:4} {threads:>3} | {ts * 1e3:9.2f} {tr * 1e3:10.2f} "
                      f"{tt * 1e3:9.2f} | {tt / ts:5.2f} {tt / tr:13.2f} | {per_step / ts:12.0f} "
                      f"{per_step / tt:11.0f} | loss {loss_diff:.1e} grad {grad_diff:.1e}", flush=True)
    if args.markdown and rows:
        print()
        print(markdown_table(["cell", "attention", "threads", "seqlab ms", "seqlab Trainer ms", "torch ms",
                              "torch/seqlab", "torch/Trainer", "seqlab tokens/s", "torch tokens/s"], rows))


if __name__ == "__main__":
    main()
