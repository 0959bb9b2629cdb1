"""Time `chronorec demo` end to end (target: ≤ 3 minutes on this 2-core machine) and record the
metrics table it prints.

Usage: python benchmarks/demo.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_report, markdown_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the CI setting")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "chronorec.cli", "demo", "--out", tmp]
        if args.quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        report = Path(tmp) / "report.html"
        size = report.stat().st_size
    lines = proc.stdout.splitlines()
    table = "\n".join(line for line in lines if line.startswith("|"))
    blend = [line for line in lines if line.startswith("the run keeps the blend")]
    if blend:  # the tuned weights, as the demo prints them
        table += "\n\n" + blend[0]
    target = 60 if args.quick else 180
    summary = markdown_table(
        ["setting", "wall seconds", "target s", "met", "report.html KB"],
        [["--quick" if args.quick else "default", f"{secs:.0f}", target,
          "yes" if secs <= target else "NO", f"{size / 1024:.0f}"]],
    )  # fmt: skip
    append_report(
        "demo" + (" --quick" if args.quick else ""),
        summary + "\n\nTest metrics printed by the demo (Online Retail, last 30 days, full "
        "ranking, repeats rankable):\n\n" + table,
    )


if __name__ == "__main__":
    main()
