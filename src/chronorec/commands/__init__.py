"""CLI subcommands; each module registers itself with ``add_parser(subparsers)``."""

from __future__ import annotations

from pathlib import Path

from chronorec.errors import ChronorecError


def check_out_dir(
    out: Path, force: bool, run: Path | None = None, what: str = "run directory"
) -> None:
    """Refuse to write into ``out`` when it holds something (unless ``force``) or is ``run``,
    the run the command reads; ``what`` names ``out`` in the message."""
    if run is not None and out.resolve() == run.resolve():
        raise ChronorecError(f"{out}: --out must be a new directory, not the run itself")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ChronorecError(f"{out}: {what} exists (use --force to overwrite)")
