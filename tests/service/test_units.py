"""Store, settings, retrieval and in-process app behaviour (no subprocess needed)."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from fastapi.testclient import TestClient
from helpers import TOKEN, two_shop_dataset, write_tiny_bert

from chronorec.blend import Ensemble, read_learned, save_blend
from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chronorec.data.sequences import HistoryBatch
from chronorec.errors import ConfigError
from chronorec.recommender import Recommender
from chronorec.service import ServiceSettings, create_app
from chronorec.service.retrieval import ExactRetriever, FaissRetriever, recall_at_k
from chronorec.service.store import Event, SQLiteEventStore, StoredItem, open_store

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/e.db"
    return str(request.getfixturevalue("postgres_url"))


def test_store_contract_on_both_backends(store_url: str) -> None:
    store = open_store(store_url)
    assert store.ping() and store.count_events() == 0
    events = [Event("u", "a", "view", 10, "e1"), Event("u", "b", "buy", 5, None)]
    assert store.add_events(events) == [True, True]
    assert store.add_events([Event("u", "zzz", "view", 99, "e1")]) == [False]  # first write wins
    # a replay inside one batch, and events without ids (never duplicates of each other)
    batch = [Event("v", "c", "view", 1, "e2"), Event("v", "c", "view", 1, "e2")]
    batch += [Event("v", "d", "view", 2, None), Event("v", "d", "view", 2, None)]
    assert store.add_events(batch) == [True, False, True, True]
    assert [e.item_id for e in store.user_events("u")] == ["b", "a"]  # by timestamp
    assert store.count_events() == 5
    assert [(e.user_id, e.item_id) for e in store.iter_events()] == [
        ("u", "a"), ("u", "b"), ("v", "c"), ("v", "d"), ("v", "d")
    ]  # fmt: skip
    assert store.forget_user("u") == 2 and store.user_events("u") == []
    assert store.forget_user("u") == 0
    gone = store.forgotten_users()
    assert "u" in gone and "v" not in gone and len(gone) == 1

    item = StoredItem("new", {"title": "a hose", "price": 3.5}, b"\x00\x01", "k1")
    assert store.add_item(item) is True
    assert store.add_item(StoredItem("new", {}, None, None)) is False  # first write wins
    assert store.add_item(StoredItem("other", {"title": "x"}, None, None)) is True
    assert store.items() == [item, StoredItem("other", {"title": "x"}, None, None)]
    store.close()

    reopened = open_store(store_url)  # everything above was committed
    assert reopened.count_events() == 3 and "u" in reopened.forgotten_users()
    assert [i.item_id for i in reopened.items()] == ["new", "other"]
    reopened.close()


def _rows(store_url: str, sql: str) -> list[tuple]:
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url[len("sqlite:///") :]) as conn:
            return conn.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(store_url) as conn:
        return conn.execute(sql).fetchall()


def test_forgotten_ids_are_kept_as_keyed_hashes_and_old_stores_are_migrated(
    store_url: str,
) -> None:
    """The store never holds a forgotten id in the clear; a store written with the plain table
    has it hashed under its key and dropped when it is opened; membership still answers."""
    store = open_store(store_url)
    store.add_events([Event("alice@example.com", "a", "view", 1)])
    store.forget_user("alice@example.com")
    store.close()
    keys = _rows(store_url, "SELECT user_key FROM forgotten")
    assert len(keys) == 1 and "alice" not in keys[0][0] and len(keys[0][0]) == 64
    # a store from before: the plain table as it was, one id in it
    ddl = "CREATE TABLE forgotten_users (user_id TEXT PRIMARY KEY, at REAL NOT NULL)"
    insert = "INSERT INTO forgotten_users VALUES ('bob', 5)"
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url[len("sqlite:///") :]) as conn:
            conn.execute(ddl)
            conn.execute(insert)
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute(ddl.replace("REAL", "DOUBLE PRECISION"))
            conn.execute(insert)
    reopened = open_store(store_url)
    gone = reopened.forgotten_users()
    assert "bob" in gone and "alice@example.com" in gone and "carol" not in gone
    assert len(reopened.forgotten_users(since=6)) == 1  # bob's time is kept
    reopened.close()
    tables = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if store_url.startswith("sqlite:///")
        else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    assert "forgotten_users" not in {t for (t,) in _rows(store_url, tables)}


def test_a_forgotten_users_events_leave_the_sqlite_files_at_once(tmp_path: Path) -> None:
    """After DELETE no byte of the user's id or events is left in the database file or its WAL
    (secure delete, and a checkpoint that truncates the WAL)."""
    store = open_store(f"sqlite:///{tmp_path}/e.db")
    store.add_events([Event("keep", "item-kept", "view", 1)])
    events = [Event("secret-user", f"private-item-{i}", "view", i) for i in range(50)]
    store.add_events(events)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("e.db*"))
    assert b"secret-user" in raw and b"private-item-7" in raw  # the probe can see them
    store.forget_user("secret-user")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("e.db*"))
    assert b"secret-user" not in raw and b"private-item" not in raw
    assert b"item-kept" in raw
    store.close()


def test_sqlite_store_is_wal_full_sync(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path}/e.db").close()
    conn = sqlite3.connect(tmp_path / "e.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert (
        SQLiteEventStore(tmp_path / "e.db")._writer.execute("PRAGMA synchronous").fetchone()[0] == 2
    )  # FULL


def test_postgres_store_refuses_non_durable_servers_and_hides_passwords(
    postgres_url: str,
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    with pytest.raises(ConfigError, match="synchronous_commit=off"):
        open_store(postgres_url)
    with pytest.raises(ConfigError) as err:  # nothing listens on port 1
        open_store("postgresql://me:s3cret@127.0.0.1:1/db?connect_timeout=2")
    assert "cannot open the event database" in str(err.value)
    assert "s3cret" not in str(err.value) and "me:***@127.0.0.1:1" in str(err.value)


def test_store_urls() -> None:
    with pytest.raises(ConfigError, match="expected sqlite"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="names no file"):
        open_store("sqlite:///")


def test_settings_from_env() -> None:
    s = ServiceSettings.from_env(
        {
            "CHRONOREC_TOKEN": "t",
            "CHRONOREC_MAX_BATCH": "7",
            "CHRONOREC_DEV": "yes",
            "CHRONOREC_DB": "sqlite:///x.db",
        },
        run_dir="r",
    )
    assert (s.token, s.max_batch, s.dev, s.db_url, s.run_dir) == (
        "t",
        7,
        True,
        "sqlite:///x.db",
        "r",
    )
    with pytest.raises(ConfigError, match="CHRONOREC_MAX_BATCH='x' is not an integer"):
        ServiceSettings.from_env({"CHRONOREC_MAX_BATCH": "x"})
    with pytest.raises(ConfigError, match="refusing to start"):
        ServiceSettings(run_dir="r").check_startable()
    ServiceSettings(run_dir="r", dev=True).check_startable()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_recall_against_exact(kind: str) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    table = np.vstack(
        [np.zeros((1, 16)), centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))]
    ).astype(np.float32)
    t = torch.from_numpy(table)
    queries = torch.from_numpy(table[rng.integers(1, 3001, 64)] + 0.1)
    index = FaissRetriever(table, kind, nprobe=8)
    assert recall_at_k(index, queries, t, 10) >= 0.9
    # excluded rows never come back, and padding row 0 is never returned
    exclude = [np.arange(1, 50)] * len(queries)
    rows, _ = index.search(queries, t, 10, exclude)
    assert not np.isin(rows, np.arange(0, 50)).any()
    exact_rows, _ = ExactRetriever().search(queries.clone(), t, 10, exclude)
    assert not np.isin(exact_rows, np.arange(0, 50)).any()
    # a new row is found at once
    new = table[5:6] * 3
    index.add(new)
    t2 = torch.cat([t, torch.from_numpy(new)])
    rows, _ = index.search(torch.from_numpy(new), t2, 1)
    assert rows[0, 0] == 3001


def test_id_only_model_refuses_new_items(id_run: Path, tmp_path: Path) -> None:
    app = create_app(
        ServiceSettings(run_dir=str(id_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN)
    )
    with TestClient(app) as c:
        r = c.post("/items", json={"item_id": "new", "title": "garden hose"}, headers=AUTH)
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "no_text_tower"
        assert "item_repr" in r.json()["error"]["message"]


def test_reload_swaps_the_model_atomically(text_run: Path, id_run: Path, tmp_path: Path) -> None:
    app = create_app(
        ServiceSettings(run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN)
    )
    with TestClient(app) as c:
        old_engine = app.state.engine
        before = c.get("/ready").json()["model_version"]
        c.post("/events", json={"user_id": "u1", "item_id": "i5"}, headers=AUTH)
        r = c.post("/admin/reload", json={"run": str(id_run)}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == before
        assert c.get("/ready").json()["model_version"] == r.json()["model_version"] != before
        # a request that took the old engine before the swap still completes on it
        state = old_engine.user_state("u2")
        assert old_engine.rank(state, 3).items
        # the stored event is part of the user's history under the new model too
        got = c.get("/users/u1/recommendations").json()
        assert got["model_version"] == r.json()["model_version"] and "i5" not in [
            x["item_id"] for x in got["items"]
        ]


def test_faiss_path_serves_the_same_top_k_as_exact(text_run: Path, tmp_path: Path) -> None:
    def top(exact_max_items: int) -> list[list[str]]:
        settings = ServiceSettings(
            run_dir=str(text_run),
            db_url=f"sqlite:///{tmp_path}/e.db",
            token=TOKEN,
            exact_max_items=exact_max_items,
            nprobe=64,
        )
        with TestClient(create_app(settings)) as c:
            ready = c.get("/ready").json()
            assert ready["retrieval"] == ("exact" if exact_max_items else "faiss-ivf")
            assert ready["index_recall_at_10"] >= 0.9
            users = [f"u{i}" for i in range(1, 11)]
            return [
                [x["item_id"] for x in c.get(f"/users/{u}/recommendations?k=5").json()["items"]]
                for u in users
            ]

    assert top(0) == top(10_000)


def test_new_user_goes_from_popularity_to_blend_to_model(text_run: Path, tmp_path: Path) -> None:
    settings = ServiceSettings(
        run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN, blend_events=2
    )
    with TestClient(create_app(settings)) as c:
        sources = []
        for item in ("i1", "i2", "i3"):
            sources.append(c.get("/users/fresh/recommendations").json()["source"])
            c.post("/events", json={"user_id": "fresh", "item_id": item}, headers=AUTH)
        sources.append(c.get("/users/fresh/recommendations").json()["source"])
        assert sources == ["popularity", "blend", "model", "model"]
        got = c.get("/users/fresh/recommendations?k=30").json()["items"]
        assert not {"i1", "i2", "i3"} & {x["item_id"] for x in got}  # seen items are excluded
        got = c.get("/users/fresh/recommendations?k=30&exclude_seen=false").json()["items"]
        assert {"i1", "i2", "i3"} <= {x["item_id"] for x in got}


def test_rnn_state_advances_one_step_per_event(text_run: Path, tmp_path: Path) -> None:
    settings = ServiceSettings(
        run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN
    )
    with TestClient(create_app(settings)) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        assert engine._stepper is not None  # a GRU run: the step-wise path is on
        # a known user (stepped while the history fits max_len, else recomputed) and a new one
        for user in ("u3", "stepper-new"):
            c.get(f"/users/{user}/recommendations")
            for i, item in enumerate(("i2", "i7")):
                c.post(
                    "/events",
                    json={"user_id": user, "item_id": item, "timestamp": 1_700_000_000 + i},
                    headers=AUTH,
                )
            cached = engine.user_state(user)
            fresh = engine._compute_state(user)
            assert cached.n_events == fresh.n_events
            torch.testing.assert_close(cached.hidden, fresh.hidden, atol=1e-5, rtol=1e-5)
            assert set(cached.seen.tolist()) == set(fresh.seen.tolist())
        assert (
            engine.state_steps >= 2
        )  # at least the new user's events were stepped, not recomputed
        assert "chronorec_user_state_steps" in c.get("/metrics").text


def fit_tiny(dataset_dir: Path, name: str, data: DataConfig | None = None, **model: object):
    """A 3-epoch model of width 16 on the two-shop data, with these model options."""
    cfg = RunConfig(
        model=ModelConfig(name=name, d_model=16, n_layers=1, n_heads=2, max_len=8, dropout=0.0,
                          **model),  # type: ignore[arg-type]
        train=TrainConfig(max_epochs=3, batch_size=16, lr=1e-2, threads=1, warmup_steps=1),
        data=data or DataConfig(),
    )  # fmt: skip
    return Recommender(cfg).fit(dataset_dir, progress=False)


def serve(rec: Recommender, tmp_path: Path) -> TestClient:
    """A test client of the service over ``rec`` saved under ``tmp_path``."""
    run = rec.save(tmp_path / "run")
    settings = ServiceSettings(run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN)
    return TestClient(create_app(settings))


def assert_serves_offline(client: TestClient, rec: Recommender) -> None:
    """Served top-6 (history items allowed) equals offline ``recommend`` for three users."""
    for user in ("u1", "u2", "u5"):
        want_ids, want_scores = rec.recommend([user], k=6, exclude_seen=False)
        got = client.get(f"/users/{user}/recommendations?k=6&exclude_seen=false").json()["items"]
        assert [x["item_id"] for x in got] == want_ids[0]
        np.testing.assert_allclose([x["score"] for x in got], want_scores[0], atol=1e-4)


def test_repeat_model_serves_the_offline_scores(dataset_dir: Path, tmp_path: Path) -> None:
    """A model with the repeat term: served top-k (repeats allowed) equals offline recommend."""
    rec = fit_tiny(dataset_dir, "transformer", repeat=True)
    assert rec.model is not None and rec.model.repeat is not None
    # make the repeat term matter, in both directions
    rec.model.repeat.set_weights(torch.linspace(3.0, -3.0, rec.model.repeat.n_buckets))
    with serve(rec, tmp_path) as c:
        assert_serves_offline(c, rec)


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_separate_output_table_serves_the_offline_scores(
    dataset_dir: Path, tmp_path: Path, name: str
) -> None:
    """Scores against a second ID table: served top-k (exact and stepped state) equals offline."""
    rec = fit_tiny(dataset_dir, name, separate_output=True)
    assert rec.model is not None and rec.model.out_emb is not None
    with serve(rec, tmp_path) as c:
        assert_serves_offline(c, rec)


@pytest.mark.parametrize(("name", "repeat"), [("gru", False), ("transformer", True)])
def test_next_behaviour_model_serves_the_offline_scores(
    dataset_dir: Path, tmp_path: Path, name: str, repeat: bool
) -> None:
    """A model ranking for the target behaviour's next event, through the GRU's incremental
    state and through the window (repeat term): served top-k equals offline recommend."""
    data = DataConfig(target_behaviour=2)
    rec = fit_tiny(dataset_dir, name, data, repeat=repeat, next_behaviour=True)
    assert rec.model is not None and rec.model.next_map is not None
    with torch.no_grad():  # make the conditioning matter
        rec.model.next_map[2].normal_(0.0, 0.5)
    with serve(rec, tmp_path) as c:
        assert_serves_offline(c, rec)


@pytest.mark.parametrize(("name", "repeat"), [("gru", False), ("transformer", True)])
def test_behaviour_ranking_serves_the_offline_scores(
    dataset_dir: Path, tmp_path: Path, name: str, repeat: bool
) -> None:
    """``?behaviour=buy`` ranks by score + log P(buy | history, item), the behaviour head
    reading the history's features (behaviour mix, earlier events on the item): through the
    GRU's incremental state (also after a posted event) and through the window."""
    rec = fit_tiny(dataset_dir, name, repeat=repeat, behaviour_head=True)
    cfg = rec.config
    assert rec.model is not None and rec.model.behaviour_head is not None
    assert rec.model.behaviour_head.n_features == 4
    with torch.no_grad():  # make the features matter
        rec.model.behaviour_head.mlp[0].weight[:, -4:].normal_(0.0, 2.0)
    ids = rec.item_ids()

    names = rec.meta["behaviours"]

    def offline(user: str, extra: tuple[str, int] | None = None) -> tuple[list[str], np.ndarray]:
        """Top-6 by score + log P(buy) for the user's logged history (+ one bought item)."""
        logged, _ = rec.user_batch([user], 10_000)
        real = logged.items[0] > 0
        items = [ids[i - 1] for i in logged.items[0][real]]
        behaviours = [names[b - 1] for b in logged.behaviours[0][real]]
        stamps = [int(t) for t in logged.timestamps[0][real]]
        if extra is not None:
            items, behaviours, stamps = (
                items + [extra[0]],
                behaviours + ["buy"],
                stamps + [extra[1]],
            )
        got, scores = rec.recommend_histories(
            [items], k=len(ids), timestamps=[stamps], behaviours=[behaviours], exclude_seen=False
        )
        batch, _ = rec.history_batch(
            [items], cfg.model.max_len, timestamps=[stamps], behaviours=[behaviours]
        )
        rows = np.array([[ids.index(i) + 1 for i in got[0]]])
        p_buy = rec.behaviour_probabilities(batch, rows)[0, :, names.index("buy")]
        combined = scores[0] + np.log(p_buy)
        order = np.argsort(-combined, kind="stable")[:6]
        return [got[0][i] for i in order], combined[order]

    with serve(rec, tmp_path) as c:
        for user in ("u1", "u2", "u5"):
            want_ids, want_scores = offline(user)
            url = f"/users/{user}/recommendations?k=6&exclude_seen=false&behaviour=buy"
            got = c.get(url).json()["items"]
            assert [x["item_id"] for x in got] == want_ids
            np.testing.assert_allclose([x["score"] for x in got], want_scores, atol=1e-4)
        # a purchase posted now: the next ranking counts it among the earlier events
        # a user whose state the GRU can step on (history shorter than max_len)
        lengths = {u: int((rec.user_batch([u], 100)[0].items > 0).sum())
                   for u in (f"u{i}" for i in range(1, 40))}  # fmt: skip
        short = next(u for u, n in lengths.items() if n < cfg.model.max_len)
        url = f"/users/{short}/recommendations?k=6&exclude_seen=false&behaviour=buy"
        bought = offline(short)[0][0]
        assert [x["item_id"] for x in c.get(url).json()["items"]][0] == bought
        last = int(rec.user_batch([short], 1)[0].timestamps[0, -1])
        event = {"user_id": short, "item_id": bought, "behaviour": "buy", "timestamp": last + 600}
        assert c.post("/events", json=event, headers=AUTH).status_code in (200, 201, 202)
        want_ids, want_scores = offline(short, (bought, last + 600))
        got = c.get(url).json()
        assert [x["item_id"] for x in got["items"]] == want_ids
        np.testing.assert_allclose([x["score"] for x in got["items"]], want_scores, atol=1e-4)


def test_text_score_model_serves_the_offline_scores_and_a_posted_copy_scores_as_its_original(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """The text score term (a query against the full text vectors) in the service: served top-k
    equals offline recommend, and an item posted with a catalogue item's text scores as it."""
    bert = write_tiny_bert(tmp_path / "bert")
    cfg = RunConfig(
        model=ModelConfig(name="gru", item_repr="text", d_model=16, n_layers=1, max_len=8,
                          dropout=0.0, text_hidden=0, text_score=True),
        train=TrainConfig(max_epochs=3, batch_size=16, lr=1e-2, threads=1, warmup_steps=1),
        text={"model": str(bert), "cache_dir": str(tmp_path / "tcache"), "progress": False},
    )  # fmt: skip
    rec = Recommender(cfg).fit(dataset_dir, progress=False)
    assert rec.model is not None and rec.model.text_query is not None
    assert rec.model.text_query.weight.abs().sum() > 0
    run = rec.save(tmp_path / "run")
    settings = ServiceSettings(run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN)
    title = two_shop_dataset().items.filter(pl.col("item_id") == "i3")["title"].item()
    with TestClient(create_app(settings)) as c:
        assert_serves_offline(c, rec)
        item = {"item_id": "i3-copy", "title": title}
        assert c.post("/items", json=item, headers=AUTH).status_code == 201
        got = c.get("/users/u1/recommendations?k=30&exclude_seen=false").json()["items"]
        score = {x["item_id"]: x["score"] for x in got}
        assert score["i3-copy"] == pytest.approx(score["i3"], abs=1e-3)


def test_shared_exclusive_lock_lets_searches_overlap_and_adds_wait() -> None:
    import threading

    from chronorec.service.retrieval import SharedExclusiveLock

    lock = SharedExclusiveLock()
    inside = threading.Barrier(2, timeout=5)  # both readers must be inside at the same time
    release_readers = threading.Event()
    order: list[str] = []

    def reader(name: str) -> None:
        with lock.shared():
            inside.wait()
            release_readers.wait(5)
            order.append(name)

    def writer() -> None:
        with lock.exclusive():
            order.append("add")

    readers = [threading.Thread(target=reader, args=(n,)) for n in ("r1", "r2")]
    for t in readers:
        t.start()
    time.sleep(0.05)
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.05)
    assert order == []  # the add waits while searches run
    release_readers.set()
    for t in [*readers, w]:
        t.join(5)
    assert sorted(order[:2]) == ["r1", "r2"] and order[2] == "add"


def test_exact_retriever_pads_a_row_with_few_allowed_items_without_shortening_others() -> None:
    table = torch.eye(4)  # padding row + 3 items
    q = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 3.0, 2.0, 1.0]])
    rows, scores = ExactRetriever().search(q, table, 3, [np.array([1, 2]), np.array([], np.int64)])
    assert rows[1].tolist() == [1, 2, 3]  # the second row is not cut to one item
    assert rows[0, 0] == 3 and np.isneginf(scores[0, 1:]).all()


BLEND = {
    "repeat-recent": 0.5, "transitions": 0.3, "user-knn": 0.2, "popular": 0.1, "repeat": 0.2,
    "ridge": 0.3,
}  # fmt: skip


@pytest.mark.parametrize(("name", "repeat"), [("gru", False), ("transformer", True)])
def test_blended_service_serves_the_offline_blend(
    dataset_dir: Path, tmp_path: Path, name: str, repeat: bool
) -> None:
    """``blend``: the served ranking is the model's z-scores plus weighted baseline z-scores,
    as ``chronorec recommend --weights`` ranks (Ensemble with fit_on="all"); after a posted
    event, as the offline blend ranks the history with that event appended."""
    rec = fit_tiny(dataset_dir, name, repeat=repeat)
    run = rec.save(tmp_path / "run")
    weights_text = ",".join(f"{k}={v}" for k, v in BLEND.items())
    settings = ServiceSettings(
        run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN, blend=weights_text
    )
    offline = Ensemble.load([run], weights=BLEND, fit_on="all")
    alone = rec.recommend(["u1"], k=6, exclude_seen=False)[0][0]
    ids, names = rec.item_ids(), rec.meta["behaviours"]
    max_len = rec.config.model.max_len
    with TestClient(create_app(settings)) as c:
        assert c.get("/ready").json()["blend"] == BLEND
        for user in ("u1", "u2", "u5"):
            for exclude in ("true", "false"):
                want_ids, want_scores = offline.recommend(
                    [user], k=6, exclude_seen=exclude == "true"
                )
                got = c.get(f"/users/{user}/recommendations?k=6&exclude_seen={exclude}").json()
                assert got["source"] == "model+baselines"
                assert [x["item_id"] for x in got["items"]] == want_ids[0]
                np.testing.assert_allclose(
                    [x["score"] for x in got["items"]], want_scores[0], atol=1e-4
                )
        served = [x["item_id"] for x in c.get("/users/u1/recommendations?k=6&exclude_seen=false")
                  .json()["items"]]  # fmt: skip
        assert served != alone  # the baselines change the ranking

        # a short user's next event: the blend reads it (the GRU's state is stepped)
        logged, _ = rec.user_batch(["u2"], 10_000)
        real = logged.items[0] > 0
        items = [ids[i - 1] for i in logged.items[0][real]]
        behaviours = [names[b - 1] for b in logged.behaviours[0][real]]
        stamps = [int(t) for t in logged.timestamps[0][real]]
        assert len(items) < max_len
        url = "/users/u2/recommendations?k=6&exclude_seen=false"
        before = [x["item_id"] for x in c.get(url).json()["items"]]
        event = {
            "user_id": "u2",
            "item_id": "i20",
            "behaviour": "buy",
            "timestamp": stamps[-1] + 60,
        }
        assert c.post("/events", json=event, headers=AUTH).status_code in (200, 201, 202)
        want_ids, want_scores = offline.recommend_histories(
            [items + ["i20"]],
            k=6,
            timestamps=[stamps + [stamps[-1] + 60]],
            behaviours=[behaviours + ["buy"]],
            exclude_seen=False,
        )
        got = c.get(url).json()["items"]
        assert [x["item_id"] for x in got] == want_ids[0]
        np.testing.assert_allclose([x["score"] for x in got], want_scores[0], atol=1e-4)
        assert [x["item_id"] for x in got] != before  # the posted event counts

        # an ad-hoc history (POST /recommendations), with and without timestamps
        session = [("i3", "view", 100), ("i4", "buy", 100), ("i5", "view", 700)]
        for stamped in (True, False):
            body = {
                "history": [
                    {"item_id": i, "behaviour": b, **({"timestamp": t} if stamped else {})}
                    for i, b, t in session
                ],
                "k": 6,
                "exclude_seen": False,
            }
            got = c.post("/recommendations", json=body).json()
            want_ids, want_scores = offline.recommend_histories(
                [[i for i, _, _ in session]],
                k=6,
                timestamps=[[t for _, _, t in session]] if stamped else None,
                behaviours=[[b for _, b, _ in session]],
                exclude_seen=False,
            )
            assert got["source"] == "model+baselines"
            assert [x["item_id"] for x in got["items"]] == want_ids[0]
            np.testing.assert_allclose(
                [x["score"] for x in got["items"]], want_scores[0], atol=1e-4
            )


def test_a_saved_learned_blend_is_served_as_offline(dataset_dir: Path, tmp_path: Path) -> None:
    """A run's learned blend (``evaluate --learned --save-blend``) ranks the service's lists as
    ``chronorec recommend`` ranks with it (posted events reach it by the same path as the
    linear blend's, tested above)."""
    from chronorec.blend import fit_learned

    rec = fit_tiny(dataset_dir, "gru")
    run = rec.save(tmp_path / "run")
    learned, _ = fit_learned(Ensemble([rec]), ["transitions", "popular", "repeat"], threads=1)
    save_blend(run, {}, tuned_on="valid", learned=learned)
    saved = read_learned(run)
    assert saved is not None
    offline = Ensemble.load([run], fit_on="all").use_learned(saved)
    settings = ServiceSettings(run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN)
    with TestClient(create_app(settings)) as c:
        ready = c.get("/ready").json()
        assert ready["learned_blend"] == ["transitions", "popular", "repeat"]
        assert ready["blend"] is None
        for user in ("u1", "u2", "u5"):
            want_ids, want_scores = offline.recommend([user], k=6, exclude_seen=False)
            got = c.get(f"/users/{user}/recommendations?k=6&exclude_seen=false").json()
            assert got["source"] == "model+baselines"
            assert [x["item_id"] for x in got["items"]] == want_ids[0]
            np.testing.assert_allclose(
                [x["score"] for x in got["items"]], want_scores[0], atol=1e-4
            )


def test_blend_pads_items_the_baselines_were_not_fitted_on(dataset_dir: Path) -> None:
    """A service's catalogue grows: columns past the fitted catalogue get each row's lowest
    raw score, so a posted item is ranked as one the baselines know nothing about."""
    rec = fit_tiny(dataset_dir, "gru")
    ens = Ensemble([rec], {"transitions": 1.0, "repeat": 1.0}, fit_on="all")
    batch, _ = rec.user_batch(["u1", "u2"], rec.config.model.max_len)
    n = len(rec.item_ids()) + 1
    plain = ens.baseline_parts(batch)
    padded = ens.baseline_parts(batch, n_cols=n + 3)
    for name, z in padded.items():
        assert z.shape == (2, n + 3) and plain[name].shape == (2, n)
        raw = ens.baselines[name].score(batch, None)
        low = raw[:, 1:].argmin(1)  # the lowest known item scores as the new ones
        np.testing.assert_allclose(z[:, n:], z[torch.arange(2), 1 + low][:, None].expand(-1, 3))
        assert torch.isinf(z[:, 0]).all()


def test_blend_setting_errors(tmp_path: Path, text_run: Path) -> None:
    for text, message in [
        ("nope=1", "unknown baseline.*nope"),
        ("repeat", "expected NAME=NUMBER, got 'repeat'"),
        ("repeat=-1", "weight of repeat must be a number >= 0"),
        ("repeat=nan", "weight of repeat"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ServiceSettings(blend=text)
    env = ServiceSettings.from_env({"CHRONOREC_BLEND": "repeat=0.5, transitions=1"})
    assert env.blend_choice().weights == {"repeat": 0.5, "transitions": 1.0}
    assert ServiceSettings().blend_choice().weights == {}


def test_blend_with_text_knn_scores_a_posted_item_by_its_text(
    text_run: Path, tmp_path: Path
) -> None:
    """A posted item is scored by text-knn from its text at once: a copy of a catalogue item's
    text scores as the original in the blend (model and text-knn alike), and as the user's
    latest item it makes text-knn rank the original first among the other items."""
    settings = ServiceSettings(
        run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN,
        blend="text-knn=1",
    )  # fmt: skip
    title = two_shop_dataset().items.filter(pl.col("item_id") == "i3")["title"].item()
    with TestClient(create_app(settings)) as c:
        before = c.get("/users/u1/recommendations?k=30&exclude_seen=false").json()["items"]
        engine = c.app.state.engine  # type: ignore[attr-defined]
        assert len(engine._blend_cache) == 1  # u1's blended list is kept for the next read
        item = {"item_id": "i3-copy", "title": title}
        assert c.post("/items", json=item, headers=AUTH).status_code == 201
        got = c.get("/users/u1/recommendations?k=30&exclude_seen=false").json()
        assert got["source"] == "model+baselines"
        score = {x["item_id"]: x["score"] for x in got["items"]}
        assert score["i3-copy"] == pytest.approx(score["i3"], abs=1e-3)  # not the kept list
        assert "i3-copy" not in {x["item_id"] for x in before}

        event = {"user_id": "u1", "item_id": "i3-copy", "timestamp": 1_700_000_000}
        assert c.post("/events", json=event, headers=AUTH).status_code in (200, 201, 202)
        state = engine.user_state("u1")
        assert state.window[0][-1] == engine.index["i3-copy"]
        knn = engine._blender.baselines["text-knn"]
        history = engine._blender.baseline_parts(
            HistoryBatch(state.window[0][None], state.window[1][None], state.window[2][None],
                         np.array([len(state.window[0])])),
            n_cols=engine.n_items + 1,
        )["text-knn"][0]  # fmt: skip
        assert knn.vectors.shape[0] == engine.n_items + 1
        top = torch.topk(history, 2).indices.tolist()  # the copy and its original, by text
        assert {engine.item_ids[r - 1] for r in top} == {"i3", "i3-copy"}


def test_a_forgotten_user_is_nobodys_neighbour_in_a_blend(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """``DELETE /users/{id}`` takes the user out of the blended user-KNN at once, and a server
    started later on the same store leaves them out too."""
    run = fit_tiny(dataset_dir, "gru").save(tmp_path / "run")
    settings = ServiceSettings(
        run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN, blend="user-knn=1"
    )
    url = "/users/u3/recommendations?k=6&exclude_seen=false"
    with TestClient(create_app(settings)) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        knn = engine._blender.baselines["user-knn"]
        row = engine._base_users["u1"]  # u1 and u3 walk the same shop: neighbours
        assert knn.users_[row].sum() > 0
        before = c.get(url).json()["items"]
        assert c.delete("/users/u1", headers=AUTH).status_code == 200
        assert knn.users_[row].sum() == 0 and knn.items_[:, row].sum() == 0
        after = c.get(url).json()["items"]
        assert [x["score"] for x in after] != [x["score"] for x in before]
    with TestClient(create_app(settings)) as c:  # a restart: the store remembers
        engine = c.app.state.engine  # type: ignore[attr-defined]
        knn = engine._blender.baselines["user-knn"]
        assert knn.users_[row].sum() == 0 and knn.items_[:, row].sum() == 0
        again = c.get(url).json()["items"]  # the restart's log leaves u1's events out entirely
        assert [x["item_id"] for x in again] == [x["item_id"] for x in after]
        np.testing.assert_allclose(
            [x["score"] for x in again], [x["score"] for x in after], atol=1e-5
        )  # only popularity's tie-break (1e-6 x rank) differs


def test_the_runs_saved_blend_is_served_unless_told_otherwise(text_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    db = f"sqlite:///{tmp_path}/e.db"
    assert ServiceSettings(run_dir=str(run), db_url=db).blend_choice().weights == {}
    save_blend(run, {"transitions": 0.5, "repeat": 0.0}, tuned_on="valid")
    assert ServiceSettings(run_dir=str(run), db_url=db).blend_choice().weights == {
        "transitions": 0.5
    }
    assert ServiceSettings(run_dir=str(run), blend="none").blend_choice().weights == {}
    assert ServiceSettings(run_dir=str(run), blend="repeat=1").blend_choice().weights == {
        "repeat": 1.0
    }
    with TestClient(create_app(ServiceSettings(run_dir=str(run), db_url=db, token=TOKEN))) as c:
        assert c.get("/ready").json()["blend"] == {"transitions": 0.5}
        assert c.get("/users/u1/recommendations").json()["source"] == "model+baselines"
    (run / "blend.json").write_text('{"weights": {"nope": 1}}')
    with pytest.raises(ConfigError, match="blend.json: unknown baseline"):
        ServiceSettings(run_dir=str(run), db_url=db)


def test_a_blend_ranks_by_behaviour_on_top_of_the_blended_list(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """``?behaviour=buy`` with a blend re-ranks the blended candidates by blended score +
    log P(buy | history, item): the served scores are the blended ones plus the head's log P."""
    rec = fit_tiny(dataset_dir, "gru", behaviour_head=True)
    run = rec.save(tmp_path / "run")
    settings = ServiceSettings(
        run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN,
        blend="transitions=0.5,repeat=0.3",
    )  # fmt: skip
    with TestClient(create_app(settings)) as c:
        plain = c.get("/users/u2/recommendations?k=24&exclude_seen=false").json()["items"]
        got = c.get("/users/u2/recommendations?k=5&exclude_seen=false&behaviour=buy").json()
        assert got["source"] == "model+baselines" and len(got["items"]) == 5
        engine = c.app.state.engine  # type: ignore[attr-defined]
        state = engine.user_state("u2")
        rows = np.array([engine.index[x["item_id"]] for x in plain])
        raw, _ = engine._tables()
        with torch.no_grad():
            window = (torch.from_numpy(state.window[0])[None],
                      torch.from_numpy(state.window[1])[None])  # fmt: skip
            logits = engine.model.behaviour_logits(
                state.hidden[None], torch.from_numpy(rows)[None], raw, window
            )
            logp = torch.log_softmax(logits, -1)[0, :, engine.behaviour_index("buy") - 1]
        combined = np.array([x["score"] for x in plain]) + logp.numpy()
        order = np.argsort(-combined, kind="stable")[:5]
        assert [x["item_id"] for x in got["items"]] == [plain[i]["item_id"] for i in order]
        np.testing.assert_allclose([x["score"] for x in got["items"]], combined[order], atol=1e-4)


@pytest.mark.parametrize("blend", ["", "transitions=0.5,repeat=0.3"])
def test_blocked_items_are_never_recommended(text_run: Path, tmp_path: Path, blend: str) -> None:
    """``block``: the list is the unblocked one without those items, for a known user (model
    or blend), a user without events (popularity) and an ad-hoc history."""
    settings = ServiceSettings(
        run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN, blend=blend
    )
    with TestClient(create_app(settings)) as c:
        for user in ("u1", "nobody"):
            url = f"/users/{user}/recommendations?exclude_seen=false"
            full = [x["item_id"] for x in c.get(f"{url}&k=24").json()["items"]]  # every item
            block = full[:2] + [full[5]]
            got = c.get(f"{url}&k=12&block={','.join(block)}").json()["items"]
            assert [x["item_id"] for x in got] == [i for i in full if i not in block][:12]
        body = {"history": [{"item_id": f"i{i}"} for i in (3, 4, 5, 6)], "k": 20}  # > 3 events
        full = [x["item_id"] for x in c.post("/recommendations", json=body).json()["items"]]
        got = c.post("/recommendations", json={**body, "k": 12, "block": full[:3]}).json()
        assert [x["item_id"] for x in got["items"]] == full[3:15]
        bad = c.get("/users/u1/recommendations?block=i1,nope")
        assert bad.status_code == 404 and "block: unknown item id 'nope'" in bad.text


def test_a_restart_fits_the_blend_on_the_log_and_the_posted_events(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """The blended baselines are fitted on the run's log plus the events posted to the
    service (on catalogue items) as of the start: a new user's posted walk adds its
    transitions and a user-KNN row."""
    rec = fit_tiny(dataset_dir, "gru")
    run = rec.save(tmp_path / "run")
    settings = ServiceSettings(
        run_dir=str(run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN,
        blend="transitions=0.5,user-knn=0.5",
    )  # fmt: skip
    walk = ["i20", "i7", "i20", "i7"]  # a pair the shop walks never have
    with TestClient(create_app(settings)) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        pairs = engine._blender.baselines["transitions"].counts_.sum()
        for t, item in enumerate(walk):
            event = {"user_id": "newbie", "item_id": item, "timestamp": 1_700_000_000 + t}
            assert c.post("/events", json=event, headers=AUTH).status_code in (200, 201, 202)
        # a logged user's posted event follows their logged ones: (their last item, i7)
        logged = rec.user_batch(["u2"], 1)[0]
        last = rec.item_ids()[int(logged.items[0, -1]) - 1]
        event = {"user_id": "u2", "item_id": "i7", "timestamp": int(logged.timestamps[0, -1]) + 60}
        assert c.post("/events", json=event, headers=AUTH).status_code in (200, 201, 202)
        assert engine._blender.baselines["transitions"].counts_.sum() == pairs  # until a restart
    with TestClient(create_app(settings)) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        trans = engine._blender.baselines["transitions"]
        assert trans.counts_.sum() == pairs + len(walk) - 1 + 1
        for first in ("i20", last):  # the new user's walk, and u2's logged last item -> i7
            a, b = engine.index[first], engine.index["i7"]
            assert b in trans.successors_[trans.indptr_[a] : trans.indptr_[a + 1]]
        row = engine._blend_rows["newbie"]
        assert row == rec.dataset.n_users + 1  # type: ignore[union-attr]
        assert engine._blender.baselines["user-knn"].users_[row].sum() > 0
        assert c.delete("/users/newbie", headers=AUTH).status_code == 200  # a posted user, too
        assert engine._blender.baselines["user-knn"].users_[row].sum() == 0


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_a_user_who_touches_a_posted_item_is_served_on_both_stores_and_after_a_restart(
    dataset_dir: Path, tmp_path: Path, store_url: str, name: str
) -> None:
    """The repeat term covers rows posted through ``POST /items``: a user whose history holds a
    posted item gets a ranking (with the item's repeat bonus), also for a one-off history and
    after a restart that reads the item and the event back from the store."""
    bert = write_tiny_bert(tmp_path / "bert")
    cfg = RunConfig(
        model=ModelConfig(name=name, item_repr="id+text", d_model=16, n_layers=1, n_heads=2,
                          max_len=8, dropout=0.0, text_hidden=32, repeat=True),
        train=TrainConfig(max_epochs=2, batch_size=16, lr=1e-2, threads=1, warmup_steps=1),
        text={"model": str(bert), "cache_dir": str(tmp_path / "tcache"), "progress": False},
    )  # fmt: skip
    rec = Recommender(cfg).fit(dataset_dir, progress=False)
    assert rec.model is not None and rec.model.repeat is not None
    by_distance = torch.zeros(rec.model.repeat.n_buckets)
    by_distance[0] = 100.0  # the last event's item goes first
    rec.model.repeat.set_weights(by_distance)
    run = rec.save(tmp_path / "run")
    settings = ServiceSettings(run_dir=str(run), db_url=store_url, token=TOKEN)
    one_off = {"history": [{"item_id": "i1"}, {"item_id": "NEW-1"}], "k": 3, "exclude_seen": False}
    for restart in (False, True):
        with TestClient(create_app(settings)) as c:
            if not restart:
                item = {"item_id": "NEW-1", "title": "garden hose reel"}
                assert c.post("/items", json=item, headers=AUTH).status_code == 201
                event = {"user_id": "u1", "item_id": "NEW-1", "timestamp": 1_700_000_000}
                assert c.post("/events", json=event, headers=AUTH).status_code in (200, 201, 202)
            for url in ("/users/u1/recommendations?k=3&exclude_seen=false",
                        "/users/u1/recommendations?k=3"):  # fmt: skip
                r = c.get(url)
                assert r.status_code == 200, r.text
            top = c.get("/users/u1/recommendations?k=3&exclude_seen=false").json()["items"]
            assert top[0]["item_id"] == "NEW-1"  # the last event's large repeat bonus
            r = c.post("/recommendations", json=one_off)
            assert r.status_code == 200, r.text
            assert r.json()["items"][0]["item_id"] in {"i1", "NEW-1"}


@pytest.mark.parametrize("name", ["gru", "lstm", "transformer"])
def test_a_cached_user_state_costs_at_most_8_kb(dataset_dir: Path, tmp_path: Path, name: str):
    """A state holds its own few vectors and its window, never a view that keeps a whole
    (1, max_len, D) model output alive: at most 8 KB at max_len 200, D 64, for a logged user,
    a new one, and one whose 150 posted events fill most of the window; with the repeat term
    (recomputed states) and without (an RNN stepped one event at a time)."""
    cfg = RunConfig(
        model=ModelConfig(name=name, d_model=64, n_layers=1, n_heads=2, max_len=200,
                          dropout=0.0, repeat=name != "gru"),
        train=TrainConfig(max_epochs=1, batch_size=16, lr=1e-2, threads=1, warmup_steps=1),
    )  # fmt: skip
    rec = Recommender(cfg).fit(dataset_dir, progress=False)
    with serve(rec, tmp_path) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        events = [{"user_id": "heavy", "item_id": f"i{1 + i % 24}", "timestamp": 1_700_000_000 + i}
                  for i in range(150)]  # fmt: skip
        assert c.post("/events", json={"events": events}, headers=AUTH).status_code == 201
        c.post("/events", json={"user_id": "new", "item_id": "i3"}, headers=AUTH)
        for user in ("u1", "u2", "new", "heavy"):
            assert c.get(f"/users/{user}/recommendations").status_code == 200
            state = engine.user_state(user)
            assert state.n_events > 0
            assert state.nbytes() <= 8192, (user, state.nbytes())


@pytest.mark.parametrize("clock", ["auto", "log", "wall"])
def test_the_clock_dates_an_event_posted_without_a_timestamp(
    text_run: Path, tmp_path: Path, clock: str
) -> None:
    """The two-shop log ends in 2020: on "auto" (a replay) and "log" a posted event is dated at
    the newest known timestamp, so it does not jump years ahead of the log; on "wall" it is
    dated by the server's clock. An explicit later timestamp moves the log clock on."""
    newest = int(two_shop_dataset().events["timestamp"].max())
    settings = ServiceSettings(
        run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN, clock=clock
    )
    with TestClient(create_app(settings)) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        want = "wall" if clock == "wall" else "log"
        assert c.get("/ready").json()["clock"] == want
        before = int(time.time())
        c.post("/events", json={"user_id": "u1", "item_id": "i2"}, headers=AUTH)
        c.post("/events", json={"user_id": "u1", "item_id": "i3", "timestamp": newest + 60},
               headers=AUTH)  # fmt: skip
        c.post("/events", json={"user_id": "u2", "item_id": "i4"}, headers=AUTH)
        dated = {e.item_id: e.ts for u in ("u1", "u2") for e in engine.store.user_events(u)}
        if want == "log":
            assert dated == {"i2": newest, "i3": newest + 60, "i4": newest + 60}
        else:
            assert dated["i2"] >= before and dated["i4"] >= before
    with pytest.raises(ConfigError, match="clock 'lunar'"):
        ServiceSettings(run_dir=str(text_run), token=TOKEN, clock="lunar")


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_a_repeat_rnn_steps_its_state_on_a_write_and_serves_the_offline_scores(
    dataset_dir: Path, tmp_path: Path, name: str
) -> None:
    """An RNN with the repeat term advances a cached state one step per event (no forward
    pass over the window) and its repeat term from the state's window: the stepped state
    equals the recomputed one, and the served scores equal offline recommend."""
    rec = fit_tiny(dataset_dir, name, repeat=True, repeat_visits=True)
    assert rec.model is not None and rec.model.repeat is not None
    rec.model.repeat.set_weights(torch.linspace(3.0, -3.0, rec.model.repeat.n_buckets))
    with serve(rec, tmp_path) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        assert engine._stepper is not None
        for user in ("u3", "fresh"):
            c.get(f"/users/{user}/recommendations")
            for i, item in enumerate(("i2", "i7", "i2")):
                event = {"user_id": user, "item_id": item, "timestamp": 1_700_000_000 + i // 2}
                assert c.post("/events", json=event, headers=AUTH).status_code == 201
            stepped, fresh = engine.user_state(user), engine._compute_state(user)
            torch.testing.assert_close(stepped.hidden, fresh.hidden, atol=1e-5, rtol=1e-5)
            assert stepped.repeat is not None and fresh.repeat is not None
            np.testing.assert_array_equal(stepped.repeat[0], fresh.repeat[0])
            np.testing.assert_allclose(stepped.repeat[1], fresh.repeat[1], atol=1e-5)
        # the new user's three writes were steps, not recomputations (u3's log fills max_len 8,
        # so theirs are recomputed)
        assert engine.state_steps >= 3
        posted = [("i2", None, 1_700_000_000), ("i7", None, 1_700_000_000)]
        history = user_history_events(dataset_dir, "u3") + posted + [("i2", None, 1_700_000_001)]
        got = c.get("/users/u3/recommendations?k=6&exclude_seen=false").json()["items"]
        body = {"history": [{"item_id": i, "behaviour": b, "timestamp": t} for i, b, t in history],
                "k": 6, "exclude_seen": False}  # fmt: skip
        want = c.post("/recommendations", json=body).json()["items"]  # recomputed from scratch
        assert [x["item_id"] for x in got] == [x["item_id"] for x in want]
        np.testing.assert_allclose([x["score"] for x in got], [x["score"] for x in want], atol=1e-4)


def user_history_events(dataset_dir: Path, user_id: str) -> list[tuple[str, str | None, int]]:
    from chronorec import load_prepared

    ds = load_prepared(dataset_dir)
    user = ds.users.filter(pl.col("user_id") == user_id)["user"][0]
    ev = ds.events.filter(pl.col("user") == user).sort("position")
    ids = ds.item_ids()
    names = ds.behaviours
    return [
        (ids[i - 1], names[b - 1], int(t))
        for i, b, t in zip(ev["item"], ev["behaviour"], ev["timestamp"], strict=True)
    ]


def test_recommend_and_the_service_leave_seen_items_in_as_the_run_was_evaluated(
    dataset_dir: Path, tmp_path: Path
) -> None:
    """A run with data.exclude_seen = false (a repeat-heavy log) keeps a user's items in its
    rankings by default offline and in the service, as its evaluation did; each is told
    otherwise per call."""
    rec = fit_tiny(dataset_dir, "gru", data=DataConfig(exclude_seen=False))
    seen = set(user_history_events(dataset_dir, "u1")[i][0] for i in range(3))
    offline, _ = rec.recommend(["u1"], k=24)
    assert seen <= set(offline[0])
    offline, _ = rec.recommend(["u1"], k=24, exclude_seen=True)
    assert not seen & set(offline[0])
    with serve(rec, tmp_path) as c:
        got = {x["item_id"] for x in c.get("/users/u1/recommendations?k=24").json()["items"]}
        assert seen <= got
        url = "/users/u1/recommendations?k=24&exclude_seen=true"
        assert not seen & {x["item_id"] for x in c.get(url).json()["items"]}


def test_a_forgotten_users_logged_events_leave_popularity_at_the_next_start(
    text_run: Path, tmp_path: Path
) -> None:
    """Popularity (what a user with no events is shown) is counted at start-up over the log
    without the forgotten users' events."""
    settings = ServiceSettings(
        run_dir=str(text_run), db_url=f"sqlite:///{tmp_path}/e.db", token=TOKEN
    )
    with TestClient(create_app(settings)) as c:
        before = c.app.state.engine._pop.copy()  # type: ignore[attr-defined]
        base = c.app.state.engine._base  # type: ignore[attr-defined]
        u = c.app.state.engine._base_users["u1"]  # type: ignore[attr-defined]
        mine = base.items[base.offsets[u] : base.offsets[u + 1]]
        assert c.delete("/users/u1", headers=AUTH).status_code == 200
    with TestClient(create_app(settings)) as c:
        after = c.app.state.engine._pop  # type: ignore[attr-defined]
    assert (after[mine] < before[mine]).all()  # each of u1's items lost their events
    others = np.setdiff1d(np.arange(1, len(before)), mine)
    np.testing.assert_allclose(after[others], before[others])
