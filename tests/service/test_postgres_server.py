"""The service on PostgreSQL: `chronorec serve --db postgresql://...` in a subprocess, a real
PostgreSQL server (see the ``postgres_server`` fixture), the same promises as with SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Server
from test_server import ids, user_history


@pytest.fixture(scope="module")
def pg_server(
    text_run: Path,
    new_postgres_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("pg_server")
    srv = Server(text_run, new_postgres_database(), root / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_events_items_and_forgetting_survive_kill9(pg_server: Server, dataset_dir: Path) -> None:
    events = [
        {"user_id": "u23", "item_id": "i20", "behaviour": "view", "timestamp": 1_700_000_000,
         "event_id": "pg-1"},
        {"user_id": "u23", "item_id": "i21", "behaviour": "view", "timestamp": 1_700_000_060,
         "event_id": "pg-2"},
    ]  # fmt: skip
    with pg_server.client() as c:
        assert c.post("/events", json={"events": events}).json()["stored"] == 2
        item = {"item_id": "hose-9", "title": "green hose"}
        assert c.post("/items", json=item).status_code == 201
        assert c.post("/events", json={"user_id": "u25", "item_id": "i3"}).status_code == 201
        assert c.delete("/users/u25").status_code == 200
    pg_server.kill9()  # only what PostgreSQL committed before each 2xx survives
    pg_server.start()

    history = user_history(dataset_dir, "u23") + [
        {k: e[k] for k in ("item_id", "behaviour", "timestamp")} for e in events
    ]
    with pg_server.client() as c:
        got = c.get("/users/u23/recommendations", params={"k": 5}).json()
        want = c.post("/recommendations", json={"history": history, "k": 5}).json()
        assert got["n_events"] == len(history)
        assert ids(got) == ids(want)
        replay = c.post("/events", json={"events": events}).json()
        assert replay["stored"] == 0 and replay["duplicates"] == 2
        # the posted item came back from the database, with its text vector
        assert c.post("/items", json={"item_id": "hose-9", "title": "x"}).status_code == 409
        assert c.get("/items/hose-9/similar", params={"k": 3}).status_code == 200
        forgotten = c.get("/users/u25/recommendations").json()
        assert forgotten["n_events"] == 0 and forgotten["source"] == "popularity"


def test_ready_reports_the_database(pg_server: Server) -> None:
    with pg_server.client() as c:
        assert c.get("/ready").status_code == 200


def test_an_unreachable_database_is_a_clear_error_before_serving(text_run: Path, capsys) -> None:
    from chronorec.cli import main

    url = "postgresql://me:s3cret@127.0.0.1:1/events"  # nothing listens on port 1
    assert main(["serve", str(text_run), "--dev", "--db", url, "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "postgresql://me:***@127.0.0.1:1/events: cannot open the event database" in err
    assert "Connection refused" in err and "s3cret" not in err and "Traceback" not in err


def test_finetune_reads_a_postgresql_store_without_forgotten_users(
    text_run: Path,
    dataset_dir: Path,
    new_postgres_database: Callable[[], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from chronorec import load_prepared
    from chronorec.cli import main
    from chronorec.service.store import Event, open_store

    url = new_postgres_database()
    store = open_store(url)
    store.add_events([Event("u3", f"i{i}", "buy", 1_700_000_000 + i) for i in (2, 4, 6)])
    store.add_events(
        [Event("u25", "i3", "view", 1_700_000_000), Event("u25", "i5", "view", 1_700_000_060)]
    )
    store.forget_user("u25")  # their stored events go, and their logged ones leave training too
    store.close()
    tuned = tmp_path / "tuned"
    args = ["finetune", str(text_run), "--out", str(tuned), "--db", url, "--epochs", "1"]
    assert main([*args, "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["new_events"] == 3 and out["users"] == 1 and out["skipped"] == 0
    ds = load_prepared(dataset_dir)
    u25 = ds.users.filter(ds.users["user_id"] == "u25")["user"][0]
    logged_u25 = ds.events.filter(ds.events["user"] == u25).height
    assert out["events"] == ds.events.height - logged_u25 + 3  # the log it trained on
