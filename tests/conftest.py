"""Shared fixtures: tiny input files written by the tests themselves, and a synthetic log with a
known answer (item i is always followed by item i + 1, wrapping) for the model and training
tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import polars as pl
import pytest

from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """write(name, text_or_bytes) -> path inside tmp_path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


def successor_dataset(n_users: int = 64, n_items: int = 20, seed: int = 0) -> PreparedDataset:
    """Users of 4 to 12 events starting at a random item; hourly events, random view/buy."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, n_users)
    users = np.repeat(np.arange(1, n_users + 1), lengths)
    pos = np.arange(users.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = (np.repeat(rng.integers(0, n_items, n_users), lengths) + pos) % n_items + 1
    events = pl.DataFrame(
        {
            "user": users.astype(np.int32),
            "item": items.astype(np.int32),
            "timestamp": (100_000 * users + 3600 * pos).astype(np.int64),
            "behaviour": rng.integers(1, 3, users.size).astype(np.int8),
            "value": np.ones(users.size, dtype=np.float32),
            "position": pos.astype(np.int32),
        }
    ).with_columns(pl.col("timestamp").diff().over("user").alias("gap"))
    catalogue = pl.DataFrame(
        {
            "item": np.arange(1, n_items + 1, dtype=np.int32),
            "item_id": [f"i{i}" for i in range(1, n_items + 1)],
            "title": [f"Item number {i}" for i in range(1, n_items + 1)],
        }
    )
    users_frame = pl.DataFrame(
        {"user": np.arange(1, n_users + 1, dtype=np.int32),
         "user_id": [f"u{u}" for u in range(1, n_users + 1)]}
    )  # fmt: skip
    manifest = {
        "format_version": FORMAT_VERSION,
        "format": "synthetic",
        "behaviours": ["view", "buy"],
        "has_timestamps": True,
        "text_columns": ["title"],
        "counts": {"users": n_users, "items": n_items, "events": users.size},
    }
    return PreparedDataset(events=events, items=catalogue, users=users_frame, manifest=manifest)


def _random_text(n_items: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n_items + 1, dim)).astype(np.float32)
    m[0] = 0.0
    return m


@pytest.fixture
def successor():
    return successor_dataset()


@pytest.fixture
def random_text():
    """random_text(n_items, dim=16, seed=0) -> a stand-in text matrix (n_items + 1, dim)."""
    return _random_text


# ---------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for the session (the ``pgserver`` wheel's binaries, on a Unix
    socket in a temp dir); yields its base URL. Skipped where pgserver is not installed, except
    under CI (``CHRONOREC_REQUIRE_POSTGRES=1``), where a missing server is a failure."""
    try:
        import pgserver
    except ImportError:
        if os.environ.get("CHRONOREC_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip("pgserver is not installed (pip install pgserver 'chronorec[postgres]')")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def new_postgres_database(postgres_server: str) -> Callable[[], str]:
    """new_postgres_database() -> the URL of a new, empty database on the session's server."""
    import psycopg

    numbers = itertools.count()

    def create() -> str:
        name = f"t{next(numbers)}"
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return urlsplit(postgres_server)._replace(path=f"/{name}").geturl()

    return create


@pytest.fixture
def postgres_url(new_postgres_database: Callable[[], str]) -> str:
    """A new, empty database for this test."""
    return new_postgres_database()
