"""Shared helpers for benchmark scripts: the machine, and appending raw results as JSON lines
under ``benchmarks/results/`` (BENCHMARKS.md is curated from them)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            text=True,
            capture_output=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# The code a benchmark measures is the checkout it started from: read once at import, so a long
# run does not report a commit made while it ran.
STARTED_AT_REVISION = git_revision()


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def append_report(title: str, table: str, notes: str = "") -> None:
    """Append one dated section to BENCHMARKS.md (created with a heading if missing)."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    section = (
        f"\n## {title}\n\n"
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- machine: {machine()}\n"
        f"- command: `{command}`\n"
        f"- git revision: {STARTED_AT_REVISION}\n\n"
        f"{table}\n" + (f"\n{notes}\n" if notes else "")
    )
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text("# Benchmarks\n\nAppended by the scripts in `benchmarks/`.\n")
    with BENCHMARKS_MD.open("a") as fh:
        fh.write(section)
    print(section)


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def append_results(name: str, rows: list[dict[str, object]], **context: object) -> Path:
    """Append ``rows`` to ``benchmarks/results/<name>.jsonl``, one JSON object a line, each
    with the date, machine, command and git revision (and ``context``) it was measured with."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    stamp = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "command": command_line(),
        "revision": STARTED_AT_REVISION,
        **context,
    }
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps({**stamp, **row}, default=str) + "\n")
    return path
