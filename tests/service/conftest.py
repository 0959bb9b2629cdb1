"""Session fixtures: a two-shop dataset, a text run (tiny BERT) and an id run, and one real
server per module (loopback port, SQLite file, token auth)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import Server, train_run, two_shop_dataset, write_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def service_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="session")
def dataset_dir(service_root: Path) -> Path:
    return two_shop_dataset().save(service_root / "data")


@pytest.fixture(scope="session")
def text_run(service_root: Path, dataset_dir: Path) -> Path:
    bert = write_tiny_bert(service_root / "bert")
    return train_run(dataset_dir, service_root / "run_text", "text", bert)


@pytest.fixture(scope="session")
def id_run(service_root: Path, dataset_dir: Path) -> Path:
    return train_run(dataset_dir, service_root / "run_id", "id", None, epochs=2)


@pytest.fixture(scope="module")
def server(text_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    srv = Server(
        text_run,
        root / "events.db",
        root / "server.log",
        CHRONOREC_MAX_BATCH="50",
        CHRONOREC_MAX_BODY_BYTES="20000",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
