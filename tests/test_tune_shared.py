"""Studies shared by several workers: a journal file on one host (``seqlab tune --workers 2``),
and a real PostgreSQL server started for the tests on 127.0.0.1, where two workers share a
study and a worker killed with SIGKILL in the middle of a trial leaves it FAILED while the
other finishes the study."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import seqlab

optuna = pytest.importorskip("optuna")

from seqlab.tune.storage import open_storage  # noqa: E402
from seqlab.tune.workers import trial_shares  # noqa: E402

PACKAGE_ROOT = str(Path(seqlab.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("series") / "series.csv"
    t = np.arange(400)
    y = np.sin(2 * np.pi * t / 24) + 0.1 * np.sin(t / 7)
    stamps = np.datetime64("2024-01-01T00:00") + t.astype("timedelta64[h]")
    path.write_text("date,y\n" + "".join(f"{d},{v:.5f}\n" for d, v in zip(stamps, y)))
    return path


def tune_argv(csv: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqlab", "tune", str(csv), "--model", "tcn", "--method", "random",
            "--preset", "tiny", "--input-size", "24", "--horizon", "6", "--threads", "1", *extra]


def test_trials_are_split_between_workers() -> None:
    assert trial_shares(7, 3) == [3, 2, 2]
    assert trial_shares(None, 2) == [None, None]
    with pytest.raises(ValueError, match="workers"):
        trial_shares(3, 0)


def test_storages_by_kind(tmp_path: Path) -> None:
    assert open_storage(None) is None
    assert open_storage(tmp_path / "s.db") == f"sqlite:///{tmp_path / 's.db'}"
    assert isinstance(open_storage(tmp_path / "s.journal"), optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match="not a database URL"):
        open_storage("http://example.org/study")
    with pytest.raises(ValueError, match="heartbeat"):
        open_storage(tmp_path / "s.journal", heartbeat=0)


def test_workers_refuse_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqlab.cli import main

    assert main(["tune", "--workers", "2", "--storage", str(tmp_path / "study.db")]) == 1
    assert "SQLite is for one process at a time" in capsys.readouterr().err
    assert not (tmp_path / "study.db").exists()


def test_two_local_workers_share_a_journal_file(series_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    proc = subprocess.run(
        tune_argv(series_csv, "--trials", "4", "--workers", "2", "--epochs", "1", "--out", str(out),
                  "--storage", str(tmp_path / "study.journal"), "--no-refit"),
        env=_env(), capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "trials.json").read_text())
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3]  # every trial recorded once
    assert all(r["state"] == "COMPLETE" for r in rows)
    assert len({r["worker"] for r in rows}) == 2  # both workers ran trials: 2 each
    assert "4 trials (4 complete)" in proc.stdout


# ------------------------------------------------------------------ PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (initdb in a temporary folder, a free
    port), run as the ``postgres`` user when the tests run as root; stopped at the end."""
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.skip("no PostgreSQL driver (pip install 'seqlab[mpi]')")
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    found = shutil.which("initdb") or (installed[-1] if installed else None)
    if found is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian: postgresql)")
    bindir = Path(found).parent
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="seqlab-postgres-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = None
        if runuser is None or user is None:
            shutil.rmtree(folder)
            pytest.skip("running as root without runuser and a postgres user to run PostgreSQL as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, log, port = folder / "data", folder / "server.log", _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    options = f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off"
    started = subprocess.run([*pg_ctl, "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
                             capture_output=True, text=True, timeout=90)
    try:
        if started.returncode != 0:
            pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log.read_text()[-2000:]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgres_study(series_csv: Path, tmp_path: Path, postgres_url: str) -> None:
    out = tmp_path / "tune"
    proc = subprocess.run(
        tune_argv(series_csv, "--trials", "4", "--workers", "2", "--epochs", "1", "--storage", postgres_url,
                  "--study-name", "shared", "--out", str(out), "--no-refit"),
        env=_env(), capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert len({t._trial_id for t in trials}) == 4
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


@pytest.mark.slow
def test_a_killed_worker_fails_its_trial_and_the_other_finishes(
    series_csv: Path, postgres_url: str
) -> None:
    argv = tune_argv(series_csv, "--max-trials", "4", "--epochs", "15", "--storage", postgres_url,
                     "--study-name", "killed", "--heartbeat", "1", "--no-refit")
    optuna.create_study(study_name="killed", storage=postgres_url, direction="minimize")
    victim = subprocess.Popen([*argv, "--worker-index", "0"], env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    study = optuna.load_study(study_name="killed", storage=postgres_url)
    label = f":{victim.pid}"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:  # until the victim is inside a trial
            running = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                       if t.user_attrs.get("worker", "").endswith(label)]
            if running:
                break
            assert victim.poll() is None, victim.stderr.read().decode()[-2000:] if victim.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the first worker never started a trial")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
    killed_trial = running[0].number
    # The next worker fails a silent trial when it starts one after the grace period (2 x the
    # 1 s heartbeat) has passed; a survivor that starts all its trials sooner leaves it RUNNING.
    time.sleep(3.0)
    survivor = subprocess.run([*argv, "--worker-index", "1"], env=_env(), capture_output=True, text=True,
                              timeout=240)
    assert survivor.returncode == 0, survivor.stderr[-3000:]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed_trial].state.name == "FAIL"  # failed by the heartbeat, not left RUNNING
    assert sum(t.state.name == "COMPLETE" for t in trials.values()) == 4  # the study was finished
    assert not any(t.state.name == "RUNNING" for t in trials.values())
