"""`chronorec collect`: a run's dataset plus what its service stored, as a new prepared dataset."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from chronorec import load_prepared
from chronorec.cli import main
from chronorec.config import ModelConfig, RunConfig, TrainConfig
from chronorec.data.collect import collect
from chronorec.recommender import Recommender
from chronorec.service.store import Event, StoredItem, open_store

T0 = 50_000_000  # after every logged event of the synthetic log
POSTED = [
    Event("u1", "i3", "buy", T0),
    Event("n1", "i2", "view", T0),
    Event("n1", "fresh", "view", T0 + 60),
    Event("n1", "i5", "hover", T0 + 120),  # a behaviour the log does not know: the first one
]
FRESH = StoredItem("fresh", {"title": "fresh thing", "price": 2.5, "colour": "red"}, None, None)


def test_collect_adds_stored_events_and_items_and_drops_forgotten_users(successor):
    got = collect(successor, POSTED, [FRESH], forgotten={"u2"})
    ds = got.dataset
    assert (got.events_added, got.items_added, got.users_added, got.users_removed) == (4, 1, 1, 1)
    assert got.fields_left_out == ["colour", "price"]  # the catalogue has a title column only
    # the catalogue: the same rows, then the posted item
    assert ds.item_ids() == [*successor.item_ids(), "fresh"]
    assert ds.items.filter(pl.col("item_id") == "fresh")["title"].to_list() == ["fresh thing"]
    # users: u2 gone with every event of theirs, n1 new, indices dense again
    assert "u2" not in ds.user_ids() and "n1" in ds.user_ids()
    assert ds.users["user"].to_list() == list(range(1, successor.n_users + 1))
    logged = successor.events.height - successor.events.filter(pl.col("user") == 2).height
    assert ds.events.height == logged + 4
    row = dict(zip(ds.users["user_id"], ds.users["user"], strict=True))
    u1 = ds.events.filter(pl.col("user") == row["u1"]).sort("position")
    before = successor.events.filter(pl.col("user") == 1)
    assert u1.height == before.height + 1 and u1["position"].to_list() == list(range(u1.height))
    last = u1.row(-1, named=True)
    assert (last["item"], last["timestamp"], last["behaviour"], last["value"]) == (3, T0, 2, None)
    assert last["gap"] == T0 - before["timestamp"].max()
    n1 = ds.events.filter(pl.col("user") == row["n1"]).sort("position")
    assert n1["item"].to_list() == [2, successor.n_items + 1, 5]
    assert n1["behaviour"].to_list() == [1, 1, 1] and n1["gap"].to_list() == [None, 60, 60]
    assert ds.manifest["counts"] == {"users": ds.n_users, "items": 21, "events": ds.events.height}
    # it is a dataset like any other: training on it learns the posted item's id too
    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=16, max_len=8),
        train=TrainConfig(max_epochs=1, batch_size=16, threads=1),
    )
    rec = Recommender(cfg).fit(ds, progress=False)
    assert rec.recommend_histories([["i2", "fresh"]], k=3)[0][0]


def test_collect_command_writes_a_dataset_to_train_on(successor, tmp_path: Path, capsys):
    data = successor.save(tmp_path / "data")
    (data / "text_cache").mkdir()
    (data / "text_cache" / "file-hashes.json").write_text("{}")
    run = tmp_path / "run"
    tiny = ["--set", "model.d_model=16", "--set", "model.max_len=8", "--set",
            "train.max_epochs=1", "--set", "train.threads=1", "--no-progress"]  # fmt: skip
    assert main(["train", str(data), "--out", str(run), *tiny]) == 0
    db = tmp_path / "events.db"
    store = open_store(f"sqlite:///{db}")
    store.add_events(POSTED)
    store.add_item(FRESH)
    store.add_events([Event("u2", "i7", "view", T0)])
    store.forget_user("u2")
    store.close()
    capsys.readouterr()
    out = tmp_path / "collected"
    args = ["collect", str(run), "--out", str(out), "--db", f"sqlite:///{db}"]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["events_added"] == 4 and summary["items_added"] == 1
    assert summary["users_removed"] == 1 and summary["items"] == successor.n_items + 1
    ds = load_prepared(out)
    assert ds.events.height == summary["events"] and "u2" not in ds.user_ids()
    assert (out / "text_cache" / "file-hashes.json").is_file()  # the cache came along
    assert main(["train", str(out), "--out", str(tmp_path / "run2"), *tiny]) == 0

    capsys.readouterr()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["collect", str(run), "--out", str(tmp_path / "x"), "--db", "sqlite:///no.db"]) == 2
    assert "no such event store" in capsys.readouterr().err
    assert (
        main(["collect", str(run), "--out", str(data), "--db", f"sqlite:///{db}", "--force"]) == 2
    )
    assert "not the run's dataset" in capsys.readouterr().err


def test_a_forgotten_user_who_comes_back_keeps_only_what_they_posted_since(successor):
    again = [Event("u3", "i9", "buy", T0)]  # posted after DELETE /users/u3
    ds = collect(successor, again, [], forgotten={"u3"}).dataset
    row = dict(zip(ds.users["user_id"], ds.users["user"], strict=True))["u3"]
    mine = ds.events.filter(pl.col("user") == row)
    assert mine.select("item", "position", "value", "gap").rows() == [(9, 0, None, None)]


def test_a_service_on_a_collected_dataset_counts_each_stored_event_once(
    successor, tmp_path, capsys
):
    """Serve, collect, train on the collected dataset, reload: the events folded into it are not
    read again from the store, the ones posted later are; fine-tuning and a second collect take
    only those."""
    from fastapi.testclient import TestClient

    TOKEN = "collect-token"  # noqa: N806

    from chronorec.service import ServiceSettings, create_app

    auth = {"Authorization": f"Bearer {TOKEN}"}
    data = successor.save(tmp_path / "data")
    tiny = ["--set", "model.d_model=16", "--set", "model.max_len=8", "--set",
            "train.max_epochs=1", "--set", "train.threads=1", "--no-progress"]  # fmt: skip
    run, run2, collected = tmp_path / "run", tmp_path / "run2", tmp_path / "collected"
    assert main(["train", str(data), "--out", str(run), *tiny]) == 0
    db = f"sqlite:///{tmp_path / 'events.db'}"
    logged_u1 = successor.events.filter(pl.col("user") == 1).height
    app = create_app(ServiceSettings(run_dir=str(run), db_url=db, token=TOKEN))
    with TestClient(app) as c:

        def n_events(user: str) -> int:
            return int(c.get(f"/users/{user}/recommendations").json()["n_events"])

        posted = [{"user_id": "u1", "item_id": "i3", "timestamp": T0},
                  {"user_id": "u1", "item_id": "i4", "timestamp": T0 + 60},
                  {"user_id": "n1", "item_id": "i2", "timestamp": T0}]  # fmt: skip
        assert c.post("/events", json={"events": posted}, headers=auth).status_code == 201
        assert c.delete("/users/u2", headers=auth).status_code == 200
        assert n_events("u1") == logged_u1 + 2
        assert main(["collect", str(run), "--out", str(collected), "--db", db]) == 0
        assert main(["train", str(collected), "--out", str(run2), *tiny]) == 0
        body = {"run": str(run2), "dataset": str(collected)}
        assert c.post("/admin/reload", json=body, headers=auth).status_code == 200
        assert n_events("u1") == logged_u1 + 2  # in the dataset now, not read twice
        assert n_events("n1") == 1 and n_events("u2") == 0
        later = {"user_id": "u1", "item_id": "i5", "timestamp": T0 + 120}
        assert c.post("/events", json=later, headers=auth).status_code == 201
        assert n_events("u1") == logged_u1 + 3
    capsys.readouterr()
    assert main(["finetune", str(run2), "--out", str(tmp_path / "ft"), "--db", db,
                 "--epochs", "1", "--no-progress", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["new_events"] == 1  # only the one posted later
    again = tmp_path / "again"
    assert main(["collect", str(run2), "--out", str(again), "--db", db, "--json"]) == 0
    assert load_prepared(again).events.height == load_prepared(collected).events.height + 1
