"""`chronorec train / evaluate / recommend` end to end on a tiny prepared directory."""

from __future__ import annotations

import json

import pytest

from chronorec.cli import main

TINY = ["--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "model.max_len=8",
        "--set", "model.dropout=0.0", "--set", "train.lr=1e-2", "--set", "train.batch_size=16",
        "--set", "train.max_epochs=30", "--set", "train.eval_every=10", "--set", "train.threads=1",
        "--no-progress"]  # fmt: skip


@pytest.fixture
def prepared(successor, tmp_path):
    return successor.save(tmp_path / "data")


def test_train_evaluate_recommend(prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(prepared), "--model", "gru", "--out", str(run), *TINY]) == 0
    assert "best epoch" in capsys.readouterr().out

    assert main(["evaluate", str(run), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hr@10"] == 1.0 and out["ndcg@10"] == 1.0 and "recall@20" in out
    assert out["ranking"] == "full" and out["exclude_seen"] is True

    # u1's history ends at item i(k); the successor pattern says i(k+1) comes next.
    assert main(["recommend", str(run), "--user", "u1", "-k", "3", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    import polars as pl

    events = pl.read_parquet(prepared / "events.parquet").filter(pl.col("user") == 1)
    last = int(events["item"][-1])
    assert rec["items"][0]["item_id"] == f"i{last % 20 + 1}"
    assert rec["items"][0]["name"] == f"Item number {last % 20 + 1}"

    assert main(["recommend", str(run), "--history", "i4,i5", "-k", "2", "--block", "i6",
                 "--json"]) == 0  # fmt: skip
    items = [r["item_id"] for r in json.loads(capsys.readouterr().out)["items"]]
    assert "i6" not in items and "i4" not in items and len(items) == 2

    assert main(["recommend", str(run), "--history", "i4,i5", "-k", "1", "--allow", "i6,i9",
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == "i6"
    assert "behaviour_auc" not in out  # no behaviour head


def test_evaluate_reports_the_behaviour_heads_auc(successor, tmp_path, capsys):
    # even items are bought, odd ones viewed: the head learns it from the item (AUC near 1)
    import polars as pl

    from chronorec.recommender import Recommender

    events = successor.events.with_columns(
        (1 + (pl.col("item") % 2 == 0).cast(pl.Int8)).alias("behaviour")
    )
    data = type(successor)(events, successor.items, successor.users, successor.manifest)
    run = tmp_path / "run"
    args = ["train", str(data.save(tmp_path / "data")), "--model", "gru", "--out", str(run)]
    assert main([*args, *TINY, "--set", "model.behaviour_head=true"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test", "--json"]) == 0
    auc = json.loads(capsys.readouterr().out)["behaviour_auc"]
    rec = Recommender.load(run)
    assert auc == {"view": pytest.approx(rec.behaviour_auc("test", 1), abs=1e-4),
                   "buy": pytest.approx(rec.behaviour_auc("test", 2), abs=1e-4)}  # fmt: skip
    assert auc["buy"] > 0.95
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    assert "AUC of P(buy | history, item) on the targets" in capsys.readouterr().out


def test_user_mistakes_exit_2_with_a_message(prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(prepared), "--out", str(run), "--set", "model.d_modle=3"]) == 2
    assert "unknown key model.d_modle" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "not a chronorec run" in capsys.readouterr().err
    assert main(["train", str(prepared), "--out", str(run), *TINY[:-1], "--set",
                 "train.max_epochs=1", "--no-progress"]) == 0  # fmt: skip
    assert main(["recommend", str(run), "--user", "nobody"]) == 2
    assert "unknown user id 'nobody'" in capsys.readouterr().err
    assert main(["train", str(prepared), "--out", str(run)]) == 2
    assert "run directory exists" in capsys.readouterr().err


def test_refit_writes_a_run_to_serve_that_cannot_be_evaluated(prepared, tmp_path, capsys):
    run, served = tmp_path / "run", tmp_path / "served"
    assert main(["train", str(prepared), "--out", str(run), *TINY]) == 0
    best = json.loads((run / "metrics.json").read_text())["best_epoch"]
    capsys.readouterr()
    (run / "blend.json").write_text('{"weights": {"transitions": 0.2}, "tuned_on": "valid"}')
    assert main(["refit", str(run), "--out", str(served), "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == best and out["from"] == str(run.resolve())
    # the blend tuned for the run goes along to the run it serves from
    assert (served / "blend.json").read_text() == (run / "blend.json").read_text()
    import polars as pl

    assert out["events"] == pl.read_parquet(prepared / "events.parquet").height

    assert main(["evaluate", str(served)]) == 2
    assert "trained on every event" in capsys.readouterr().err
    assert main(["recommend", str(served), "--history", "i4,i5", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == "i6"

    assert main(["refit", str(run), "--out", str(run)]) == 2
    assert "must be a new directory" in capsys.readouterr().err
    assert main(["refit", str(run), "--out", str(served)]) == 2
    assert "run directory exists" in capsys.readouterr().err
    assert main(["refit", str(run), "--out", str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_export_writes_vectors_an_inner_product_index_ranks_like_the_model(prepared, tmp_path,
                                                                           capsys):  # fmt: skip
    import numpy as np
    import polars as pl

    run, out = tmp_path / "run", tmp_path / "vectors"
    assert main(["train", str(prepared), "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(out), "--users", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["items"] == 20 and manifest["users"] == 64 and manifest["dim"] == 32
    assert json.loads((out / "export.json").read_text()) == manifest
    items = pl.read_parquet(out / "item_vectors.parquet")
    users = pl.read_parquet(out / "user_vectors.parquet")
    assert items["item_id"].to_list() == [f"i{i}" for i in range(1, 21)]
    assert items["name"][0] == "Item number 1"
    # the successor pattern through the exported vectors: u1's best item follows its last one
    u1 = users.filter(pl.col("user_id") == "u1")["vector"].to_numpy()[0]
    best = items["item_id"][int(np.argmax(items["vector"].to_numpy() @ u1))]
    assert main(["recommend", str(run), "--user", "u1", "-k", "1", "--include-seen",
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == best

    assert main(["export", str(run), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(run), "--force"]) == 2
    assert "not the run itself" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(out), "--force"]) == 0
    assert not (out / "user_vectors.parquet").exists()  # replaced whole, not merged


def test_finetune_trains_on_the_service_store_and_writes_a_run_to_reload(
    prepared, tmp_path, capsys
):
    from chronorec.service.store import Event, open_store

    run, tuned = tmp_path / "run", tmp_path / "tuned"
    assert main(["train", str(prepared), "--out", str(run), *TINY]) == 0
    (run / "blend.json").write_text('{"weights": {"transitions": 0.2}, "tuned_on": "valid"}')
    db = tmp_path / "events.db"
    store = open_store(f"sqlite:///{db}")
    events = [Event("u1", f"i{k}", "buy", 10_000_000 + k) for k in (3, 5, 7, 9)]
    events += [
        Event("new-user", "i2", "view", 10_000_000),
        Event("new-user", "i4", "view", 10_000_001),
    ]
    events.append(Event("u2", "not-in-the-catalogue", "view", 10_000_000))
    store.add_events(events)
    store.close()
    capsys.readouterr()
    args = ["finetune", str(run), "--out", str(tuned), "--db", f"sqlite:///{db}", "--no-progress"]
    assert main([*args, "--epochs", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["new_events"] == 6 and out["skipped"] == 1 and out["epochs"] == 2
    assert out["users"] == 2  # u1 and the new user; u2's only event names an unknown item
    assert out["from"] == str(run.resolve())
    assert (tuned / "blend.json").read_text() == (run / "blend.json").read_text()
    scores = []
    for source in (run, tuned):  # the tuned weights score differently, on the same catalogue
        assert main(["recommend", str(source), "--history", "i4,i5", "-k", "3", "--json"]) == 0
        scores.append(
            {x["item_id"]: x["score"] for x in json.loads(capsys.readouterr().out)["items"]}
        )
    assert scores[0] != scores[1]
    assert main(["evaluate", str(tuned)]) == 2
    assert "fine-tuned" in capsys.readouterr().err

    assert (
        main(["finetune", str(run), "--out", str(tmp_path / "x"), "--db", "sqlite:///nope.db"]) == 2
    )
    assert "no such event store" in capsys.readouterr().err
    empty = tmp_path / "empty.db"
    open_store(f"sqlite:///{empty}").close()
    assert (
        main(["finetune", str(run), "--out", str(tmp_path / "x"), "--db", f"sqlite:///{empty}"])
        == 2
    )
    assert "nothing to fine-tune on" in capsys.readouterr().err
    assert main([*args]) == 2
    assert "run directory exists" in capsys.readouterr().err
    # a service that cannot be reached: a clear error, and the run is still written
    nowhere = tmp_path / "nowhere"
    assert main([*args[:3], str(nowhere), *args[4:], "--reload", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--reload http://127.0.0.1:9" in err and "reload it by hand" in err
    assert (nowhere / "model.safetensors").is_file()
