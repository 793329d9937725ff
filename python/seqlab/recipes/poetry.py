"""The poetry autoencoder recipe: ``seqlab.poetry_autoencoder("poems.json")``."""

from __future__ import annotations

import json
import time
import warnings
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
from ..models.poetry.baselines import LinearAutoencoder, evaluate_baselines, shortfalls
from ..models.poetry.config import AutoencoderConfig
from ..models.poetry.config import preset as make_preset
from ..models.poetry.dataset import PoetryData, Uncentring, prepare
from ..models.poetry.evaluate import evaluate_chunks, run_batches
from ..models.poetry.loss import reconstruction_loss
from ..models.poetry.model import SequenceAutoencoder
from ..optim import AdamW
from ..report.evaluation import EvaluationSummary, append_to_report, recipe_html
from ..serialization import write_json
from ..train import Curriculum, EarlyStopping, Trainer, WarmupSchedule
from .loading import read_model_files, save_model_files, saved_evaluation
from .run_dir import claim_run_dir, interruptible, read_run, resume_data, resumed_config

KIND = "poetry_autoencoder"


class PoetryAutoencoder:
    """A fitted poetry autoencoder: the model with its vocabulary and word vectors.

    Attributes:
        model: the :class:`~seqlab.models.SequenceAutoencoder`.
        config: its :class:`~seqlab.models.poetry.AutoencoderConfig`.
        vocab, embedding: the vocabulary and its ``(V, E)`` word vectors.
        data: the prepared corpus it was trained on (None after :func:`seqlab.load`).
        uncentring: maps the centred word vectors back to the original ones (None when
            they were not centred).
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
        uncentring: Uncentring | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.vocab = vocab
        self.embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        self.data = data
        self.history = history or []
        self.evaluation: dict[str, Any] = {}
        self.summary: EvaluationSummary | None = None
        self.run_dir = run_dir
        self.uncentring = uncentring if uncentring is not None else (data.uncentring if data else None)

    def _repr_html_(self) -> str:
        return recipe_html(repr(self), self.summary, self.run_dir)

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
        attention; each holds token/sequence cosine, the token cosine on the uncentred
        vectors, MSE, RMSE, word recovery top-1/5 and bottleneck utilisation (see
        :func:`~seqlab.models.poetry.evaluate.evaluate_chunks`). :meth:`baselines` scores
        the trivial and linear reconstructions on the same chunks.
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
        for name, attend in (("with_attention", True), ("bottleneck_only", False)):
            if attend and not self.config.attention:
                continue
            result[name] = evaluate_chunks(
                self.model, self.embedding, chunks, use_attention=attend, uncentring=self.uncentring
            )
        self.evaluation = result
        return result

    def baselines(self, split: str = "test") -> dict[str, dict[str, Any]]:
        """The baselines of :mod:`seqlab.models.poetry.baselines` fitted on the training
        chunks and scored on the ``split`` chunks the model is evaluated on: the most
        frequent token, the mean vector, and a linear autoencoder (PCA) with the model's
        bottleneck size. Needs the training corpus attached (not after :func:`seqlab.load`)."""
        if self.data is None:
            raise ValueError("baselines(): this model has no training corpus attached")
        return evaluate_baselines(
            self.data.chunks["train"],
            self.data.chunks[split],
            self.embedding,
            self.config.bottleneck,
            self.config.max_len,
            self.uncentring,
            centred=self.config.center_embeddings,
            seed=self.config.seed,
        )

    # -------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Writes ``model.safetensors``, ``model_config.toml`` and ``vocabulary.json`` into a directory."""
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        weights["embedding"] = self.embedding
        if self.uncentring is not None:
            weights["embedding_mean"] = self.uncentring.mean
            weights["embedding_norms"] = self.uncentring.norms
        path = save_model_files(path, KIND, self.config, weights, embedding_dim=int(self.embedding.shape[1]))
        write_json(path / "vocabulary.json", self.vocab.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> PoetryAutoencoder:
        """Restores a model written by :meth:`save`."""
        path = Path(path)

        def sizes(config: AutoencoderConfig, meta: dict[str, Any]) -> dict[str, Any]:
            out = {"embedding_dim": meta["embedding_dim"], "hidden_size": config.hidden_size,
                   "num_layers": config.num_layers, "bottleneck": config.bottleneck,
                   "decoder_hidden": config.decoder_hidden}
            return {**out, "num_heads": config.num_heads} if config.attention else out

        meta, config, weights = read_model_files(path, AutoencoderConfig.from_dict, sizes)
        vocab = Vocabulary.from_dict(json.loads((path / "vocabulary.json").read_text()))
        embedding = weights.pop("embedding")
        if embedding.shape[0] != len(vocab):
            raise ValueError(f"{path / 'vocabulary.json'}: {len(vocab)} tokens for {embedding.shape[0]} "
                             "embedding rows in model.safetensors")
        uncentring = None
        if "embedding_mean" in weights:
            uncentring = Uncentring(weights.pop("embedding_mean"), weights.pop("embedding_norms"))
        model = SequenceAutoencoder(config, int(meta["embedding_dim"]))
        model.load_state_dict({k.removeprefix("model."): v for k, v in weights.items()})
        model.eval()
        fitted = cls(model, config, vocab, embedding, run_dir=path, uncentring=uncentring)
        document = saved_evaluation(path)
        if document is not None:
            fitted.evaluation = document.get("results", {})
            fitted.summary = evaluation_summary(fitted.evaluation, config, document.get("baselines", {}),
                                                document.get("shortfalls", []))
        return fitted


def _step(model: SequenceAutoencoder, embedding: np.ndarray, config: AutoencoderConfig):
    """The training step; in eval mode (validation) attention models decode from the code
    alone, so early stopping and the restored weights follow the bottleneck's loss."""

    def step(m: SequenceAutoencoder, batch: PaddedBatch) -> Tensor:
        x = tensor(embedding[batch.inputs])
        pred, _ = m(x, batch.lengths, use_attention=m.training)
        return reconstruction_loss(pred, x, batch.inputs, batch.lengths, embedding, config)

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
    *,
    other_data: bool = False,
    arguments: dict[str, Any] | None = None,
) -> PoetryAutoencoder:
    """Prepares the corpus, trains, evaluates and reports; see :func:`seqlab.poetry_autoencoder`.

    A new run claims ``out`` first (an existing run is refused before any work); a resumed
    run (``resume``: its directory) trains on the data recorded in it, with ``config`` as
    resolved by :func:`seqlab.poetry_autoencoder` (the run's own, ``epochs`` excepted).
    """
    config = config or make_preset("small")
    if resume is not None:
        run_dir = Path(resume)
        data = resume_data(run_dir, read_run(run_dir, KIND), data, other_data)
    # The corpus is read before the run directory is claimed (a missing or malformed file
    # leaves nothing behind); the expensive work (word vectors, training) comes after.
    corpus = data if isinstance(data, PoemCorpus) else load_poems(data)
    if resume is None:
        run_dir = claim_run_dir(out, KIND, data, arguments or {"config": config.to_dict()})
    start = time.perf_counter()
    prepared = prepare(corpus, config, verbose=verbose)
    from ..random import manual_seed

    manual_seed(config.seed)
    model = SequenceAutoencoder(config, prepared.embedding.shape[1])
    if config.linear_path and resume is None:
        linear = LinearAutoencoder(config.bottleneck, config.max_len)
        linear.fit(prepared.chunks["train"], prepared.embedding, seed=config.seed)
        assert linear.mean is not None and linear.basis is not None and linear.code_std is not None  # fitted
        model.init_linear_path(linear.mean, linear.basis, 3.0 * float(linear.code_std[0]))
    optimizer = AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = SequenceBatches(prepared.chunks["train"], batch_size=config.batch_size, max_len=config.max_len)
    epochs = config.epochs_for(train.num_batches())
    if epochs != config.epochs:
        if verbose:
            print(f"{config.epochs} epochs of {train.num_batches()} steps are fewer than min_steps "
                  f"{config.min_steps}: training {epochs} epochs")
        config = config.with_overrides(epochs=epochs)
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
    with interruptible(run_dir, KIND):
        history = trainer.fit()
    fitted = PoetryAutoencoder(model, config, prepared.vocab, prepared.embedding, prepared, history, run_dir)
    evaluation = fitted.evaluate() if prepared.chunks["test"] else {}
    split = "test" if prepared.chunks["test"] else "train"
    baselines = fitted.baselines() if evaluation else {}
    notes = shortfalls(evaluation["bottleneck_only"], baselines) if evaluation else []
    _, codes, _ = run_batches(model, prepared.embedding, prepared.chunks[split])
    authors = [prepared.corpus[i].author or "unknown" for i in prepared.chunk_poems[split]]
    plots = _write_latent_plots(run_dir, np.stack(codes), authors, config.seed)
    fitted.save(run_dir)
    write_json(
        run_dir / "evaluation.json",
        {
            "split": split,
            "results": evaluation,
            "baselines": baselines,
            "bottleneck_only_beats_baselines": not notes if evaluation else None,
            "shortfalls": notes,
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
    fitted.summary = evaluation_summary(evaluation, config, baselines, notes)
    _append_evaluation_to_report(run_dir, fitted.summary)
    if verbose:
        if fitted.summary is not None:
            print(fitted.summary.sample_line())
        for name, res in {**evaluation, **baselines}.items():
            bottleneck = (
                f", bottleneck {res['bottleneck_active_dims']}/{res['bottleneck_dims']} dims active"
                if "bottleneck_dims" in res
                else ""
            )
            print(
                f"{name}: token cosine {res['token_cosine']:.3f} "
                f"(uncentred {_fmt(res['token_cosine_uncentred'])}), "
                f"sequence cosine {res['sequence_cosine']:.3f}, "
                f"word recovery top-1 {res['word_top1']:.3f} / top-5 {res['word_top5']:.3f}{bottleneck}"
            )
        for note in notes:
            print(f"note: the model (bottleneck only) does not beat a baseline: {note}")
        print(f"report: {run_dir / 'training_report.md'}")
    return fitted


EVALUATION_KEYS = [
    "token_cosine",
    "token_cosine_uncentred",
    "sequence_cosine",
    "mse",
    "rmse",
    "word_top1",
    "word_top5",
    "bottleneck_active_dims",
    "bottleneck_participation_ratio",
]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluation_summary(evaluation: dict[str, Any], config: AutoencoderConfig,
                       baselines: dict[str, dict[str, Any]] | None = None,
                       notes: list[str] | None = None) -> EvaluationSummary | None:
    """The held-out figures of :meth:`PoetryAutoencoder.evaluate` (the model's rows first)
    and of its baselines (:meth:`PoetryAutoencoder.baselines`, scored on the same chunks),
    with ``notes`` on the baselines the model does not beat, as the report's
    :class:`~seqlab.report.EvaluationSummary`."""
    baselines = baselines or {}
    rows = {name: res for name, res in {**evaluation, **baselines}.items() if isinstance(res, dict)}
    if not evaluation or not rows:
        return None
    first = next(iter(rows.values()))
    if config.attention:
        note = ("Attention lets information bypass the bottleneck: the `bottleneck_only` row runs the "
                "decoder with all-zero encoder states, so it alone measures what the "
                f"{config.bottleneck}-d code carries.")
    else:
        note = f"Without attention every number measures the {config.bottleneck}-d bottleneck."
    sentences = [note]
    if baselines:
        sentences.append(
            "Baselines, fitted on the training chunks and scored on the same held-out chunks: "
            + "; ".join(f"`{name}`: {b['what']}" for name, b in baselines.items() if "what" in b)
            + ". `token_cosine_uncentred` is the token cosine on the original, uncentred word vectors "
            "(predictions mapped back with the mean vector and the mean norm), where the mean vector "
            "alone scores high."
        )
        if notes:
            sentences.append("**The model (bottleneck only) does not beat every baseline:** "
                             + "; ".join(notes) + ".")
        else:
            sentences.append("The model (bottleneck only) beats every baseline on word top-1 and "
                             "token cosine.")
    keys = [k for k in EVALUATION_KEYS if k in first]
    return EvaluationSummary("held-out poems, free-running decoding", rows, int(first["chunks"]), "chunks",
                             keys=keys, detail=f"{int(first['tokens']):,} tokens", notes=sentences)


def _append_evaluation_to_report(run_dir: Path, summary: EvaluationSummary | None) -> None:
    if summary is None:
        return
    append_to_report(run_dir, summary, [
        "Latent codes: ![PCA](latent_pca.png) ![t-SNE](latent_tsne.png)",
        "",
        "Files: [evaluation.json](evaluation.json), [model_config.toml](model_config.toml), "
        "[vocabulary.json](vocabulary.json)",
    ])


def poetry_autoencoder(
    data: str | Path | PoemCorpus | None = None,
    preset: str | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    other_data: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
    preset_name: str | None = None,
    **overrides: Any,
) -> PoetryAutoencoder:
    """Trains, evaluates and reports a poetry autoencoder in one line.

    Args:
        data: a file of poems (PoetryDB JSON, JSON lists, JSON Lines, plain text, fortune
            files; see :func:`seqlab.data.load_poems`), or None for the default corpus
            (Debian's ``fortunes`` songs-poems).
        preset: ``"tiny"`` (bidirectional LSTM 32, 50-d vectors, chunks of 20 tokens, 12
            epochs and at least 600 steps; notebooks and smoke runs, about 2 minutes on the
            default corpus), ``"small"`` (the default: LSTM 64, 300-d vectors, chunks of 50,
            up to 60 epochs with early stopping), ``"words"`` (small's recurrent model
            without the linear path, trained for word recovery: the word softmax loss x1
            instead of x0.03, lr 5e-3, 6 epochs; 2.1x the linear baseline's word recovery
            through the bottleneck on poems.json over 3 seeds, at a cost in token cosine;
            benchmarks/RESULTS.md has both on poems.json), ``"medium"`` (LSTM 128, 30 epochs),
            ``"large"`` (2 x LSTM 256, 40 epochs), ``"xlarge"`` (2 x LSTM 512, 50 epochs),
            ``"research"`` (2 x LSTM 1024 with attention, 80 epochs). Every preset has a
            16-d bottleneck and, ``"words"`` excepted, a linear path started at the PCA of
            the training chunks;
            :func:`seqlab.models.poetry.config.describe_preset` (and ``seqlab poetry
            --help``) says what each is and how long it takes (:data:`seqlab.models.poetry.config.PRESETS`).
        out: run directory (default ``runs/poetry_autoencoder-<time>``); an existing run is
            never overwritten: it is refused before any work.
        resume: a run directory to continue from its last checkpoint, on the data and with
            the settings it was started with (``data`` may be left out). ``epochs=N`` is
            honoured: training continues up to epoch N counted from the run's start (an
            early-stopped run stays stopped); other changed settings are refused.
        other_data: with ``resume``, continue training on ``data`` although it is not the
            data the run was started on (refused otherwise).
        preset_name: deprecated spelling of ``preset``.
        **overrides: any :class:`AutoencoderConfig` field, e.g. ``cell="gru"``, ``attention=True``,
            ``epochs=30``, ``embeddings="glove.6B.300d.txt"``. An explicit ``epochs`` is
            trained as given (the preset's ``min_steps``, which raises its own epoch count on
            a small corpus, then does not apply unless also given).

    Returns:
        The fitted :class:`PoetryAutoencoder` (``.encode``, ``.reconstruct``, ``.evaluate``,
        ``.save``; ``.run_dir`` holds weights, config, metrics, report and latent plots).

    Raises:
        FileExistsError: ``out`` already holds a run.
        KeyboardInterrupt: Ctrl-C during training, with the last checkpoint and the call
            that resumes the run in its message.
    """
    if preset_name is not None:
        warnings.warn("poetry_autoencoder(preset_name=...) is deprecated; use preset=...",
                      DeprecationWarning, stacklevel=2)
        if preset is not None and preset != preset_name:
            raise TypeError(f"poetry_autoencoder: preset={preset!r} and preset_name={preset_name!r} disagree")
        preset = preset_name
    if resume is None and "epochs" in overrides and "min_steps" not in overrides:
        overrides = {**overrides, "min_steps": 0}  # an explicit epoch count is kept as given
    if resume is not None:
        config = resumed_config(Path(resume), KIND, preset, overrides, AutoencoderConfig.from_dict,
                                make_preset)
    else:
        preset = preset or "small"
        config = make_preset(preset, **overrides)
    return fit_poetry_autoencoder(
        data, config, out=out, resume=resume, progress=progress, verbose=verbose, other_data=other_data,
        arguments={"preset": preset, "overrides": overrides},
    )
