"""Time `chronorec prepare` on ML-1M, Online Retail and a synthetic 10M-event CSV log.

Each run is a separate `chronorec prepare` process; wall seconds and that process's peak RSS are
reported. Targets (issue 2): ML-1M ≤ 5 s, Online Retail ≤ 5 s, synthetic 10M events ≤ 60 s with
≤ 3 GB peak RSS. Also times reloading the prepared ML-1M directory.

Usage: python benchmarks/prepare.py [--events 10000000] [--skip-synthetic] [--no-append]

Prints the table; its rows are appended to ``benchmarks/results/prepare.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, markdown_table, record_results  # noqa: E402


def synthetic_csv(path: Path, n_events: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = max(1, n_events // 50), max(1, n_events // 100)
    behaviours = np.array(["view", "click", "cart", "buy"])
    pl.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n_events),
            "item_id": rng.zipf(1.2, n_events) % n_items,
            "timestamp": rng.integers(1_600_000_000, 1_700_000_000, n_events),
            "behaviour": behaviours[rng.choice(4, n_events, p=[0.8, 0.1, 0.07, 0.03])],
        }
    ).write_csv(path)


RUN = (
    "import resource, sys; from chronorec.cli import main; rc = main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def run_prepare(args: list[str], out: Path) -> tuple[float, float, str]:
    """Run one prepare in a fresh process; returns (wall seconds, that process's peak RSS GB)."""
    cmd = [sys.executable, "-c", RUN, "prepare", *args, "--out", str(out), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    rss_gb = int(proc.stderr.strip().splitlines()[-1]) / 2**20  # ru_maxrss is in KiB on Linux
    return secs, rss_gb, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000, help="synthetic log size")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = ap.parse_args()
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cases = [
            (
                "ML-1M (sasrec-txt + item text)",
                5.0,
                [
                    "--format",
                    "sasrec-txt",
                    "--events",
                    str(DATASETS / "ml-1m/ml-1m.txt"),
                    "--items",
                    str(DATASETS / "ml-1m/item_text.tsv"),
                ],
            ),
            (
                "Online Retail",
                5.0,
                [
                    "--format",
                    "online-retail",
                    "--events",
                    str(DATASETS / "online-retail/online_retail.parquet"),
                ],
            ),
        ]
        if not args.skip_synthetic:
            csv = tmp / "synthetic.csv"
            t0 = time.perf_counter()
            synthetic_csv(csv, args.events)
            print(
                f"wrote {csv} ({csv.stat().st_size / 1e6:.0f} MB) in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            cases.append(
                (
                    f"synthetic {args.events:,} events (csv)",
                    60.0,
                    ["--format", "csv", "--events", str(csv), "--behaviour-col", "behaviour"],
                )
            )
        for i, (name, target, cli_args) in enumerate(cases):
            secs, rss, out = run_prepare(cli_args, tmp / f"out{i}")
            print(name, out)
            rows.append(
                [
                    name,
                    f"{secs:.2f}",
                    f"{target:.0f}",
                    "yes" if secs <= target else "NO",
                    f"{rss:.2f}",
                ]
            )
            results.append({"input": name, "seconds": secs, "target_seconds": target,
                            "met": secs <= target, "peak_rss_gb": rss})  # fmt: skip
        # reload speed of the prepared ML-1M
        code = (
            "import time, chronorec; t=time.perf_counter(); "
            f"chronorec.load_prepared({str(tmp / 'out0')!r}); "
            "print(time.perf_counter()-t)"
        )
        reload = float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        rows.append(
            [
                "reload prepared ML-1M (load_prepared)",
                f"{reload:.3f}",
                "1",
                "yes" if reload < 1 else "NO",
                "-",
            ]
        )
        results.append({"input": "reload prepared ML-1M (load_prepared)", "seconds": reload,
                        "target_seconds": 1.0, "met": reload < 1, "peak_rss_gb": None})  # fmt: skip
    table = markdown_table(["input", "seconds", "target s", "met", "peak RSS GB"], rows)
    print(
        table + "\n\nEach run is a fresh `python -m chronorec.cli prepare` process "
        "(interpreter start-up included)."
    )
    record_results("prepare", results, append=not args.no_append)


if __name__ == "__main__":
    main()
