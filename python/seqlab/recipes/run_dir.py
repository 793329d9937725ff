"""Run directories of the recipes."""

from __future__ import annotations

import time
from pathlib import Path


def new_run_dir(out: str | Path | None, kind: str) -> Path:
    """``out`` as given, or a new ``runs/<kind>-<YYYYmmdd-HHMMSS>`` (suffixed when taken)."""
    if out is not None:
        return Path(out)
    from ..distributed import broadcast_object, is_main

    if not is_main():  # every rank of a data-parallel run uses rank 0's directory
        return Path(broadcast_object(None))
    base = Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return Path(broadcast_object(str(path)))
