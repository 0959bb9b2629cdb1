"""Time `chronorec demo` end to end (target: ≤ 3 minutes on this 2-core machine) and record the
metrics table it prints.

Usage: python benchmarks/demo.py [--quick] [--no-append]

Prints the timing and the demo's metrics table; one row (the timing) and one row per scorer of the
demo's table are appended to ``benchmarks/results/demo.jsonl`` unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402


def metric_rows(lines: list[str]) -> list[dict[str, object]]:
    """The demo's printed metrics table (``| scorer | ndcg@10 | ... |``) as one dict a scorer."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    cells = [row for row in cells if row and not set(row[0]) <= set("-: ")]
    if not cells:
        return []
    header, out = cells[0], []
    for row in cells[1:]:
        entry: dict[str, object] = {"kind": "metrics", "scorer": row[0]}
        for key, value in zip(header[1:], row[1:], strict=False):
            try:
                entry[key] = float(value)
            except ValueError:
                entry[key] = value
        out.append(entry)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the CI setting")
    ap.add_argument("--no-append", action="store_true", help="print only, do not append")
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
    table_lines = [line for line in lines if line.startswith("|")]
    table = "\n".join(table_lines)
    blend = [line for line in lines if line.startswith("the run keeps the blend")]
    if blend:  # the tuned weights, as the demo prints them
        table += "\n\n" + blend[0]
    target = 60 if args.quick else 180
    setting = "--quick" if args.quick else "default"
    summary = markdown_table(
        ["setting", "wall seconds", "target s", "met", "report.html KB"],
        [[setting, f"{secs:.0f}", target, "yes" if secs <= target else "NO",
          f"{size / 1024:.0f}"]],
    )  # fmt: skip
    print(
        summary + "\n\nTest metrics printed by the demo (Online Retail, last 30 days, full "
        "ranking, repeats rankable):\n\n" + table
    )
    results: list[dict[str, object]] = [
        {"kind": "timing", "setting": setting, "wall_seconds": secs, "target_seconds": target,
         "met": secs <= target, "report_html_kb": size / 1024}
    ]  # fmt: skip
    results += metric_rows(table_lines)
    kept = blend[0].split(" in /")[0] if blend else None  # not the deleted temporary path
    record_results("demo", results, append=not args.no_append, setting=setting, blend=kept)


if __name__ == "__main__":
    main()
