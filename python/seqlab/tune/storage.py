"""Where a study lives: Optuna's storages, chosen from what the user gives.

* nothing: in memory, for one process;
* a SQLite file (``*.db``, ``*.sqlite``, ``*.sqlite3``, or ``sqlite:///...``): one process
  at a time, as Optuna's documentation advises (SQLite locks the whole file);
* any other file path (``study.journal``, ``study.log``): a journal file
  (``JournalFileBackend``), for many processes on one host (or a shared filesystem with
  working file locks); it has no heartbeat, so the trial of a killed worker stays RUNNING;
* a database URL (``postgresql://user@host:5432/db``, ``mysql://...``): ``RDBStorage``
  with a heartbeat, for workers on many hosts. A worker writes a heartbeat every
  ``heartbeat`` seconds while it runs a trial; when a worker dies (killed, host lost), the
  next worker to start a trial after ``2 * heartbeat`` seconds of silence marks the dead
  worker's trial FAIL, and the study goes on.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from pathlib import Path
from typing import Any

from .optional import require_optuna

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _postgres_url(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed (psycopg 3, else psycopg2) when
    it names none: SQLAlchemy's default driver changed between versions."""
    scheme, rest = url.split("://", 1)
    if "+" in scheme:
        return url
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise ImportError(
        "a PostgreSQL storage needs a driver: pip install 'seqlab[mpi]' (psycopg) or psycopg2-binary"
    )


def open_storage(storage: Any, heartbeat: float = 60.0) -> Any:
    """An Optuna storage for ``storage`` (None, a path, a URL or a storage object).

    Args:
        storage: see the module docstring; an Optuna storage object is returned as is.
        heartbeat: seconds between a worker's heartbeats on a database URL (a dead
            worker's trial is failed after twice this).

    Raises:
        ValueError: ``heartbeat`` is not positive, or the URL's scheme is not a database.
    """
    if storage is None or not isinstance(storage, (str, Path)):
        return storage
    if not heartbeat > 0:
        raise ValueError(f"heartbeat: expected seconds > 0, got {heartbeat}")
    optuna = require_optuna()
    text = str(storage)
    if "://" in text:
        scheme = text.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme == "sqlite":
            return text
        if scheme not in ("postgresql", "postgres", "mysql", "oracle", "mssql"):
            raise ValueError(
                f"storage: {text!r} is not a database URL (postgresql://, mysql://, sqlite:///) "
                "nor a file path"
            )
        if scheme in ("postgresql", "postgres"):
            text = _postgres_url(text)
        from sqlalchemy.exc import IntegrityError

        for attempt in range(3):
            try:
                with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna's terms
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        text,
                        heartbeat_interval=max(1, round(heartbeat)),
                        grace_period=max(2, round(2 * heartbeat)),
                        engine_kwargs={"pool_pre_ping": True},
                    )
            except IntegrityError:  # another worker created the tables at the same moment
                if attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))
    path = Path(text).resolve()
    if path.suffix.lower() in SQLITE_SUFFIXES:
        return f"sqlite:///{path}"
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
