"""Generated vector chains whose next vector follows a known rule (for tests and demos)."""

from __future__ import annotations

import numpy as np

from .vector_chains import VectorChains

RULES = ("rotation", "second_order")


def _orthogonal(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def synthetic_chains(
    chains: int = 200,
    length: int = 40,
    dim: int = 32,
    rule: str = "rotation",
    noise: float = 0.1,
    seed: int = 0,
) -> VectorChains:
    """Chains of unit vectors where the next vector follows ``rule`` plus Gaussian noise.

    * ``"rotation"``: ``x[t+1] = normalize(R x[t] + noise)`` for one fixed random rotation R.
    * ``"second_order"``: ``x[t+1] = normalize(R x[t] + S x[t-1] + noise)``, which needs
      two steps of memory (copy-last and a linear map of the last vector fall short).

    Lengths vary between ``length // 2`` and ``length``. Copying the last vector scores
    poorly on both rules; a model that learns the rule retrieves the next vector.
    """
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
    if chains < 1 or length < 4 or dim < 2:
        raise ValueError("synthetic_chains: needs chains >= 1, length >= 4 and dim >= 2")
    rng = np.random.default_rng(seed)
    rot, second = _orthogonal(dim, rng), _orthogonal(dim, rng)
    out = []
    for _ in range(chains):
        n = int(rng.integers(length // 2, length + 1))
        x = np.zeros((n, dim))
        x[0] = rng.standard_normal(dim)
        x[1] = rng.standard_normal(dim)
        x[:2] /= np.linalg.norm(x[:2], axis=1, keepdims=True)
        for t in range(1, n - 1):
            nxt = rot @ x[t] + (second @ x[t - 1] if rule == "second_order" else 0.0)
            nxt = nxt + noise * rng.standard_normal(dim) / np.sqrt(dim)
            x[t + 1] = nxt / np.linalg.norm(nxt)
        out.append(x.astype(np.float32))
    lengths = [len(c) for c in out]
    return VectorChains(np.concatenate(out), np.concatenate([[0], np.cumsum(lengths)]),
                        [f"synthetic {i}" for i in range(chains)], f"synthetic {rule} chains")
