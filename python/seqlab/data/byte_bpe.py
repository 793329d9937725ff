"""Byte-level BPE for source code, trained with HuggingFace ``tokenizers``.

Every byte is first mapped to one printable character (GPT-2's byte-to-unicode table,
the alphabet of ``tokenizers``' ByteLevel), so any byte string, valid UTF-8 or not,
encodes and decodes exactly: ``decode(encode(data)) == data``. Before the merges the
mapped text is cut into pieces that a token never crosses: identifiers (with one
leading space), numbers of up to three digits, punctuation runs, and whitespace runs,
so that a newline with the next line's indentation (``"\\n    "``) can become one
token. The end-of-file token ``<|endoftext|>`` has id 0 and separates files.

The saved ``tokenizer.json`` is a regular ``tokenizers`` file (ByteLevel decoder), so
``tokenizers.Tokenizer.from_file`` reads it; the byte mapping lives in this class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..serialization import atomic_write_text

EOT = "<|endoftext|>"
EOT_ID = 0


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as e:
        raise ImportError(
            "the code language model needs HuggingFace tokenizers: pip install 'seqlab[code]'"
        ) from e
    return tokenizers


def _byte_table() -> list[str]:
    """GPT-2's bytes_to_unicode: byte b -> a printable character (printable ASCII and most
    Latin-1 map to themselves, the rest to U+0100 onwards)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = [""] * 256
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_TABLE = _byte_table()
_TO_CHAR = {b: c for b, c in enumerate(_TABLE)}  # str.translate table from latin-1 code points
_FROM_CHAR = {ord(c): b for b, c in enumerate(_TABLE)}
_SPACE, _TAB, _LF, _CR, _VT, _FF = (_TABLE[b] for b in (32, 9, 10, 13, 11, 12))
_WS = _SPACE + _TAB + _LF + _CR + _VT + _FF
# Pieces, in the mapped alphabet: ' word', ' 123', ' +=', whitespace runs.
_PIECES = f"{_SPACE}?[A-Za-z_][A-Za-z0-9_]*|{_SPACE}?[0-9]{{1,3}}|{_SPACE}?[^{_WS}A-Za-z0-9_]+|[{_WS}]+"


def bytes_to_symbols(data: bytes) -> str:
    """One character per byte (the tokenizer's alphabet)."""
    return data.decode("latin-1").translate(_TO_CHAR)


def symbols_to_bytes(text: str) -> bytes:
    """Inverse of :func:`bytes_to_symbols`."""
    return text.translate(_FROM_CHAR).encode("latin-1")


def _as_bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8", errors="surrogateescape")
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


class ByteBPETokenizer:
    """Byte-level BPE (see the module docstring).

    Use :meth:`train` on the training files, then :meth:`encode` / :meth:`decode`;
    :meth:`save` writes ``tokenizer.json`` and :meth:`load` reads it back.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._id_to_symbols = [tokenizer.id_to_token(i) or "" for i in range(tokenizer.get_vocab_size())]
        self._id_to_symbols[EOT_ID] = ""

    @staticmethod
    def _empty() -> Any:
        tk = _require_tokenizers()
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.Split(tk.Regex(_PIECES), behavior="isolated")
        tok.decoder = tk.decoders.ByteLevel()
        return tok

    @classmethod
    def train(
        cls, texts: Iterable[str | bytes], vocab_size: int = 4096, min_frequency: int = 2
    ) -> ByteBPETokenizer:
        """Learns ``vocab_size - 257`` merges (after the EOT token and the 256 byte symbols)."""
        if vocab_size < 258:
            raise ValueError(f"vocab_size: expected at least 258 (EOT + 256 bytes + 1), got {vocab_size}")
        tk = _require_tokenizers()
        tok = cls._empty()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=int(vocab_size),
            min_frequency=int(min_frequency),
            special_tokens=[EOT],
            initial_alphabet=list(_TABLE),
            show_progress=False,
        )
        tok.train_from_iterator((bytes_to_symbols(_as_bytes(t)) for t in texts), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_symbols)

    def encode(self, text: str | bytes) -> np.ndarray:
        """Token ids (int64) of a text (UTF-8 encoded first) or of raw bytes."""
        return np.asarray(self._tok.encode(bytes_to_symbols(_as_bytes(text))).ids, dtype=np.int64)

    def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        """:meth:`encode` of several texts (in parallel inside ``tokenizers``)."""
        encs = self._tok.encode_batch([bytes_to_symbols(_as_bytes(t)) for t in texts])
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The exact bytes of token ids (the EOT token decodes to nothing)."""
        table = self._id_to_symbols
        try:
            return symbols_to_bytes("".join(table[int(i)] for i in ids))
        except IndexError:
            bad = [int(i) for i in ids if not 0 <= int(i) < len(table)]
            raise ValueError(f"decode: token ids {bad[:5]} outside the vocabulary of {len(table)}") from None

    def decode(self, ids: Iterable[int]) -> str | bytes:
        """The text of token ids: ``str`` when the bytes are valid UTF-8, else ``bytes``, so
        ``decode(encode(x)) == x`` for every str and every bytes ``x``."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data

    def decode_text(self, ids: Iterable[int]) -> str:
        """The text of token ids, undecodable bytes replaced (for display)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self) -> list[bytes]:
        """The bytes of every token id (EOT: empty)."""
        return [symbols_to_bytes(s) for s in self._id_to_symbols]

    def to_json(self) -> str:
        """The ``tokenizers`` JSON text of this tokenizer (what :meth:`save` writes)."""
        return str(self._tok.to_str())

    @classmethod
    def from_json(cls, text: str) -> ByteBPETokenizer:
        """The tokenizer of a :meth:`to_json` text."""
        return cls(_require_tokenizers().Tokenizer.from_str(text))

    def save(self, path: str | Path) -> Path:
        """Writes the ``tokenizers`` JSON (``tokenizer.json``) atomically; returns its path."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / "tokenizer.json"
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ByteBPETokenizer:
        """Reads a file written by :meth:`save` (or the directory holding ``tokenizer.json``)."""
        tk = _require_tokenizers()
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        try:
            return cls(tk.Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises its own Exception type for bad files
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such tokenizer file") from None
            raise ValueError(f"{path}: not a valid tokenizer file ({e})") from e
