"""The poetry autoencoder recipe: ``seqlab.poetry_autoencoder("poems.json")``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from ..autograd import Tensor, tensor
from ..data.batching import PaddedBatch, SequenceBatches
from ..data.poems import PoemCorpus, load_poems
from ..data.text import tokenize
from ..data.vocabulary import Vocabulary
from ..losses import cosine_mse_loss
from ..models.poetry.config import AutoencoderConfig, preset
from ..models.poetry.dataset import PoetryData, prepare
from ..models.poetry.evaluate import evaluate_chunks, run_batches
from ..models.poetry.model import SequenceAutoencoder
from ..optim import AdamW
from ..serialization import load_weights, read_toml, save_weights, write_json, write_toml
from ..train import Curriculum, EarlyStopping, Trainer, WarmupSchedule
from .loading import check_saved_sizes
from .run_dir import new_run_dir

KIND = "poetry_autoencoder"


def loss_weights(config: AutoencoderConfig) -> tuple[float, float]:
    """(cosine weight, MSE weight) of the configured loss."""
    return {"cosine": (1.0, 0.0), "mse": (0.0, 1.0)}.get(
        config.loss, (config.cosine_weight, config.mse_weight)
    )


class PoetryAutoencoder:
    """A fitted poetry autoencoder: the model with its vocabulary and word vectors.

    Attributes:
        model: the :class:`~seqlab.models.SequenceAutoencoder`.
        config: its :class:`~seqlab.models.poetry.AutoencoderConfig`.
        vocab, embedding: the vocabulary and its ``(V, E)`` word vectors.
        data: the prepared corpus it was trained on (None after :func:`seqlab.load`).
        history: the per-epoch training history.
        evaluation: the last evaluation (see :meth:`evaluate`).
        run_dir: the run directory (weights, config, metrics, report, plots).
    """

    def __init__(
        self,
        model: SequenceAutoencoder,
        config: AutoencoderConfig,
        vocab: Vocabulary,
        embedding: np.ndarray,
        data: PoetryData | None = None,
        history: list[dict[str, Any]] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.vocab = vocab
        self.embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        self.data = data
        self.history = history or []
        self.evaluation: dict[str, Any] = {}
        self.run_dir = run_dir

    def __repr__(self) -> str:
        c = self.config
        return (
            f"PoetryAutoencoder({c.cell}, hidden={c.hidden_size}, bottleneck={c.bottleneck}, "
            f"attention={c.attention}, vocab={len(self.vocab)}, run_dir={self.run_dir})"
        )

    # ------------------------------------------------------------------ use
    def _chunks_of(self, texts: str | Sequence[str]) -> list[np.ndarray]:
        if isinstance(texts, str):
            texts = [texts]
        chunks = []
        for i, text in enumerate(texts):
            tokens = tokenize(text)[: self.config.max_len]
            if not tokens:
                raise ValueError(f"texts[{i}] has no words to encode: {text!r:.60}")
            chunks.append(self.vocab.encode(tokens))
        return chunks

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """Bottleneck codes ``(N, bottleneck)`` of texts (each cut to ``max_len`` tokens)."""
        _, codes, _ = run_batches(self.model, self.embedding, self._chunks_of(texts))
        return np.stack(codes)

    def reconstruct(self, texts: str | Sequence[str], use_attention: bool = True) -> list[str]:
        """Each text decoded from its code: the nearest vocabulary word of every
        reconstructed vector, joined by spaces (free-running decoding)."""
        chunks = self._chunks_of(texts)
        preds, _, _ = run_batches(self.model, self.embedding, chunks, use_attention=use_attention)
        flat = np.concatenate(preds)
        _, nearest = metrics.topk(flat, self.embedding[1:], k=1, metric="cosine")
        words = self.vocab.decode(nearest[:, 0] + 1)
        out, start = [], 0
        for p in preds:
            out.append(" ".join(words[start : start + len(p)]))
            start += len(p)
        return out

    def evaluate(self, data: str | Path | PoemCorpus | None = None, split: str = "test") -> dict[str, Any]:
        """Reconstruction quality with and without attention.

        Args:
            data: None evaluates the held-out ``split`` of the training corpus (by poem);
                a path or corpus evaluates all of its poems.

        Returns ``{"with_attention": {...}, "bottleneck_only": {...}}`` for an attention
        model (the second runs the decoder with all-zero encoder states, so only the
        bottleneck carries information), or ``{"bottleneck_only": {...}}`` without
        attention; each holds token/sequence cosine, MSE, RMSE, word recovery top-1/5 and
        bottleneck utilisation (see :func:`~seqlab.models.poetry.evaluate.evaluate_chunks`).
        """
        if data is None:
            if self.data is None:
                raise ValueError("evaluate(): this model has no training corpus attached; pass data=...")
            chunks = self.data.chunks[split]
            if not chunks:
                raise ValueError(f"evaluate(): the '{split}' split has no chunks (raise {split}_fraction)")
        else:
            corpus = data if isinstance(data, PoemCorpus) else load_poems(data)
            config = self.config.with_overrides(val_fraction=0.0, test_fraction=0.0)
            chunks = prepare(corpus, config, vocab=self.vocab, embedding=self.embedding).chunks["train"]
        result: dict[str, Any] = {}
        if self.config.attention:
            result["with_attention"] = evaluate_chunks(self.model, self.embedding, chunks, use_attention=True)
        result["bottleneck_only"] = evaluate_chunks(self.model, self.embedding, chunks, use_attention=False)
        self.evaluation = result
        return result

    # -------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Writes ``model.safetensors``, ``model_config.toml`` and ``vocabulary.json`` into a directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        weights["embedding"] = self.embedding
        save_weights(path / "model.safetensors", weights)
        write_toml(
            path / "model_config.toml",
            {"kind": KIND, "embedding_dim": int(self.embedding.shape[1]), "config": self.config.to_dict()},
        )
        write_json(path / "vocabulary.json", self.vocab.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> PoetryAutoencoder:
        """Restores a model written by :meth:`save`."""
        path = Path(path)
        meta = read_toml(path / "model_config.toml")
        config = AutoencoderConfig.from_dict(meta["config"])
        vocab = Vocabulary.from_dict(json.loads((path / "vocabulary.json").read_text()))
        weights = load_weights(path / "model.safetensors")
        sizes = {"embedding_dim": meta["embedding_dim"], "hidden_size": config.hidden_size,
                 "num_layers": config.num_layers, "bottleneck": config.bottleneck,
                 "decoder_hidden": config.decoder_hidden}
        if config.attention:
            sizes["num_heads"] = config.num_heads
        check_saved_sizes(path / "model_config.toml", sizes, weights)
        embedding = weights.pop("embedding")
        if embedding.shape[0] != len(vocab):
            raise ValueError(f"{path / 'vocabulary.json'}: {len(vocab)} tokens for {embedding.shape[0]} "
                             "embedding rows in model.safetensors")
        model = SequenceAutoencoder(config, int(meta["embedding_dim"]))
        model.load_state_dict({k.removeprefix("model."): v for k, v in weights.items()})
        model.eval()
        return cls(model, config, vocab, embedding, run_dir=path)


def _step(model: SequenceAutoencoder, embedding: np.ndarray, config: AutoencoderConfig):
    cos_w, mse_w = loss_weights(config)

    def step(m: SequenceAutoencoder, batch: PaddedBatch) -> Tensor:
        x = tensor(embedding[batch.inputs])
        pred, _ = m(x, batch.lengths)
        return cosine_mse_loss(
            pred, x, batch.lengths, cosine_weight=cos_w, mse_weight=mse_w, temperature=config.temperature
        )

    return step


def _write_latent_plots(run_dir: Path, codes: np.ndarray, authors: Sequence[str], seed: int) -> list[str]:
    from ..report.latent_plots import plot_latents

    written = [plot_latents(codes, authors, run_dir / "latent_pca.png", method="pca").name]
    try:
        written.append(
            plot_latents(codes, authors, run_dir / "latent_tsne.png", method="tsne", seed=seed).name
        )
    except ImportError as e:
        print(f"note: {e}; latent_tsne.png not written")
    return written


def fit_poetry_autoencoder(
    data: str | Path | PoemCorpus | None = None,
    config: AutoencoderConfig | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> PoetryAutoencoder:
    """Prepares the corpus, trains, evaluates and reports; see :func:`seqlab.poetry_autoencoder`."""
    config = config or preset("small")
    if resume is not None:
        run_dir = Path(resume)
        saved = (
            read_toml(run_dir / "config.toml").get("config") if (run_dir / "config.toml").exists() else None
        )
        if saved:
            config = AutoencoderConfig.from_dict(saved)
    else:
        run_dir = new_run_dir(out, KIND)
    start = time.perf_counter()
    prepared = prepare(data, config, verbose=verbose)
    from ..random import manual_seed

    manual_seed(config.seed)
    model = SequenceAutoencoder(config, prepared.embedding.shape[1])
    optimizer = AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = SequenceBatches(prepared.chunks["train"], batch_size=config.batch_size, max_len=config.max_len)
    val = None
    if prepared.chunks["val"]:
        val = SequenceBatches(prepared.chunks["val"], batch_size=config.batch_size, shuffle=False)
    callbacks: list[Any] = [Curriculum(config.curriculum_phases())]
    if config.lr_schedule == "cosine":
        total = config.epochs * train.num_batches()
        callbacks.append(
            WarmupSchedule(round(config.warmup * total), total, "cosine", config.lr * config.min_lr_ratio)
        )
    if val is not None:
        callbacks.append(EarlyStopping("val_loss", patience=config.patience))
    trainer = Trainer(
        model,
        None,
        optimizer,
        train,
        val,
        epochs=config.epochs,
        batch_size=config.batch_size,
        clip_grad_norm=config.clip_grad_norm,
        seed=config.seed,
        out_dir=run_dir,
        resume=resume is not None,
        callbacks=callbacks,
        progress=progress,
        step_fn=_step(model, prepared.embedding, config),
        config={"kind": KIND, **config.to_dict()},
        verbose=verbose,
    )
    history = trainer.fit()
    fitted = PoetryAutoencoder(model, config, prepared.vocab, prepared.embedding, prepared, history, run_dir)
    evaluation = fitted.evaluate() if prepared.chunks["test"] else {}
    split = "test" if prepared.chunks["test"] else "train"
    _, codes, _ = run_batches(model, prepared.embedding, prepared.chunks[split])
    authors = [prepared.corpus[i].author or "unknown" for i in prepared.chunk_poems[split]]
    plots = _write_latent_plots(run_dir, np.stack(codes), authors, config.seed)
    fitted.save(run_dir)
    write_json(
        run_dir / "evaluation.json",
        {
            "split": split,
            "results": evaluation,
            "data": {
                "path": str(prepared.corpus.path),
                "poems": len(prepared.corpus),
                "skipped_records": len(prepared.corpus.skipped),
                "splits": {s: len(v) for s, v in prepared.poem_ids.items()},
                "chunks": {s: len(v) for s, v in prepared.chunks.items()},
                "tokens_kept_share": prepared.chunk_report.kept_share,
                "vocabulary": len(prepared.vocab),
                "embedding_dim": int(prepared.embedding.shape[1]),
                "embeddings": prepared.vectors.source,
                "embedding_coverage": list(prepared.coverage),
            },
            "plots": plots,
            "seconds": time.perf_counter() - start,
        },
    )
    _append_evaluation_to_report(run_dir, evaluation, config)
    if verbose:
        for name, res in evaluation.items():
            print(
                f"{name}: token cosine {res['token_cosine']:.3f}, "
                f"sequence cosine {res['sequence_cosine']:.3f}, "
                f"word recovery top-1 {res['word_top1']:.3f} / top-5 {res['word_top5']:.3f}, "
                f"bottleneck {res['bottleneck_active_dims']}/{res['bottleneck_dims']} dims active"
            )
        print(f"report: {run_dir / 'training_report.md'}")
    return fitted


def _append_evaluation_to_report(
    run_dir: Path, evaluation: dict[str, Any], config: AutoencoderConfig
) -> None:
    report = run_dir / "training_report.md"
    if not report.exists() or not evaluation:
        return
    lines = ["", "## Evaluation (held-out poems, free-running decoding)", ""]
    if config.attention:
        lines.append(
            "Attention lets information bypass the bottleneck: the `bottleneck_only` row runs the "
            "decoder with all-zero encoder states, so it alone measures what the "
            f"{config.bottleneck}-d code carries."
        )
    else:
        lines.append(f"Without attention every number measures the {config.bottleneck}-d bottleneck.")
    keys = [
        "token_cosine",
        "sequence_cosine",
        "mse",
        "rmse",
        "word_top1",
        "word_top5",
        "bottleneck_active_dims",
        "bottleneck_participation_ratio",
    ]
    lines += ["", "| decoding | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, res in evaluation.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{res[k]:.4g}" if isinstance(res[k], float) else str(res[k]) for k in keys)
            + " |"
        )
    lines += [
        "",
        "Latent codes: ![PCA](latent_pca.png) ![t-SNE](latent_tsne.png)",
        "",
        "Files: [evaluation.json](evaluation.json), [model_config.toml](model_config.toml), "
        "[vocabulary.json](vocabulary.json)",
        "",
    ]
    from ..serialization import atomic_write_text

    atomic_write_text(report, report.read_text() + "\n".join(lines))


def poetry_autoencoder(
    data: str | Path | PoemCorpus | None = None,
    preset_name: str = "small",
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    **overrides: Any,
) -> PoetryAutoencoder:
    """Trains, evaluates and reports a poetry autoencoder in one line.

    Args:
        data: a file of poems (PoetryDB JSON, JSON lists, JSON Lines, plain text, fortune
            files; see :func:`seqlab.data.load_poems`), or None for the default corpus
            (Debian's ``fortunes`` songs-poems).
        preset_name: ``"tiny"``, ``"small"``, ``"medium"``, ``"large"``, ``"xlarge"``, ``"research"``.
        out: run directory (default ``runs/poetry_autoencoder-<time>``); an existing run is
            never overwritten.
        resume: a run directory to continue from its last checkpoint.
        **overrides: any :class:`AutoencoderConfig` field, e.g. ``cell="gru"``, ``attention=True``,
            ``epochs=30``, ``embeddings="glove.6B.300d.txt"``.

    Returns:
        The fitted :class:`PoetryAutoencoder` (``.encode``, ``.reconstruct``, ``.evaluate``,
        ``.save``; ``.run_dir`` holds weights, config, metrics, report and latent plots).
    """
    return fit_poetry_autoencoder(
        data, preset(preset_name, **overrides), out=out, resume=resume, progress=progress, verbose=verbose
    )
