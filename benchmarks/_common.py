"""Shared helpers for benchmark scripts: the machine, markdown tables for printing, and raw
results appended as JSON lines under ``benchmarks/results/`` (one ``<name>.jsonl`` per script).

BENCHMARKS.md is curated by hand from those files; no script writes it."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
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

# The command line as started, relative to the repository: read at import, before a script
# changes its working directory.
_SCRIPT = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""


def command_line() -> str:
    script = os.path.relpath(_SCRIPT, ROOT) if _SCRIPT else "python"
    return "python " + " ".join([script, *sys.argv[1:]])


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: NumPy and torch numbers and arrays as Python numbers and
    lists, NaN and infinities as null, paths and anything else as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # a NumPy scalar or array, a torch tensor
        return plain(value.tolist())
    return str(value)


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
            fh.write(json.dumps(plain({**stamp, **row}), ensure_ascii=False) + "\n")
    return path


def record_results(
    name: str, rows: list[dict[str, object]], *, append: bool = True, **context: object
) -> Path | None:
    """:func:`append_results` unless ``append`` is false (a script's ``--no-append``: print
    only), and say where the rows went."""
    if not append or not rows:
        return None
    path = append_results(name, rows, **context)
    print(f"{len(rows)} result row(s) appended to {os.path.relpath(path, ROOT)}", flush=True)
    return path
