"""Local workers of one shared study: ``seqlab tune --workers N`` starts N processes.

Each worker is the same ``seqlab tune`` command with ``--workers 1`` and its own
``--worker-index`` (its sampler's seed is ``seed + index``, so workers do not draw the
same points); they meet in the study's storage. ``trials`` is split between them
(``trials // N`` each, the first ``trials % N`` one more), and ``max_trials`` caps the
study as a whole, counting the trials of workers on other hosts too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def trial_shares(trials: int | None, workers: int) -> list[int | None]:
    """Trials each of ``workers`` runs so that they add ``trials`` in total (None: unbounded)."""
    if workers < 1:
        raise ValueError(f"workers: expected a positive int, got {workers}")
    if trials is None:
        return [None] * workers
    return [trials // workers + (1 if i < trials % workers else 0) for i in range(workers)]


def run_local_workers(worker_argv: Sequence[Sequence[str]], threads: int | None = None) -> None:
    """Runs one ``seqlab`` process per argument list, all at once, and waits for them.

    Raises:
        RuntimeError: a worker failed; names it, its exit status and the end of its stderr.
    """
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    procs = [
        subprocess.Popen([sys.executable, "-m", "seqlab", *argv], env=env, stderr=subprocess.PIPE, text=True)
        for argv in worker_argv
    ]
    failures = []
    for i, p in enumerate(procs):
        _, err = p.communicate()
        sys.stderr.write(err)
        if p.returncode != 0:
            failures.append(f"worker {i} exited with status {p.returncode}: {err.strip()[-500:]}")
    if failures:
        raise RuntimeError("; ".join(failures))
