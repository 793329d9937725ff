"""The user cache of text embeddings: a pretrained encoder embeds a corpus once."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from seqlab.data.embedding_cache import CACHE_ENV, cache_dir, cached_embeddings, corpus_key
from seqlab.models.vectors.config import VectorPredictorConfig
from seqlab.models.vectors.dataset import prepare


class CountingEncoder:
    """A deterministic encoder with nothing to fit that counts the chunks it embeds."""

    name = "counting"
    cache_key = "counting-v1"

    def __init__(self) -> None:
        self.embedded = 0

    @property
    def dim(self) -> int:
        return 8

    def fit(self, chunks):
        return self

    def encode(self, chunks):
        self.embedded += len(chunks)
        out = np.zeros((len(chunks), 8), np.float32)
        for i, c in enumerate(chunks):
            out[i] = np.random.default_rng(zlib.crc32(c.encode())).standard_normal(8)
        return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "embeddings"
    monkeypatch.setenv(CACHE_ENV, "none")
    assert cache_dir() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "seqlab" / "embeddings"


def test_key_depends_on_encoder_and_every_chunk_in_order():
    texts = ["alpha beta", "gamma"]
    k = corpus_key("enc-1", texts)
    assert k == corpus_key("enc-1", list(texts))
    assert k.startswith("enc-1-")
    assert k != corpus_key("enc-2", texts)
    assert k != corpus_key("enc-1", texts[::-1])
    assert k != corpus_key("enc-1", ["alpha", "beta gamma"])  # same characters, cut differently
    assert k != corpus_key("enc-1", ["alpha beta", "gamma", ""])


def test_second_call_reads_the_cache(cache, capsys):
    enc = CountingEncoder()
    texts = [f"chunk {i}" for i in range(5)]
    first = cached_embeddings(enc.cache_key, texts, enc.encode, verbose=True)
    assert enc.embedded == 5 and "cached in" in capsys.readouterr().out
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("counting-v1-")
    again = cached_embeddings(enc.cache_key, texts, enc.encode, verbose=True)
    assert enc.embedded == 5  # nothing embedded again
    assert "read from the cache" in capsys.readouterr().out
    np.testing.assert_array_equal(again, first)
    other = cached_embeddings(enc.cache_key, texts[:4], enc.encode)
    assert enc.embedded == 9 and len(other) == 4  # another corpus is another entry
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_damaged_entry_is_embedded_again(cache, capsys):
    enc = CountingEncoder()
    texts = ["one", "two", "three"]
    first = cached_embeddings(enc.cache_key, texts, enc.encode)
    (path,) = cache.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:20])
    again = cached_embeddings(enc.cache_key, texts, enc.encode, verbose=True)
    assert enc.embedded == 6 and "damaged" in capsys.readouterr().out
    np.testing.assert_array_equal(again, first)
    cached_embeddings(enc.cache_key, texts, enc.encode)
    assert enc.embedded == 6  # the entry was replaced by a good one


def test_no_key_or_cache_off_embeds_every_time(cache, monkeypatch):
    enc = CountingEncoder()
    cached_embeddings(None, ["a", "b"], enc.encode)
    cached_embeddings(None, ["a", "b"], enc.encode)
    assert enc.embedded == 4 and not cache.exists()
    monkeypatch.setenv(CACHE_ENV, "none")
    cached_embeddings(enc.cache_key, ["a", "b"], enc.encode)
    cached_embeddings(enc.cache_key, ["a", "b"], enc.encode)
    assert enc.embedded == 8 and not cache.exists()


def test_unwritable_cache_still_gives_the_embeddings(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    enc = CountingEncoder()
    v = cached_embeddings(enc.cache_key, ["a", "b"], enc.encode, verbose=True)
    assert v.shape == (2, 8) and "could not cache" in capsys.readouterr().out


def test_prepared_corpus_is_the_same_from_the_cache(cache):
    rng = np.random.default_rng(0)
    words = "river boat water fish shore bank mountain snow climb rope peak ridge".split()
    docs = ["\n\n".join(" ".join(rng.choice(words, size=8)) for _ in range(9)) for _ in range(20)]
    enc = CountingEncoder()
    config = VectorPredictorConfig(encoder=enc, min_length=3, coherence=-1.0)  # type: ignore[arg-type]
    first = prepare(docs, config, verbose=False)
    embedded = enc.embedded
    assert embedded > 0
    second = prepare(docs, config, verbose=False)
    assert enc.embedded == embedded
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[split].vectors, second.splits[split].vectors)
