"""Attention: scaled dot-product attention (plain and tiled flash paths) and the multi-head
attention core, with the buffer pool their outputs and gradients come from."""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, grad_buffer, make_result, returned_grad
from ..random import generator
from ._common import _float_input, _grad, _keep_spare, _take_spare

_attention_state: dict[str, Any] = {"flash_threshold": 1024, "spares": []}


class _BufferPool:
    """Large float32 arrays for attention outputs and fresh gradients, reused once unreferenced.

    Each array handed out is a view of a pooled 1-D block; a block whose only reference
    is the pool's own is free again (every view of it, and every view of those, keeps it
    referenced). A training step then writes into pages it already has instead of new
    ones: at B=4, H=8, T=512, D=64 a step's output and three gradients are 8 MiB, ~2000
    page faults (and the unmaps of the previous step's buffers) that cost ~2 ms of CPU
    on one thread and 5-6 ms of wall time on two (the threads fault on the same pages'
    mapping lock and the unmaps interrupt both cores). Contents are undefined, as with
    ``np.empty``: the kernels overwrite every element. At most ``limit`` blocks are kept
    (arrays under ``min_bytes`` come from ``np.empty``); ``clear_attention_workspace()``
    drops them.
    """

    def __init__(self, limit: int = 16, min_bytes: int = 1 << 20) -> None:
        self.limit = limit
        self.min_bytes = min_bytes
        self.blocks: list[np.ndarray] = []
        # What sys.getrefcount reports for a block only the list refers to (measured, as
        # interpreters differ in the temporary references they count).
        probe = [np.empty(1, dtype=np.float32)]
        self._free_refs = sys.getrefcount(probe[0])
        # Two Python threads must not both find the same block free before either takes it.
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        n = 1
        for d in shape:
            n *= int(d)
        if n * 4 < self.min_bytes:
            return np.empty(shape, dtype=np.float32)
        with self._lock:
            return self._take(n, shape)

    def _take(self, n: int, shape: tuple[int, ...]) -> np.ndarray:
        blocks = self.blocks
        free = None
        for i in range(len(blocks)):
            if sys.getrefcount(blocks[i]) == self._free_refs:  # no view of it is alive
                if blocks[i].size == n:
                    return blocks[i].reshape(shape)
                free = i
        block = np.empty(n, dtype=np.float32)
        if len(blocks) < self.limit:
            blocks.append(block)
        elif free is not None:  # full: replace an unused block of another size
            blocks[free] = block
        return block.reshape(shape)

    def clear(self) -> None:
        with self._lock:
            self.blocks.clear()


_attention_buffers = _BufferPool()


def clear_attention_workspace() -> None:
    """Frees the attention kernel buffers kept for reuse between steps."""
    _attention_state["spares"].clear()
    _attention_buffers.clear()


def get_attention_flash_threshold() -> int:
    """Key length from which attention takes the tiled flash path (below it: plain GEMMs)."""
    return _attention_state["flash_threshold"]


def set_attention_flash_threshold(keys: int) -> int:
    """Sets the key length from which attention uses the flash path; returns the previous value.

    The plain path keeps the ``(B, H, Tq, Tk)`` probabilities for the backward; the flash
    path keeps only one logsumexp per query row and recomputes the probabilities tile by
    tile (forward tiles of 64 queries x 256 keys, backward 128 queries x 64 keys). ``0``
    forces flash, a huge value plain.
    """
    if not isinstance(keys, int) or isinstance(keys, bool) or keys < 0:
        raise ValueError(f"keys: expected a non-negative int, got {keys!r}")
    previous = _attention_state["flash_threshold"]
    _attention_state["flash_threshold"] = keys
    return previous


def attention_path(key_length: int) -> str:
    """``"flash"`` or ``"plain"``: the kernel path attention over ``key_length`` keys takes.

    Both paths skip the tiles above the diagonal for causal attention, which switches at
    the same length. Measured on one core at B*H = 32, D = 64, plain is 5-15% faster up
    to 1024 keys (its backward recomputes nothing), but keeps B*H*Tq*Tk probabilities
    (128 MiB there, 512 MiB at 2048); from 1024 keys on, flash, whose memory stays linear.
    """
    return "flash" if key_length >= _attention_state["flash_threshold"] else "plain"


def _head_view(arr: np.ndarray, batch: int, seq: int, heads: int, offset: int, width: int) -> np.ndarray:
    """The (B, H, T, Dh) strided view of columns [offset, offset + H*Dh) of a (B, T, width) array."""
    dh = (arr.shape[-1] if width == 0 else width) // heads
    base = arr.reshape(batch, seq, -1)[:, :, offset : offset + heads * dh]
    # splitting the contiguous last axis is a view (the kernels write outputs through it);
    # reshape and transpose cost a microsecond, as_strided tens (it is called 8 times per block)
    return base.reshape(batch, seq, heads, dh).transpose(0, 2, 1, 3)


def _additive_mask(
    mask: Any, shape: tuple[int, int, int, int], name: str, true_means_keep: bool
) -> np.ndarray:
    """A boolean or float mask as an additive float32 view broadcast to (B, H, Tq, Tk)."""
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype == np.bool_:
        keep = m if true_means_keep else ~m
        m = np.where(keep, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
    elif m.dtype.kind == "f":
        m = m.astype(np.float32, copy=False)
    else:
        raise TypeError(f"{name}: expected a bool or float mask, got dtype {m.dtype}")
    if m.ndim > 4:
        raise ValueError(
            f"{name}: expected at most 4 dimensions broadcastable to {shape}, got shape {m.shape}"
        )
    try:
        np.broadcast_shapes(m.shape, shape)
        if np.broadcast_shapes(m.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"{name}: shape {m.shape} does not broadcast to (B, H, Tq, Tk) = {shape}") from None
    if m.shape[-1] != shape[-1] or not m.flags.c_contiguous:
        m = np.ascontiguousarray(np.broadcast_to(m, (*m.shape[:-1], shape[-1])))
    return np.broadcast_to(m, shape)


def _attention_grad_buffers(sources: tuple[Tensor, ...]) -> tuple[tuple, tuple[bool, ...]]:
    """Gradient buffers of the attention's sources and whether each is fresh.

    A leaf's existing ``.grad`` is added into; a leaf without one and an intermediate get
    an uninitialised buffer that the kernel overwrites (zeroing each head's rows in its
    parallel task instead of a single-threaded ``np.zeros`` here). A tensor passed twice
    (key is value) takes the zeroed path throughout.
    """
    if len({id(s) for s in sources}) != len(sources):
        return tuple(grad_buffer(s) for s in sources), (False,) * len(sources)
    buffers: list[np.ndarray | None] = []
    fresh: list[bool] = []
    for s in sources:
        if not s.requires_grad:
            buffers.append(None)
            fresh.append(False)
        elif s.is_leaf and s.grad is not None:
            buffers.append(s.grad)
            fresh.append(False)
        else:
            data = s.data
            contiguous = data.dtype == np.float32 and data.flags.c_contiguous
            buf = _attention_buffers.empty(data.shape) if contiguous else np.empty_like(data)
            if s.is_leaf:
                s.grad = buf
            buffers.append(buf)
            fresh.append(True)
    return tuple(buffers), tuple(fresh)


# Which source holds the (q, k, v) views, by number of sources: one packed [q | k | v]
# projection, query and packed [k | v], or three tensors.
_VIEW_SOURCES = {1: (0, 0, 0), 2: (0, 1, 1), 3: (0, 1, 2)}


def _attention_node(
    sources: tuple[Tensor, ...],
    views: Any,
    out: np.ndarray,
    out_view: Any,
    mask: np.ndarray | None,
    key_bias: np.ndarray | None,
    scale: float,
    causal: bool,
    dropout_p: float,
    need_weights: bool,
) -> tuple[Tensor, np.ndarray | None]:
    """One tape node around ``_core.attention_forward/backward``.

    ``views(arrays)`` maps the sources' arrays (or None entries) to the (q, k, v) views;
    ``out_view(arr)`` maps an array shaped like ``out`` to its (B, H, Tq, Dv) view.
    """
    q, k, v = views(tuple(s.data for s in sources))
    flash = attention_path(k.shape[2]) == "flash"
    seed = int(generator().integers(0, 2**63 - 1)) if dropout_p > 0.0 else 0
    spares: list = _attention_state["spares"]
    reuse = _take_spare(spares)
    weights, cache = _core.attention_forward(
        q, k, v, out_view(out), mask, key_bias, float(scale), bool(causal), float(dropout_p), seed, flash,
        need_weights, reuse,
    )

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        g = _grad(g)
        buffers, fresh = _attention_grad_buffers(sources)
        dq, dk, dv = views(buffers)
        overwrite = tuple(fresh[i] for i in _VIEW_SOURCES[len(sources)]) if any(fresh) else None
        _core.attention_backward(cache, out_view(g), dq, dk, dv, overwrite)
        _keep_spare(spares, cache)
        return tuple(returned_grad(s, b) for s, b in zip(sources, buffers, strict=True))

    result = make_result(out, sources, backward)
    if not result.requires_grad:
        _keep_spare(spares, cache, _core.attention_release)
    return result, weights


def _check_attention_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.ndim not in (3, 4) or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(
            "scaled_dot_product_attention: expected query, key, value of shapes (B, H, Tq, D), "
            "(B, H, Tk, D), "
            f"(B, H, Tk, Dv) (or without H), got {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape[:-2] != q.shape[:-2] or v.shape[:-2] != q.shape[:-2]:
        raise ValueError(
            f"scaled_dot_product_attention: batch/head dimensions differ: query {q.shape}, key {k.shape}, "
            f"value {v.shape}"
        )
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: key's feature size {k.shape[-1]} differs from query's "
            f"{q.shape[-1]} "
            f"(query {q.shape}, key {k.shape})"
        )
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: value has {v.shape[-2]} positions, key has {k.shape[-2]} "
            f"(key {k.shape}, value {v.shape})"
        )


def scaled_dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """``softmax(query @ key^T * scale + mask) @ value`` with ``torch.nn.functional``'s semantics.

    Shapes: query (B, H, Tq, D), key (B, H, Tk, D), value (B, H, Tk, Dv) -> (B, H, Tq, Dv);
    3-d inputs (B, T, D) are taken as one head. ``attn_mask`` broadcasts to (B, H, Tq, Tk):
    boolean True means the key takes part (as torch), a float mask is added to the scores
    (it is a constant: no gradient flows to it). ``is_causal`` lets query i see keys
    j <= i (top-left aligned, as torch) and may not be combined with ``attn_mask``.
    ``scale`` defaults to ``1 / sqrt(D)``. ``dropout_p`` drops weights (always, as torch's
    functional form; pass 0 in evaluation), with a mask from the seeded generator.

    A query row whose keys are all masked gives zeros and a zero gradient (torch's math
    path), never NaN. Keys at least :func:`get_attention_flash_threshold` long use the
    tiled flash kernel (memory linear in the sequence), shorter ones plain GEMMs.
    One tape node.
    """
    q, k, v = _float_input(query, "query"), _float_input(key, "key"), _float_input(value, "value")
    _check_attention_inputs(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a probability in [0, 1), got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    three = q.ndim == 3
    B, H = (q.shape[0], 1) if three else q.shape[:2]
    Tq, D = q.shape[-2:]
    Tk, Dv = v.shape[-2:]
    scale = 1.0 / float(np.sqrt(D)) if scale is None else float(scale)
    mask = None if attn_mask is None else _additive_mask(attn_mask, (B, H, Tq, Tk), "attn_mask", True)
    def shape4(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a.reshape(B, H, a.shape[-2], a.shape[-1])

    out = _attention_buffers.empty((*q.shape[:-1], Dv))
    result, _ = _attention_node(
        (q, k, v), lambda arrs: tuple(shape4(a) for a in arrs), out, shape4, mask, None, scale, is_causal,
        dropout_p, False,
    )
    return result


def multi_head_attention_core(
    query: Tensor,
    key: Tensor | None,
    value: Tensor | None,
    num_heads: int,
    attn_mask: np.ndarray | None = None,
    key_padding_bias: np.ndarray | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, np.ndarray | None]:
    """Attention of already projected, batch-first heads, without splitting copies.

    Layouts (E = num_heads * Dh): ``key`` and ``value`` None: ``query`` is the packed
    (B, T, 3E) self-attention projection [q | k | v]; only ``value`` None: ``query``
    (B, Tq, E) and ``key`` the packed (B, Tk, 2E) [k | v]; otherwise query (B, Tq, E),
    key and value (B, Tk, E). ``attn_mask`` is an additive float32 array broadcast to
    (B, H, Tq, Tk), ``key_padding_bias`` an additive (B, Tk) array. Returns the output
    (B, Tq, E) with heads merged (one tape node) and, with ``need_weights``, the weights
    (B, H, Tq, Tk) after dropout as an ndarray (no gradient flows through them).
    """
    H = num_heads
    if key is None and value is None:
        B, T, W = query.shape
        Tq = Tk = T
        E = W // 3
        sources: tuple[Tensor, ...] = (query,)

        def views(arrs: tuple) -> tuple:
            a = arrs[0]
            if a is None:
                return None, None, None
            return tuple(_head_view(a, B, T, H, i * E, E) for i in range(3))
    elif value is None:
        assert key is not None
        B, Tq, E = query.shape
        Tk = key.shape[1]
        sources = (query, key)

        def views(arrs: tuple) -> tuple:
            qa, kva = arrs
            q = None if qa is None else _head_view(qa, B, Tq, H, 0, E)
            if kva is None:
                return q, None, None
            return q, _head_view(kva, B, Tk, H, 0, E), _head_view(kva, B, Tk, H, E, E)
    else:
        assert key is not None
        B, Tq, E = query.shape
        Tk = key.shape[1]
        sources = (query, key, value)

        def views(arrs: tuple) -> tuple:
            seqs = (Tq, Tk, Tk)
            return tuple(None if a is None else _head_view(a, B, t, H, 0, E) for a, t in zip(arrs, seqs))

    mask = None if attn_mask is None else np.broadcast_to(attn_mask, (B, H, Tq, Tk))
    out = _attention_buffers.empty((B, Tq, E))
    scale = 1.0 / float(np.sqrt(E // H))
    return _attention_node(
        sources, views, out, lambda a: _head_view(a, B, Tq, H, 0, E), mask, key_padding_bias, scale,
        is_causal, dropout_p, need_weights,
    )


def kv_cache_attention(
    qkv: Any, key_cache: np.ndarray, value_cache: np.ndarray, pos: int, num_heads: int
) -> np.ndarray:
    """Causal self-attention of new tokens against a key/value cache (generation; no gradient).

    ``qkv`` (B, Tn, 3E) is the packed [q | k | v] projection of the Tn new tokens;
    ``key_cache`` and ``value_cache`` (B, H, Tmax, E/H) hold the keys and values of the
    ``pos`` earlier positions. The new keys and values are written into the caches at
    [pos, pos + Tn), then new token i attends over positions 0 .. pos + i. One C++ call
    (``_core.kv_cache_attention``): the prefix is read from the cache, never recomputed.
    Returns the output (B, Tn, E) with heads merged.
    """
    a = qkv.data if isinstance(qkv, Tensor) else np.asarray(qkv)
    if a.dtype != np.float32:
        raise TypeError(f"qkv: expected float32, got {a.dtype}")
    if a.ndim != 3 or a.shape[2] % (3 * num_heads):
        raise ValueError("qkv: expected shape (batch, new tokens, 3 * embed_dim) with embed_dim divisible "
                         f"by "
                         f"num_heads={num_heads}, got {a.shape}")
    a = np.ascontiguousarray(a)
    B, Tn, W = a.shape
    E = W // 3
    q, k, v = (_head_view(a, B, Tn, num_heads, i * E, E) for i in range(3))
    out = np.empty((B, Tn, E), dtype=np.float32)
    scale = 1.0 / float(np.sqrt(E // num_heads))
    out_heads = _head_view(out, B, Tn, num_heads, 0, E)
    _core.kv_cache_attention(q, k, v, key_cache, value_cache, int(pos), out_heads,
                             scale)
    return out
