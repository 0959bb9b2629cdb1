"""Data-parallel training under torchrun: two real processes (gloo, CPU) train one model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TINY = ["--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "model.max_len=8",
        "--set", "model.dropout=0.0", "--set", "train.lr=1e-2", "--set", "train.batch_size=16",
        "--set", "train.eval_every=10", "--no-progress"]  # fmt: skip


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def prepared(successor, tmp_path: Path) -> Path:
    return successor.save(tmp_path / "data")


def test_two_processes_train_one_run_that_learns_the_pattern(prepared: Path, tmp_path: Path):
    run = tmp_path / "run"
    done = torchrun("-m", "chronorec.cli", "train", str(prepared), "--out", str(run), "--model",
                    "gru", "--set", "train.max_epochs=30", "--set", "train.refit=true", "--json",
                    *TINY)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 reports, once
    summary = json.loads(lines[0])
    assert summary["valid"]["hr@1"] == 1.0 and summary["epochs"] == 30
    assert summary["refit"]["epochs"] == summary["best_epoch"]
    for name in ("model.safetensors", "refit.safetensors", "config.json", "metrics.json"):
        assert (run / name).is_file()
    # the run is an ordinary run: it loads and recommends the next item of the pattern
    from chronorec.recommender import Recommender

    rec = Recommender.load(run)
    assert rec.recommend_histories([["i4", "i5"]], k=1)[0][0][0] == "i6"


def test_every_process_holds_the_same_weights_and_they_stop_together(
    prepared: Path, tmp_path: Path
):
    script = tmp_path / "check.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        import torch
        import torch.distributed as dist
        from chronorec.config import ModelConfig, RunConfig, TrainConfig
        from chronorec.recommender import Recommender
        from chronorec.training import distributed

        distributed.start_from_env()
        max_minutes = float(sys.argv[1]) or None
        cfg = RunConfig(
            model=ModelConfig(name="transformer", d_model=16, n_layers=1, n_heads=2, max_len=8),
            train=TrainConfig(max_epochs=5, batch_size=8, lr=1e-2, threads=1,
                              max_minutes=max_minutes),
        )
        rec = Recommender(cfg).fit({str(prepared)!r}, progress=False)
        flat = torch.cat([p.detach().reshape(-1) for p in rec.model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        if dist.get_rank() == 0:
            same = all(torch.equal(gathered[0], g) for g in gathered)
            print("RESULT", same, rec.result.epochs, rec.result.stopped)
        distributed.stop()
    """)
    )
    done = torchrun(str(script), "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT True 5 max_epochs" in done.stdout
    # a wall-time budget spent mid-epoch stops both processes at the same step, no hang
    done = torchrun(str(script), "0.00001")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT True 1 max_minutes" in done.stdout
