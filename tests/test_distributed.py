"""Data-parallel training under ``mpirun -np 2`` on this host: the same path as one process
with the summed batch, bit-identical ranks, resume across world sizes, a failing rank
ending the job. The world-of-one API and the shard arithmetic are checked in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab import distributed as dist
from seqlab.data import ArrayBatches, SequenceBatches
from seqlab.distributed import shard_indices

PACKAGE_ROOT = str(Path(seqlab.__file__).resolve().parents[1])

# Open MPI as root, more ranks than cores, shared memory without ptrace (as in containers);
# the settings of mpi4py's own CI.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "true",
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    "OMPI_MCA_btl": "self,vader,tcp",
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}

WORKER = r'''
import hashlib, json, sys
import numpy as np
import seqlab
from seqlab import distributed as dist, nn, optim
from seqlab.train import Callback, Trainer

args = json.loads(sys.argv[1])
seqlab.set_num_threads(1)

class FirstEpoch(Callback):
    first = None
    def on_epoch_begin(self, trainer, epoch):
        if self.first is None:
            self.first = epoch
    def on_step_end(self, trainer, logs):
        if args.get("fail_rank") == dist.rank() and trainer.global_step == 2:
            raise RuntimeError(f"rank {dist.rank()} fails on purpose")

def mse(pred, target):
    diff = pred - target
    return (diff * diff).mean()

rng = np.random.default_rng(0)
x = rng.standard_normal((64, 4)).astype(np.float32)
y = (np.tanh(x @ np.array([1.0, -2.0, 0.5, 1.5])) + 0.5 * x[:, 0])[:, None].astype(np.float32)
seqlab.manual_seed(dist.rank())  # rank 0's initial parameters must reach every rank
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
opt = optim.Adam(model.parameters(), lr=1e-2)
first = FirstEpoch()
trainer = Trainer(model, mse, opt, (x, y), (x[:24], y[:24]), epochs=args["epochs"],
                  batch_size=args["batch"], seed=3, out_dir=args.get("out"), resume=args.get("resume", False),
                  callbacks=[first], progress=False, verbose=False, data_parallel=True)
trainer.fit()
flat = opt.flat.data
sums = dist.all_gather_object(hashlib.sha256(flat.tobytes()).hexdigest())
if dist.is_main():
    np.save(args["result"] + ".npy", flat)
    with open(args["result"] + ".json", "w") as f:
        json.dump({"checksums": sums, "first_epoch": first.first, "world": dist.world_size(),
                   "val_loss": trainer.history[-1]["val_loss"], "steps": trainer.global_step}, f)
'''


COLLECTIVES = r'''
import json, sys
import numpy as np
from seqlab import distributed as dist
from seqlab.serialization import atomic_write_text

r, n = dist.rank(), dist.world_size()
out = {"rank": r, "size": n, "main": dist.is_main()}
for op in ("mean", "sum", "min", "max"):
    out[op] = dist.all_reduce_(np.array([r + 1.0, 10.0 * r], dtype=np.float32), op=op).tolist()
out["bcast"] = dist.broadcast_(np.full(3, r, dtype=np.int64), root=1).tolist()
out["object"] = dist.broadcast_object({"from": r})
dist.barrier()
atomic_write_text(sys.argv[1] + f".rank{r}", "written")  # only rank 0's file appears
print(json.dumps(out))
'''


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **MPI_ENV, "PYTHONPATH": path}


def mpirun_command(ranks: int, *argv: str) -> list[str]:
    """``mpirun -np ranks argv...`` on this host only (skips the test without Open MPI/mpi4py)."""
    pytest.importorskip("mpi4py")
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun not installed (Debian: openmpi-bin)")
    return [mpirun, "-np", str(ranks), "--host", f"localhost:{ranks}", "--bind-to", "none", *argv]


def run_worker(tmp: Path, ranks: int, name: str, **args) -> tuple[np.ndarray, dict]:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    args["result"] = str(tmp / name)
    cmd = [sys.executable, str(script), json.dumps(args)]
    if ranks > 1:
        cmd = mpirun_command(ranks, *cmd)
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return np.load(tmp / f"{name}.npy"), json.loads((tmp / f"{name}.json").read_text())


def test_world_of_one_costs_nothing() -> None:
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    a = np.arange(4, dtype=np.float32)
    assert dist.all_reduce_(a, op="mean") is a and a.tolist() == [0, 1, 2, 3]
    assert dist.broadcast_(a) is a
    dist.barrier()
    assert dist.all_gather_object("x") == ["x"] and dist.broadcast_object(5) == 5
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce_(a, op="prod")
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.all_reduce_(np.zeros((4, 4), np.float32)[:, 0])
    with pytest.raises(TypeError, match="numpy array"):
        dist.broadcast_([1.0])


def test_shards_are_distributed_sampler_cuts() -> None:
    shards = [shard_indices(10, r, 4, seed=7, epoch=2) for r in range(4)]
    assert all(len(s) == 3 for s in shards)  # ceil(10 / 4), padded
    order = np.random.default_rng(9).permutation(10)
    padded = np.concatenate([order, order[:2]])
    for r in range(4):
        np.testing.assert_array_equal(shards[r], padded[r::4])
    assert sorted(set(np.concatenate(shards).tolist())) == list(range(10))  # every sample, somewhere
    np.testing.assert_array_equal(shard_indices(5, 1, 2, 0, 0, shuffle=False), [1, 3, 0])
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        shard_indices(5, 2, 2, 0, 0)


def test_subsets_keep_the_chosen_samples() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    sub = ArrayBatches((x, x[:, 0]), batch_size=2).subset(np.array([4, 0, 2]))
    batches = list(sub.batches(np.random.default_rng(0)))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x[[4, 0, 2]])
    seqs = [np.full((n, 2), n, np.float32) for n in (3, 1, 4, 2)]
    part = SequenceBatches(seqs, batch_size=2, shuffle=False).subset(np.array([2, 3]))
    got = [b for b in part.batches(None)]
    assert sorted(int(i) for b in got for i in b.indices) == [2, 3]  # positions in the full list
    assert sorted(int(n) for b in got for n in b.lengths) == [2, 4]


def test_code_pair_subsets_keep_the_chosen_pairs() -> None:
    from seqlab.data.code.encoding import CodeBatches, build_code_vocabulary, encode_pairs
    from seqlab.data.code.pairs import CodePair

    pairs = [CodePair("bug_fix", "python", "x = a" + " + a" * k + "\n", "y = b" + " - b" * (5 - k) + "\n")
             for k in range(6)]
    encoded = encode_pairs(pairs, build_code_vocabulary(pairs, min_count=1))
    chosen = np.array([3, 0, 5])
    part = CodeBatches(encoded, batch_size=2, shuffle=False).subset(chosen)
    assert isinstance(part, CodeBatches) and part.subset_size == 3
    got = {int(i) for b in part.batches(None) for i in b.src_len}
    assert got == {int(encoded.src_len[i]) for i in chosen}
    (whole,) = list(CodeBatches(encoded.rows(chosen), batch_size=3, shuffle=False).batches(None))
    rows = sorted(zip(whole.src_len.tolist(), whole.tgt_len.tolist()))
    assert sorted((int(a), int(b)) for b in part.batches(None) for a, b in zip(b.src_len, b.tgt_len)) == rows


def test_collectives_under_mpirun(tmp_path: Path) -> None:
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    proc = subprocess.run(mpirun_command(2, sys.executable, str(script), str(tmp_path / "file")),
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                  key=lambda r: r["rank"])
    assert [(r["rank"], r["size"], r["main"]) for r in rows] == [(0, 2, True), (1, 2, False)]
    for r in rows:
        assert r["mean"] == [1.5, 5.0] and r["sum"] == [3.0, 10.0]
        assert r["min"] == [1.0, 0.0] and r["max"] == [2.0, 10.0]
        assert r["bcast"] == [1, 1, 1] and r["object"] == {"from": 0}
    assert (tmp_path / "file.rank0").exists() and not (tmp_path / "file.rank1").exists()


def test_chain_shards_keep_row_indices() -> None:
    from seqlab.data.vector_chains import VectorChains
    from seqlab.data.vector_windows import SegmentBatches

    vectors = np.arange(20, dtype=np.float32)[:, None].repeat(2, axis=1)
    chains = VectorChains(vectors, np.array([0, 5, 12, 20]), ["a", "b", "c"])
    source = SegmentBatches(chains, context=4, segments_per_batch=8, shuffle=False)
    part = source.subset(np.array([2, 0]))
    assert part.subset_size == 2 and part.num_samples == 7 + 4  # windows of chains 2 and 0
    (batch,) = list(part.batches(None))
    assert sorted(batch.targets.tolist()) == [1, 2, 3, 4, *range(13, 20)]  # rows of the full bank
    np.testing.assert_array_equal(batch.inputs[0, 0], vectors[12])  # chain 2 first, as asked


def test_two_ranks_match_one_process_with_twice_the_batch(tmp_path: Path) -> None:
    two, info2 = run_worker(tmp_path, 2, "two", epochs=3, batch=8)
    one, info1 = run_worker(tmp_path, 1, "one", epochs=3, batch=16)
    assert info2["world"] == 2 and info1["world"] == 1
    assert info2["steps"] == info1["steps"] == 12  # 64 samples / 16 per step, 3 epochs
    assert len(set(info2["checksums"])) == 1  # every rank holds the same bits
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    assert abs(info2["val_loss"] - info1["val_loss"]) <= 1e-5 * abs(info1["val_loss"]) + 1e-7


@pytest.mark.slow
def test_checkpoints_resume_across_world_sizes(tmp_path: Path) -> None:
    # two ranks write a run, one process resumes it; one process writes, two ranks resume
    run_worker(tmp_path, 2, "a2", epochs=2, batch=8, out=str(tmp_path / "run_a"))
    run_worker(tmp_path, 1, "b2", epochs=2, batch=16, out=str(tmp_path / "run_b"))
    a4, info_a = run_worker(tmp_path, 1, "a4", epochs=4, batch=16, out=str(tmp_path / "run_a"), resume=True)
    b4, info_b = run_worker(tmp_path, 2, "b4", epochs=4, batch=8, out=str(tmp_path / "run_b"), resume=True)
    assert info_a["first_epoch"] == info_b["first_epoch"] == 3  # both continued, neither restarted
    assert len(set(info_b["checksums"])) == 1  # optimizer state reached rank 1 too
    np.testing.assert_allclose(a4, b4, rtol=1e-5, atol=1e-6)
    metrics = json.loads((tmp_path / "run_b" / "training_metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "run_b" / "checkpoints").iterdir()) == [
        "best.safetensors", "epoch_0003.safetensors", "epoch_0004.safetensors"]


def test_a_failing_rank_ends_the_job(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = json.dumps({"epochs": 50, "batch": 8, "fail_rank": 1, "result": str(tmp_path / "never")})
    cmd = mpirun_command(2, sys.executable, str(script), args)
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr
    assert not (tmp_path / "never.json").exists()


@pytest.mark.slow
def test_forecast_recipe_runs_under_mpirun(tmp_path: Path) -> None:
    cmd = mpirun_command(2, sys.executable, "-m", "seqlab", "forecast", "--model", "tcn", "--preset",
                         "tiny", "--epochs", "2", "--input-size", "24", "--horizon", "6",
                         "--out", str(tmp_path / "fc"))
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("test scores") == 1  # rank 0 alone prints
    scores = json.loads((tmp_path / "fc" / "evaluation.json").read_text())
    assert set(scores["test"]) >= {"model", "last_value"}
    assert all(np.isfinite(v) for v in scores["test"]["model"].values())


def _recipe_under_mpirun(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    cmd = mpirun_command(2, sys.executable, "-m", "seqlab", *argv, "--no-progress")
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("report: ") == 1  # rank 0 alone prints
    assert "on each of 2 ranks (data-parallel)" in proc.stdout
    return proc


@pytest.mark.slow
def test_code_lm_recipe_runs_under_mpirun(tmp_path: Path) -> None:
    from test_code_lm import write_c_repo

    repo = write_c_repo(tmp_path / "repo", n_files=10)
    run = tmp_path / "lm"
    _recipe_under_mpirun(tmp_path, "code-lm", str(repo), "--preset", "tiny", "--epochs", "2",
                         "--out", str(run))
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event log, rank 0's
    history = json.loads((run / "training_metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["val_loss"]) for h in history)
    scores = json.loads((run / "evaluation.json").read_text())
    assert np.isfinite(scores["model"]["bits_per_byte"]) and np.isfinite(scores["ngram"]["bits_per_byte"])
    lm = seqlab.load(run)  # the weights and the tokenizer rank 0 trained and wrote
    assert lm.tokenizer.vocab_size == lm.config.vocab_size
    assert isinstance(lm.generate("int", max_new_tokens=4, temperature=0), str)


@pytest.mark.slow
def test_code_optimizer_recipe_runs_under_mpirun(tmp_path: Path) -> None:
    from test_code_optimizer import MODULES, STDLIB

    sources = tmp_path / "src"
    sources.mkdir()
    for name in MODULES[:6]:
        shutil.copy(STDLIB / name, sources / name)
    run = tmp_path / "code"
    _recipe_under_mpirun(tmp_path, "code", str(sources), "--lang", "python", "--preset", "tiny",
                         "--epochs", "1", "--out", str(run))
    history = json.loads((run / "training_metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1] and np.isfinite(history[0]["val_loss"])
    results = json.loads((run / "evaluation.json").read_text())["results"]
    assert {"bug_fix", "completion"} <= set(results) and results["bug_fix"]["model"]["n"] > 0
    assert type(seqlab.load(run)).__name__ == "CodeOptimizer"


@pytest.mark.slow
def test_poetry_and_vector_recipes_run_under_mpirun(tmp_path: Path) -> None:
    from seqlab.data.synthetic_chains import synthetic_chains
    from test_run_dirs import write_poems

    poems = write_poems(tmp_path / "poems.json", n=40)
    _recipe_under_mpirun(tmp_path, "poetry", str(poems), "--preset", "tiny", "--epochs", "2",
                         "--out", str(tmp_path / "po"))
    chains = synthetic_chains(chains=60, length=20, dim=8, rule="rotation", seed=3)
    np.savez(tmp_path / "chains.npz", vectors=chains.vectors, chain_offsets=chains.offsets)
    _recipe_under_mpirun(tmp_path, "vectors", str(tmp_path / "chains.npz"), "--context", "6",
                         "--hidden", "16", "--epochs", "2", "--out", str(tmp_path / "ve"))
    for run in ("po", "ve"):
        history = json.loads((tmp_path / run / "training_metrics.json").read_text())["history"]
        assert [h["epoch"] for h in history] == [1, 2] and np.isfinite(history[-1]["val_loss"]), run
        assert seqlab.load(tmp_path / run).run_dir == tmp_path / run
