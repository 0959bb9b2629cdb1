"""Progress output that suits where it goes: bars on a terminal, nothing but the per-epoch and
per-stage lines in a log file (thousands of carriage-return updates make a log unreadable)."""

from __future__ import annotations

import sys


def bars(progress: bool) -> bool:
    """Whether to draw progress bars: asked for, and stderr is a terminal."""
    return progress and sys.stderr.isatty()
