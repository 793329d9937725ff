"""The code language model recipe: ``seqlab.code_lm("path/to/repo")``."""

from __future__ import annotations

import math
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.byte_bpe import EOT_ID, ByteBPETokenizer
from ..models.code_lm.config import CodeLMConfig, preset_config
from ..models.code_lm.dataset import CodeData, prepare, read_corpus, windows
from ..models.code_lm.evaluate import compile_prompts, compile_rate, language_scores, stop_at_function_end
from ..models.code_lm.generation import check_prompt_length, generate_ids
from ..models.code_lm.model import GPT, bf16_fallback_message
from ..models.code_lm.ngram import KneserNeyNgram
from ..optim import AdamW
from ..report.evaluation import EvaluationSummary, recipe_html
from ..serialization import atomic_write_text, write_json
from ..threads import get_num_threads
from ..train import Checkpoint, Throughput, Trainer, WarmupSchedule
from .loading import read_model_files, save_model_files
from .run_dir import claim_run_dir, interruptible, read_run, resume_data, resumed_config

KIND = "code_lm"
TOKENIZER_FILE = "tokenizer.json"


def peak_memory_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class CodeLM:
    """A trained code language model with its tokenizer.

    Attributes:
        model: the :class:`~seqlab.models.code_lm.GPT`.
        config: its :class:`~seqlab.models.code_lm.CodeLMConfig`.
        tokenizer: the byte-level BPE (:class:`~seqlab.data.ByteBPETokenizer`).
        data: corpus, split and token streams (None after :func:`seqlab.load` until
            :meth:`evaluate` re-reads the corpus).
        source: the corpus path it was trained on (None: the default corpus).
        history: per-epoch training history; evaluation: the last :meth:`evaluate` result.
        run_dir: the run directory.
    """

    def __init__(
        self,
        model: GPT,
        config: CodeLMConfig,
        tokenizer: ByteBPETokenizer,
        data: CodeData | None = None,
        source: str | None = None,
        history: list[dict[str, Any]] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        self.data = data
        self.source = source
        self.history = history or []
        self.evaluation: dict[str, Any] = {}
        self.run_dir = run_dir

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CodeLM(d_model={c.d_model}, layers={c.n_layers}, heads={c.n_heads}, "
            f"vocab={self.tokenizer.vocab_size}, "
            f"run_dir={self.run_dir})"
        )

    def summary(self) -> EvaluationSummary | None:
        """The last :meth:`evaluate` result as an :class:`~seqlab.report.EvaluationSummary`:
        the GPT beside the n-gram baseline on the held-out tokens (None before any evaluation)."""
        ev = self.evaluation
        if not ev:
            return None
        m, g = ev["model"], ev["ngram"]
        keys = ["loss", "perplexity", "bits_per_byte"]
        baseline = f"Kneser-Ney {g['order']}-gram (baseline)"
        rows = {"GPT": {k: m[k] for k in keys}, baseline: {k: g[k] for k in keys}}
        comp = ev.get("compile")
        if comp and comp["model"]["pass"] is not None:
            rows["GPT"]["compile_rate"] = comp["model"]["pass"]
            if comp["ngram"]["pass"] is not None:
                rows[baseline]["compile_rate"] = comp["ngram"]["pass"]
        notes = [] if ev["beats_ngram"] else ["The model does not beat the n-gram baseline on bits per byte."]
        return EvaluationSummary(
            title=f"held-out {ev['split']} files", rows=rows, samples=int(ev["tokens"]), unit="tokens",
            detail=f"{ev['bytes']:,} bytes", notes=notes,
        )

    def _repr_html_(self) -> str:
        return recipe_html(repr(self), self.summary(), self.run_dir)

    # ------------------------------------------------------------ generation
    def _context(self, prompt: str) -> np.ndarray:
        """The prompt's tokens after the end-of-file token: a prompt starts a file, as in training."""
        return np.concatenate([[EOT_ID], self.tokenizer.encode(prompt)]).astype(np.int64)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        stop: str | Sequence[str] | None = None,
        num_samples: int = 1,
        seed: int | None = None,
    ) -> str | list[str]:
        """Continues ``prompt`` with up to ``max_new_tokens`` tokens (the completion only).

        ``temperature`` 0 is greedy; otherwise sampling at that temperature, among the
        ``top_k`` most probable tokens and the top-``top_p`` probability mass. Generation
        ends at the end-of-file token, the maximum length, or a ``stop`` string (the
        completion is cut before it). Each token is one incremental step against the
        key/value cache. ``num_samples`` > 1 returns a list.

        The prompt is read as the start of a file (after the end-of-file token), so an
        empty prompt starts a new file.

        Raises:
            ValueError: the prompt (with the end-of-file token before it) is longer than
                the model's maximum length (``max_len`` tokens), or a sampling setting is
                out of range.
        """
        ids = self._context(prompt)
        check_prompt_length(len(ids), self.config.max_len)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not isinstance(s, str) or not s for s in stops):
            raise ValueError(f"stop: expected non-empty strings, got {stop!r}")
        decode = self.tokenizer.decode_text

        def stop_rule(new: list[int]) -> bool:
            text = decode(new)
            return any(s in text for s in stops)

        rows = generate_ids(
            self.model,
            ids,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            num_samples,
            stop_rule if stops else None,
            rng=np.random.default_rng(seed),
        )
        texts = []
        for r in rows:
            text = decode(r)
            cuts = [text.find(s) for s in stops if s in text]
            texts.append(text[: min(cuts)] if cuts else text)
        return texts[0] if num_samples == 1 else texts

    def _completions(self, ngram: KneserNeyNgram, rng: np.random.Generator) -> tuple[Any, Any]:
        c = self.config
        decode = self.tokenizer.decode_text

        def model_side(prompt: str, n: int) -> list[str]:
            ids = self._context(prompt)[-(c.max_len // 2) :]
            rows = generate_ids(
                self.model,
                ids,
                c.compile_max_tokens,
                c.compile_temperature,
                None,
                0.95,
                n,
                stop_at_function_end(decode, prompt),
                rng=rng,
            )
            return [decode(r) for r in rows]

        def ngram_side(prompt: str, n: int) -> list[str]:
            ids = list(self._context(prompt))
            stop = stop_at_function_end(decode, prompt)
            return [decode(ngram.sample(ids, c.compile_max_tokens, rng, stop=stop)) for _ in range(n)]

        return model_side, ngram_side

    # ------------------------------------------------------------ evaluation
    def evaluate(
        self, split: str = "test", compile_check: bool = True, verbose: bool = False
    ) -> dict[str, Any]:
        """Held-out scores of the ``split`` files (default test).

        Returns ``{"split", "tokens", "bytes", "model": {loss, perplexity, bits_per_byte},
        "ngram": {...}, "beats_ngram": bool, "compile": {...}}``: loss in nats per token,
        bits per byte over the split's raw bytes (independent of the tokenizer), beside an
        interpolated Kneser-Ney n-gram fitted on the training tokens; ``compile`` holds the
        share of snippets that pass ``gcc -fsyntax-only`` for the model, n-gram samples and
        the true held-out functions (upper bound), per prompt family.
        """
        c = self.config
        if self.data is None:
            self.data = prepare(self.source, c, tokenizer=self.tokenizer, verbose=verbose)
        data = self.data
        if split not in data.streams:
            raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
        if not data.splits[split]:
            split = "val" if data.splits["val"] else "train"
        ngram = KneserNeyNgram(c.ngram_order, self.tokenizer.vocab_size).fit(data.streams["train"])
        scores = language_scores(self.model, ngram, data.streams[split], data.split_bytes(split), c.seq_len)
        result: dict[str, Any] = {
            "split": split,
            **scores,
            "beats_ngram": scores["model"]["bits_per_byte"] < scores["ngram"]["bits_per_byte"],
        }
        if compile_check and c.compile_samples > 0:
            rng = np.random.default_rng(c.seed)
            prompts = compile_prompts(data, split, c)
            model_side, ngram_side = self._completions(ngram, rng)
            result["compile"] = compile_rate(prompts, c.compile_samples, model_side, ngram_side)
        self.evaluation = result
        return result

    # --------------------------------------------------------------- storage
    def save(self, path: str | Path | None = None) -> Path:
        """Writes ``model.safetensors``, ``model_config.toml`` and ``tokenizer.json`` into
        ``path`` (default: the run directory)."""
        target = Path(path) if path is not None else self.run_dir
        if target is None:
            raise ValueError("save(): give a path (this model has no run directory)")
        meta = {} if self.source is None else {"source": self.source}
        save_model_files(target, KIND, self.config, self.model.state_dict(), **meta)
        self.tokenizer.save(target / TOKENIZER_FILE)
        return target

    @classmethod
    def load(cls, path: str | Path) -> CodeLM:
        """Restores a model written by :meth:`save` (or a run directory)."""
        path = Path(path)

        def sizes(c: CodeLMConfig, meta: dict[str, Any]) -> dict[str, int]:
            return {"vocab_size": c.vocab_size, "d_model": c.d_model, "n_layers": c.n_layers,
                    "n_heads": c.n_heads, "d_ff": c.d_ff, "max_len": c.max_len}

        meta, config, weights = read_model_files(path, CodeLMConfig.from_dict, sizes)
        tokenizer = ByteBPETokenizer.load(path / TOKENIZER_FILE)
        model = GPT(config)
        model.load_state_dict(weights)
        model.eval()
        return cls(model, config, tokenizer, source=meta.get("source"), run_dir=path)


# -------------------------------------------------------------------- training
def _optimizer(model: GPT, config: CodeLMConfig) -> AdamW:
    """AdamW with weight decay on the matrices (embeddings included) and none on biases and
    LayerNorm weights (nanoGPT's grouping)."""
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    return AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.95),
    )


def _report(
    run_dir: Path,
    fitted: CodeLM,
    trainer: Trainer,
    evaluation: dict[str, Any],
    stats: dict[str, Any],
    peak: int,
) -> None:
    """Appends the code LM's sections to training_report.md and draws the per-step loss curve."""
    from ..report.plots import plot_step_losses

    report = run_dir / "training_report.md"
    steps = trainer.step_history
    lines = ["", "## Code language model", ""]
    try:
        plot_step_losses(steps, run_dir / "loss_curve.png")
        lines += ["![loss per step](loss_curve.png)", ""]
    except ImportError:
        pass
    losses = [s["loss"] for s in steps if math.isfinite(s.get("loss", math.nan))]
    best = trainer.best_epoch() or {}
    epochs = trainer.history
    nan = float("nan")
    tok_s = [h["tokens_per_sec"] for h in epochs if "tokens_per_sec" in h]
    per_batch = [h["seconds_per_batch"] for h in epochs if "seconds_per_batch" in h]
    per_epoch = ", ".join(f"{h['seconds']:.1f} s" for h in epochs)
    lines += [
        f"- Loss (nats per token): initial {losses[0]:.4f} (first step; uniform would be "
        f"{math.log(fitted.config.vocab_size):.4f}), final {losses[-1]:.4f} (last step), final validation "
        f"{epochs[-1].get('val_loss', nan):.4f}, best validation {best.get('val_loss', nan):.4f} "
        f"(epoch {best.get('epoch', '-')})",
        f"- Time: {trainer.train_seconds:.1f} s training on {get_num_threads()} threads; "
        f"per epoch {per_epoch}"
        + (f"; per micro-batch {np.mean(per_batch) * 1000:.1f} ms" if per_batch else ""),
        f"- Throughput: {np.mean(tok_s):,.0f} training tokens/s (mean over epochs)"
        if tok_s
        else "- Throughput: -",
        f"- Peak memory (process resident): {peak / 2**20:.0f} MiB",
        "",
        "### Repository statistics",
        "",
        "| split | files | lines | bytes | tokens |",
        "|---|---|---|---|---|",
    ]
    for name, row in list(stats["splits"].items()) + [("total", stats["total"])]:
        lines.append(
            f"| {name} | {row['files']} | {row['lines']:,} | {row['bytes']:,} | {row.get('tokens', 0):,} |"
        )
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats["skipped"].items())) or "none"
    lines += ["", f"Source: {stats['root']}. Skipped files: {skipped}.", ""]
    m, g = evaluation["model"], evaluation["ngram"]
    lines += [
        f"### Held-out scores ({evaluation['split']} split: {evaluation['tokens']:,} tokens, "
        f"{evaluation['bytes']:,} bytes)",
        "",
        "| model | loss (nats/token) | perplexity | bits per byte |",
        "|---|---|---|---|",
        f"| GPT | {m['loss']:.4f} | {m['perplexity']:.2f} | {m['bits_per_byte']:.4f} |",
        f"| Kneser-Ney {g['order']}-gram (baseline) | {g['loss']:.4f} | {g['perplexity']:.2f} | "
        f"{g['bits_per_byte']:.4f} |",
        "",
        "The model beats the n-gram baseline."
        if evaluation["beats_ngram"]
        else "**The model does not beat the n-gram baseline.**",
        "",
    ]
    comp = evaluation.get("compile")
    if comp:

        def cell(d: dict[str, Any] | None) -> str:
            return "-" if not d or d["pass"] is None else f"{d['pass']:.0%} of {d['n']}"

        lines += [
            "### Compile rate (gcc -fsyntax-only after balancing braces)",
            "",
            "| prompt | GPT | n-gram samples | true held-out functions (upper bound) |",
            "|---|---|---|---|",
        ]
        for fam, row in comp["families"].items():
            lines.append(
                f"| `{fam}` | {cell(row.get('model'))} | {cell(row.get('ngram'))} | {cell(row.get('true'))} |"
            )
        lines.append(f"| all | {cell(comp['model'])} | {cell(comp['ngram'])} | {cell(comp['true'])} |")
        lines.append("")
    lines += [
        "Files: [evaluation.json](evaluation.json), [tokenizer.json](tokenizer.json), "
        "[model_config.toml](model_config.toml), [tensorboard/](tensorboard)",
        "",
    ]
    text = report.read_text() if report.exists() else f"# Training report: {run_dir.name}\n"
    atomic_write_text(report, text + "\n".join(lines))


def fit_code_lm(
    path: str | Path | None = None,
    config: CodeLMConfig | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    tensorboard: bool = True,
    verbose: bool = True,
    *,
    other_data: bool = False,
    arguments: dict[str, Any] | None = None,
) -> CodeLM:
    """Reads the corpus, trains the tokenizer and the GPT, evaluates and reports; see
    :func:`seqlab.code_lm`.

    A new run reads the corpus (cheap: a bad path is refused before anything is written),
    then claims ``out`` (an existing run is refused before the tokenizer is trained); a
    resumed run (``resume``: its directory) trains on the source folder recorded in it,
    with its saved tokenizer, and ``config`` as resolved by :func:`seqlab.code_lm`.
    """
    config = config or preset_config("small")
    tokenizer = None
    if resume is not None:
        run_dir = Path(resume)
        path = resume_data(run_dir, read_run(run_dir, KIND), path, other_data)
        if (run_dir / TOKENIZER_FILE).is_file():
            tokenizer = ByteBPETokenizer.load(run_dir / TOKENIZER_FILE)
    source = None if path is None else str(Path(path).expanduser().resolve())
    corpus = read_corpus(path, config)
    if resume is None:
        run_dir = claim_run_dir(out, KIND, path, arguments or {"config": config.to_dict()})
    start = time.perf_counter()
    data = prepare(path, config, tokenizer=tokenizer, verbose=verbose, corpus=corpus)
    if data.tokenizer.vocab_size != config.vocab_size:
        config = config.with_overrides(vocab_size=data.tokenizer.vocab_size)
    if tokenizer is None:
        data.tokenizer.save(run_dir / TOKENIZER_FILE)
    from ..random import manual_seed

    manual_seed(config.seed)
    model = GPT(config)
    fallback = bf16_fallback_message() if config.precision == "bf16" else None
    if fallback:
        if verbose:
            print(f"note: {fallback}", flush=True)
        else:
            warnings.warn(fallback, RuntimeWarning, stacklevel=2)
    train_x, train_y = windows(data.streams["train"], config.seq_len)
    val_x, val_y = windows(data.streams["val"], config.seq_len)
    if len(train_x) == 0:
        raise ValueError(
            f"{data.corpus.root}: the training files hold {len(data.streams['train'])} tokens, fewer "
            f"than one window of seq_len={config.seq_len}"
        )
    callbacks: list[Any] = [
        WarmupSchedule(config.warmup_steps, decay="cosine", min_lr=config.lr * config.min_lr_ratio),
        Throughput(config.seq_len, "tokens"),
        Checkpoint(every=config.checkpoint_every, monitor="val_loss" if len(val_x) else "train_loss"),
    ]
    if tensorboard:
        try:
            from ..train import TensorBoardLogger

            callbacks.append(TensorBoardLogger())
        except ImportError as e:
            if verbose:
                print(f"note: no TensorBoard log ({e})")
    if verbose:
        print(
            f"training a GPT ({config.n_layers} layers, d_model {config.d_model}, {config.n_heads} heads) on "
            f"{len(train_x)} windows of {config.seq_len} tokens; batch {config.batch_size} x "
            f"{config.accumulation} accumulated, {get_num_threads()} threads, {model.gemm_precision} GEMMs",
            flush=True,
        )

    def step_fn(gpt: GPT, batch: tuple[np.ndarray, np.ndarray]) -> Any:
        return gpt.loss(*batch)  # the output layer fused with the loss: no (B, T, V) logits

    trainer = Trainer(
        model,
        None,
        _optimizer(model, config),
        (train_x, train_y),
        (val_x, val_y) if len(val_x) else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        accumulation_steps=config.accumulation,
        clip_grad_norm=config.clip_grad_norm,
        seed=config.seed,
        out_dir=run_dir,
        resume=resume is not None,
        callbacks=callbacks,
        progress=progress,
        config={"kind": KIND, **config.to_dict(), **({"source": source} if source else {})},
        verbose=verbose,
        step_fn=step_fn,
    )
    with interruptible(run_dir, KIND):
        history = trainer.fit()
    peak = peak_memory_bytes()
    fitted = CodeLM(model, config, data.tokenizer, data, source, history, run_dir)
    if verbose:
        print("evaluating: held-out bits per byte beside the n-gram, compile rate", flush=True)
    evaluation = fitted.evaluate()
    fitted.save(run_dir)
    stats = data.statistics()
    write_json(
        run_dir / "evaluation.json",
        {
            **{k: v for k, v in evaluation.items()},
            "statistics": stats,
            "peak_memory_bytes": peak,
            "train_seconds": trainer.train_seconds,
            "threads": get_num_threads(),
            "gemm_precision": model.gemm_precision,
            "seconds": time.perf_counter() - start,
        },
    )
    _report(run_dir, fitted, trainer, evaluation, stats, peak)
    if verbose:
        m, g = evaluation["model"], evaluation["ngram"]
        print(
            f"{evaluation['split']} split ({evaluation['tokens']:,} tokens, {evaluation['bytes']:,} bytes): "
            f"GPT {m['bits_per_byte']:.3f} bits/byte (loss {m['loss']:.3f}, "
            f"perplexity {m['perplexity']:.1f}) vs "
            f"Kneser-Ney {g['order']}-gram {g['bits_per_byte']:.3f} bits/byte"
        )
        comp = evaluation.get("compile")
        if comp:

            def share(d: dict[str, Any]) -> str:
                return "-" if d["pass"] is None else f"{d['pass']:.0%} of {d['n']}"

            print(
                f"compile rate: GPT {share(comp['model'])}, n-gram {share(comp['ngram'])}, true held-out "
                f"functions {share(comp['true'])}"
            )
        print(f"report: {run_dir / 'training_report.md'}")
    return fitted


def code_lm(
    path: str | Path | None = None,
    preset: str | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    other_data: bool = False,
    progress: bool | None = None,
    tensorboard: bool = True,
    verbose: bool = True,
    **overrides: Any,
) -> CodeLM:
    """Trains, evaluates and reports a GPT on a repository's code in one line.

    Args:
        path: a folder of code (files with ``extensions``, default ``.c``/``.h``), or None
            for the C headers and sources of this machine (``/usr/include``), capped by
            ``max_total_bytes``.
        preset: ``"small"`` (default: minutes on two cores), ``"tiny"`` (seconds) or
            ``"original"`` (the original project's 6-layer, 8-head, 50k-token model).
        out: run directory (default ``runs/code_lm-<time>``); an existing run is never
            overwritten: it is refused before the tokenizer is trained.
        resume: a run directory to continue from its last checkpoint, on the source folder
            and with the tokenizer and settings it was started with (``path`` may be left
            out). ``epochs=N`` is honoured: training continues up to epoch N counted from
            the run's start; other changed settings are refused.
        other_data: with ``resume``, continue training on ``path`` although it is not the
            folder the run was started on (refused otherwise).
        tensorboard: write a TensorBoard event log into ``<run dir>/tensorboard``.
        **overrides: any :class:`~seqlab.models.code_lm.CodeLMConfig` field (``epochs=2``,
            ``d_model=256``, ``vocab_size=8192``, ``precision="fp32"``, ...).

    Returns:
        The trained :class:`CodeLM` (``.generate``, ``.evaluate``, ``.save``, ``.run_dir``);
        its run directory holds ``run.json``, the weights, ``tokenizer.json``, checkpoints,
        the TensorBoard log, ``evaluation.json`` and ``training_report.md``.

    Raises:
        FileExistsError: ``out`` already holds a run.
        KeyboardInterrupt: Ctrl-C during training, with the last checkpoint and the call
            that resumes the run in its message.
    """
    if resume is not None:
        config = resumed_config(Path(resume), KIND, preset, overrides, CodeLMConfig.from_dict, preset_config)
    else:
        preset = preset or "small"
        config = preset_config(preset, **overrides)
    return fit_code_lm(
        path, config, out=out, resume=resume, progress=progress, tensorboard=tensorboard, verbose=verbose,
        other_data=other_data, arguments={"preset": preset, "overrides": overrides},
    )
