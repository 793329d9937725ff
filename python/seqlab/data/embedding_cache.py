"""A user cache of text embeddings, so that a pretrained encoder embeds a corpus once.

Embedding the default corpus with all-MiniLM-L6-v2 takes many minutes on a CPU, and
every run on the same corpus would otherwise repeat it. An encoder whose output depends
on nothing but the text (it has a ``cache_key``: MiniLM, not TF-IDF, which is fitted on
each run's training split) has its ``(N, D)`` embeddings of a list of chunks stored
once, under a name made of the encoder's key and a SHA-256 of every chunk in order, in

* ``$SEQLAB_CACHE_DIR/embeddings/`` when ``SEQLAB_CACHE_DIR`` is set (``none``: no cache),
* else ``$XDG_CACHE_HOME/seqlab/embeddings/``, else ``~/.cache/seqlab/embeddings/``.

Files are safetensors, written atomically; a damaged one is embedded again and
replaced. Deleting the folder clears the cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..serialization import CorruptFileError, load_weights, save_weights

CACHE_ENV = "SEQLAB_CACHE_DIR"


def cache_dir() -> Path | None:
    """The folder of cached embeddings, or None when ``SEQLAB_CACHE_DIR=none``."""
    root = os.environ.get(CACHE_ENV)
    if root is not None and root.strip().lower() in ("", "none", "off", "0"):
        return None
    if root:
        return Path(root).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "seqlab" / "embeddings"


def corpus_key(encoder_key: str, texts: Sequence[str]) -> str:
    """``<encoder>-<sha256 of the chunks>``: the cache file's name (without suffix).

    Each chunk is hashed with its length, so no two different lists of chunks collide by
    how their texts are cut."""
    h = hashlib.sha256(encoder_key.encode("utf-8"))
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_key)
    return f"{safe}-{h.hexdigest()[:32]}"


def cached_embeddings(
    encoder_key: str | None, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray],
    verbose: bool = False,
) -> np.ndarray:
    """``embed(texts)``, read from the cache when this encoder has embedded these chunks before.

    Args:
        encoder_key: names the encoder and its weights (None: never cached).
        texts: the chunks, in order.
        embed: computes the ``(len(texts), D)`` embeddings on a miss.
        verbose: print where the embeddings were read from or stored.

    Returns:
        ``(len(texts), D)`` float32.
    """
    folder = cache_dir()
    if encoder_key is None or folder is None:
        return embed(texts)
    path = folder / f"{corpus_key(encoder_key, texts)}.safetensors"
    if path.is_file():
        try:
            vectors = load_weights(path)["vectors"]
        except (CorruptFileError, KeyError):
            vectors = None
        if vectors is not None and vectors.ndim == 2 and len(vectors) == len(texts):
            if verbose:
                print(f"embeddings of {len(texts)} chunks read from the cache {path}", flush=True)
            return np.ascontiguousarray(vectors, dtype=np.float32)
        if verbose:
            print(f"the cached embeddings {path} are damaged; embedding again", flush=True)
    vectors = np.ascontiguousarray(embed(texts), dtype=np.float32)
    try:
        save_weights(path, {"vectors": vectors})
    except OSError as e:  # a read-only home or a full disk must not lose the embeddings
        if verbose:
            print(f"note: could not cache the embeddings ({e})", flush=True)
    else:
        if verbose:
            print(f"embeddings of {len(texts)} chunks cached in {path} "
                  f"(set {CACHE_ENV}=none to turn the cache off)", flush=True)
    return vectors
