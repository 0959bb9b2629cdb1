"""Typed exceptions. The CLI turns these into a one-line message and exit code 2."""

from __future__ import annotations


class ChronorecError(Exception):
    """Base class for every error caused by user input or configuration."""


class DataError(ChronorecError):
    """Bad input data: names the file, and where known the line and column."""

    def __init__(
        self,
        message: str,
        *,
        path: object | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line:,}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ConfigError(ChronorecError):
    """An unknown key, a bad value or a missing resource in a configuration."""
