"""Training throughput: one process (1 thread, all threads) against torchrun processes.

Trains the same config for ``--epochs`` epochs with ``chronorec train`` three or four ways and
reads the tokens/s it reports (training steps only; validation is not timed):

- one process, one thread;
- one process, ``--procs`` threads (intra-op parallelism, the default);
- ``torchrun --nproc_per_node PROCS``, one thread each (data parallel, gradients averaged by
  DistributedDataParallel over gloo): each step is ``PROCS`` batches, the effective batch
  ``PROCS × train.batch_size``;
- the same with ``train.batch_size`` divided by ``PROCS``: the effective batch of one process.

Default config: the classic SASRec one (transformer, max length 200, d = 64, 2 blocks, 2 heads,
full cross-entropy, item ids).

Usage:
  python benchmarks/ddp_speed.py DIR [--procs 2] [--epochs 2] [--set key=value ...] [--no-append]

Prints the table; its rows are appended to ``benchmarks/results/ddp_speed.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

SASREC = ["model.name=\"transformer\"", "model.item_repr=\"id\"", "model.max_len=200",
          "model.d_model=64", "model.n_layers=2", "model.n_heads=2", "train.loss=\"ce\"",
          "train.all_windows=false"]  # fmt: skip


def train(data: str, sets: list[str], procs: int, threads: int) -> dict:
    """One `chronorec train` (under torchrun when procs > 1) -> its JSON summary."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [data, "--out", str(Path(tmp) / "run"), "--no-progress", "--json"]
        for s in [*sets, f"train.threads={threads}"]:
            args += ["--set", s]
        launcher = [sys.executable, "-m", "chronorec.cli", "train"]
        if procs > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", str(procs), "-m", "chronorec.cli", "train"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
        return json.loads(line)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="prepared dataset directory")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()
    base = [*SASREC, f"train.max_epochs={args.epochs}", "train.patience=1000", *args.sets]
    n, b = args.procs, args.batch_size
    ways = [
        ("1 process × 1 thread", 1, 1, b),
        (f"1 process × {n} threads", 1, n, b),
        (f"{n} processes × 1 thread (torchrun), batch {b} each", n, 1, b),
        (f"{n} processes × 1 thread (torchrun), batch {b // n} each", n, 1, b // n),
    ]
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    first = None
    for label, procs, threads, batch in ways:
        out = train(args.data, [*base, f"train.batch_size={batch}"], procs, threads)
        rate = float(out["tokens_per_s"])
        first = first or rate
        valid = out["valid"].get("ndcg@10", float("nan"))
        rows.append([label, procs * batch, f"{rate:,.0f}", f"{rate / first:.2f}×",
                     out["epochs"], f"{valid:.4f}"])  # fmt: skip
        results.append({"training": label, "processes": procs, "threads": threads,
                        "batch_size": batch, "effective_batch": procs * batch,
                        "tokens_per_s": rate, "vs_1_thread": rate / first,
                        "epochs": out["epochs"], "valid_ndcg@10": valid})  # fmt: skip
        print(rows[-1], flush=True)
    header = ["training", "effective batch", "tokens/s", "vs 1 thread", "epochs",
              "valid ndcg@10 after them"]  # fmt: skip
    table = markdown_table(header, rows)
    print(table + f"\n\nconfig: {' '.join(base)}")
    record_results("ddp_speed", results, append=not args.no_append, data=args.data, config=base)


if __name__ == "__main__":
    main()
