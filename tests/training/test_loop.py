"""The training loop: windows, losses end to end, early stopping, checkpoints, resume, budget."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save_file

from chronorec.config import ModelConfig, RunConfig, TrainConfig
from chronorec.data.sequences import EventArrays
from chronorec.data.splits import Split
from chronorec.errors import ChronorecError, DataError
from chronorec.models.model import NextItemModel
from chronorec.recommender import Recommender, make_split
from chronorec.training import training_windows
from chronorec.training.checkpoint import load_train_state
from chronorec.training.loop import lr_decay_factor, target_positions, train


def tiny(name: str = "transformer", **train: object) -> RunConfig:
    model = ModelConfig(name=name, d_model=32, n_layers=1, n_heads=2, dropout=0.0, max_len=8)
    opts = dict(lr=1e-2, batch_size=16, max_epochs=4, warmup_steps=5, threads=1)
    opts.update(train)
    return RunConfig(model=model, train=TrainConfig(**opts))  # type: ignore[arg-type]


def test_training_windows_cover_every_target_once():
    lengths = np.array([0, 1, 2, 5, 12])  # user 0 = padding; user 1 has nothing to learn
    users, ends = training_windows(lengths, max_len=4, all_windows=False)
    assert users.tolist() == [2, 3, 4] and ends.tolist() == [2, 5, 12]
    users, ends = training_windows(lengths, max_len=4, all_windows=True)
    # user 4: windows of 5 events ending at 12, 8, 4 -> targets 8..11, 4..7, 1..3
    assert list(zip(users.tolist(), ends.tolist(), strict=True)) == [
        (2, 2), (3, 5), (4, 12), (4, 8), (4, 4)
    ]  # fmt: skip


@pytest.mark.parametrize("loss", ["sampled", "bce"])
def test_sampled_losses_learn_the_pattern(successor, loss):
    cfg = tiny(loss=loss, n_negatives=8, max_epochs=40, eval_every=40)
    rec = Recommender(cfg).fit(successor, progress=False)
    assert rec.evaluate("test")["hr@1"] == 1.0


def test_behaviour_head_learns_which_items_are_bought(successor):
    """Make "buy" (behaviour 2) depend only on the item (even items are bought): the pointwise
    head must then separate test targets by behaviour, AUC near 1."""
    import polars as pl

    events = successor.events.with_columns(
        (1 + (pl.col("item") % 2 == 0).cast(pl.Int8)).alias("behaviour")
    )
    data = type(successor)(events, successor.items, successor.users, successor.manifest)
    cfg = tiny(max_epochs=30, eval_every=30)
    cfg = cfg.replace(model=ModelConfig(**{**cfg.model.__dict__, "behaviour_head": True}))
    rec = Recommender(cfg).fit(data, progress=False)
    assert rec.behaviour_auc("test", behaviour=2) > 0.95


def test_behaviour_head_reads_the_users_earlier_events_on_the_item():
    """A user buys an item exactly when they have had it before (any item, any user): only the
    history says which targets are purchases, and the history features say it directly."""
    import polars as pl

    from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset

    rng = np.random.default_rng(0)
    n_users, length, n_items = 200, 12, 30
    items = rng.integers(1, n_items + 1, (n_users, length))
    before = np.array([[row[t] in row[:t] for t in range(length)] for row in items])
    users = np.repeat(np.arange(1, n_users + 1), length)
    pos = np.tile(np.arange(length), n_users)
    events = pl.DataFrame({
        "user": users.astype(np.int32), "item": items.ravel().astype(np.int32),
        "timestamp": (100_000 * users + 3600 * pos).astype(np.int64),
        "behaviour": (1 + before.ravel()).astype(np.int8),
        "value": np.ones(users.size, dtype=np.float32), "position": pos.astype(np.int32),
    }).with_columns(pl.col("timestamp").diff().over("user").alias("gap"))  # fmt: skip
    catalogue = pl.DataFrame({"item": np.arange(1, n_items + 1, dtype=np.int32),
                              "item_id": [f"i{i}" for i in range(1, n_items + 1)]})  # fmt: skip
    people = pl.DataFrame({"user": np.arange(1, n_users + 1, dtype=np.int32),
                           "user_id": [f"u{u}" for u in range(1, n_users + 1)]})  # fmt: skip
    manifest = {"format_version": FORMAT_VERSION, "format": "synthetic",
                "behaviours": ["view", "buy"], "has_timestamps": True, "text_columns": [],
                "counts": {"users": n_users, "items": n_items, "events": users.size}}  # fmt: skip
    data = PreparedDataset(events=events, items=catalogue, users=people, manifest=manifest)
    cfg = tiny(name="gru", max_epochs=15, eval_every=15, behaviour_loss_weight=2.0)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, max_len=12, behaviour_head=True))
    rec = Recommender(cfg).fit(data, progress=False)
    assert rec.behaviour_auc("test", behaviour=2) > 0.95


def test_a_run_saved_before_head_features_loads_without_them(successor, tmp_path):
    import json

    cfg = tiny(max_epochs=1)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, behaviour_head=True,
                                                behaviour_features=False))  # fmt: skip
    rec = Recommender(cfg).fit(successor, run_dir=tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    del saved["config"]["model"]["behaviour_features"]  # as written before the option existed
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    old = Recommender.load(tmp_path / "run", dataset=successor)
    assert old.model is not None and old.model.behaviour_head is not None
    assert old.model.behaviour_head.n_features == 0
    assert old.behaviour_auc("test") == rec.behaviour_auc("test")


def test_roc_auc_against_hand_computed_values():
    from chronorec.recommender import _roc_auc

    labels = np.array([True, False, True, False])
    assert _roc_auc(np.array([0.9, 0.1, 0.8, 0.2]), labels) == 1.0
    assert _roc_auc(np.array([0.1, 0.9, 0.2, 0.8]), labels) == 0.0
    assert _roc_auc(np.array([0.5, 0.5, 0.9, 0.1]), labels) == 0.875  # (0.5 + 1 + 1 + 1) / 4


def test_same_seed_gives_the_same_model(successor):
    a = Recommender(tiny(max_epochs=2)).fit(successor, progress=False)
    b = Recommender(tiny(max_epochs=2)).fit(successor, progress=False)
    assert a.model is not None and b.model is not None
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                              strict=True):  # fmt: skip
        torch.testing.assert_close(pa, pb, msg=name)


def test_save_load_gives_identical_scores(successor, tmp_path):
    rec = Recommender(tiny(max_epochs=2)).fit(successor, progress=False)
    rec.save(tmp_path / "run")
    back = Recommender.load(tmp_path / "run", dataset=successor)
    ids_a, scores_a = rec.recommend(["u1", "u2"], k=5)
    ids_b, scores_b = back.recommend(["u1", "u2"], k=5)
    assert ids_a == ids_b
    np.testing.assert_array_equal(scores_a, scores_b)


def test_refit_trains_again_on_every_event_before_the_test_cut(successor, tmp_path):
    plain = Recommender(tiny(max_epochs=3)).fit(successor, progress=False)
    rec = Recommender(tiny(max_epochs=3, refit=True))
    rec.fit(successor, run_dir=tmp_path / "run", progress=False)
    assert rec.result is not None and rec.valid_model is not None and rec.model is not None
    split = make_split(successor, rec.config)
    assert rec.meta["refit"]["events"] == split.before_test.height > split.train.height
    assert rec.meta["refit"]["epochs"] == rec.result.best_epoch
    # validation keeps the weights trained on the training split only, as without a refit
    assert rec.evaluate("valid", slices=()).metrics == plain.evaluate("valid", slices=()).metrics
    first, refit = rec.valid_model.state_dict(), rec.model.state_dict()
    assert any(not torch.equal(first[name], refit[name]) for name in first)
    back = Recommender.load(tmp_path / "run", dataset=successor)
    for which in ("valid", "test"):
        np.testing.assert_array_equal(back.evaluate(which).ranks, rec.evaluate(which).ranks)
    # the test split and recommendations score with the refit weights
    assert not np.array_equal(rec.recommend(["u1"])[1], plain.recommend(["u1"])[1])
    with rec.at("valid"):
        np.testing.assert_array_equal(rec.recommend(["u1"])[1], plain.recommend(["u1"])[1])
    # the first weights on the test split: what the run would score without its refit
    np.testing.assert_array_equal(rec.evaluate("test", first_weights=True).ranks,
                                  plain.evaluate("test").ranks)  # fmt: skip


def test_refit_all_trains_the_recipe_on_every_event_and_refuses_evaluation(successor, tmp_path):
    rec = Recommender(tiny(max_epochs=3)).fit(successor, run_dir=tmp_path / "run", progress=False)
    assert rec.best_epoch >= 1
    served = Recommender.load(tmp_path / "run", dataset=successor).refit_all(progress=False)
    trained = served.meta["trained_on_all"]
    assert trained["events"] == successor.events.height and trained["epochs"] == rec.best_epoch
    # the same as fitting the recipe, without validation, on a split whose training part is
    # every event: same seed, same epochs, same weights
    empty = successor.events.clear()
    everything = Split(successor.events, empty, empty, "all", successor.events)
    cfg = tiny(max_epochs=rec.best_epoch)
    direct = Recommender(cfg).fit(successor, split=everything, progress=False)
    assert served.model is not None and direct.model is not None
    for (name, a), b in zip(served.model.state_dict().items(),
                            direct.model.state_dict().values(), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ChronorecError, match="trained on every event"):
        served.evaluate("test")
    served.save(tmp_path / "served")
    back = Recommender.load(tmp_path / "served", dataset=successor)
    assert back.valid_model is None and "trained_on_all" in back.meta
    np.testing.assert_array_equal(back.recommend(["u1"])[1], served.recommend(["u1"])[1])


def test_refit_all_needs_an_epoch_count_from_validation(successor):
    rec = Recommender(tiny(max_epochs=1))
    empty = successor.events.clear()
    rec.fit(successor, split=Split(successor.events, empty, empty, "all", successor.events),
            progress=False)  # fmt: skip
    with pytest.raises(ChronorecError, match="no validated epoch count"):
        rec.refit_all(progress=False)
    assert rec.refit_all(epochs=1, progress=False).meta["trained_on_all"]["epochs"] == 1


def test_save_load_keeps_the_text_tower(successor, random_text, tmp_path):
    cfg = tiny(max_epochs=1)
    cfg = cfg.replace(model=ModelConfig(**{**cfg.model.__dict__, "item_repr": "id+text"}))
    rec = Recommender(cfg).fit(successor, text_vectors=random_text(20), progress=False)
    rec.save(tmp_path / "run")
    back = Recommender.load(tmp_path / "run")  # no dataset: ad-hoc histories only
    a = rec.recommend_histories([["i3", "i4"]], k=3)
    b = back.recommend_histories([["i3", "i4"]], k=3)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_checkpoints_each_epoch_and_resume_continues(successor, tmp_path):
    run = tmp_path / "run"
    Recommender(tiny(max_epochs=2)).fit(successor, run_dir=run, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert load_train_state(run / "train_state.pt")["loop"]["epoch"] == 2
    with pytest.raises(ChronorecError, match="different config"):
        Recommender(tiny(max_epochs=3, lr=1e-3)).fit(
            successor, run_dir=run, resume=True, progress=False
        )


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(successor, tmp_path):
    Recommender(tiny(max_epochs=3)).fit(successor, run_dir=tmp_path / "a", progress=False)
    Recommender(tiny(max_epochs=1)).fit(successor, run_dir=tmp_path / "b", progress=False)
    resumed = Recommender(tiny(max_epochs=3)).fit(
        successor, run_dir=tmp_path / "b", resume=True, progress=False
    )
    assert resumed.result is not None and resumed.result.epochs == 3
    a = load_train_state(tmp_path / "a" / "train_state.pt")["weights"]
    b = load_train_state(tmp_path / "b" / "train_state.pt")["weights"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    # the latest weights live in the state file alone: no second file to fall out of step
    assert not (tmp_path / "b" / "last.safetensors").exists()


def test_resume_reads_a_run_saved_with_last_safetensors(successor, tmp_path):
    """A run from before the weights moved into train_state.pt resumes from last.safetensors."""
    Recommender(tiny(max_epochs=3)).fit(successor, run_dir=tmp_path / "a", progress=False)
    Recommender(tiny(max_epochs=1)).fit(successor, run_dir=tmp_path / "b", progress=False)
    state = load_train_state(tmp_path / "b" / "train_state.pt")
    save_file(state.pop("weights"), str(tmp_path / "b" / "last.safetensors"))
    torch.save(state, tmp_path / "b" / "train_state.pt")
    Recommender(tiny(max_epochs=3)).fit(
        successor, run_dir=tmp_path / "b", resume=True, progress=False
    )
    a = load_train_state(tmp_path / "a" / "train_state.pt")["weights"]
    b = load_train_state(tmp_path / "b" / "train_state.pt")["weights"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_max_minutes_stops_early_and_keeps_the_best(successor, tmp_path):
    cfg = tiny(max_epochs=10_000, max_minutes=0.02, patience=10_000)
    rec = Recommender(cfg).fit(successor, run_dir=tmp_path / "run", progress=False)
    assert rec.result is not None
    assert rec.result.stopped == "max_minutes" and rec.result.epochs < 10_000
    assert rec.result.best_epoch >= 1 and (tmp_path / "run" / "model.safetensors").is_file()


def test_target_positions_next_event_and_next_basket():
    # padding, basket {5, 6} at t=10, basket {7} at t=20, basket {8, 9} at t=30
    items = torch.tensor([[0, 5, 6, 7, 8, 9]])
    stamps = torch.tensor([[0, 10, 10, 20, 30, 30]])
    assert target_positions(items, stamps, "next-event").tolist() == [[1, 2, 3, 4, 5]]
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([target_positions(items, stamps, "next-basket", g) for _ in range(200)])
    assert draws[:, [0, 4]].eq(-1).all()  # padding; the last basket has no next one in view
    assert draws[:, 1:3].eq(3).all()  # both events of {5, 6} predict 7
    assert set(draws[:, 3].tolist()) == {4, 5}  # 7 predicts 8 or 9, drawn anew each time
    # a batch: rows with different padding; one row is a single basket (no targets at all)
    items = torch.tensor([[0, 0, 0, 3, 4, 5], [0, 0, 1, 2, 2, 2], [6, 7, 8, 9, 1, 2]])
    stamps = torch.tensor([[0, 0, 0, 5, 5, 5], [0, 0, 1, 2, 2, 3], [1, 2, 2, 3, 3, 3]])
    pos = target_positions(items, stamps, "next-basket", g)
    assert pos[0].tolist() == [-1] * 5
    assert pos[1, :2].tolist() == [-1, -1] and pos[1, 2] in (3, 4) and pos[1, 3:].tolist() == [5, 5]
    assert pos[2, 0] in (1, 2) and set(pos[2, 1:3].tolist()) <= {3, 4, 5}
    assert pos[2, 3:].tolist() == [-1, -1]


def test_target_positions_next_window():
    # baskets {1} t=0, {2, 3} t=1 day, {4} t=2 days, {5} t=10 days; a 3-day window
    day = 86_400
    items = torch.tensor([[0, 1, 2, 3, 4, 5]])
    stamps = torch.tensor([[0, 0, day, day, 2 * day, 10 * day]])
    g = torch.Generator().manual_seed(0)
    draws = torch.cat(
        [target_positions(items, stamps, "next-window", g, 3 * day) for _ in range(300)]
    )
    assert draws[:, 0].eq(-1).all()  # padding
    assert set(draws[:, 1].tolist()) == {2, 3, 4}  # t=0 sees days 1 and 2, not day 10
    assert set(draws[:, 2].tolist()) == set(draws[:, 3].tolist()) == {4}  # not its own basket
    assert draws[:, 4].eq(-1).all()  # day 2: the next event is 8 days later
    # a window wide enough to reach day 10 from day 2; the last basket never has a target
    wide = target_positions(items, stamps, "next-window", g, 8 * day)
    assert wide[0, 4] == 5
    # padded with timestamp 0 before a real event at timestamp 0: padding is never a target
    items = torch.tensor([[0, 0, 7, 8]])
    stamps = torch.tensor([[0, 0, 0, 5]])
    assert target_positions(items, stamps, "next-window", g, 10).tolist() == [[-1, -1, 3]]


@pytest.mark.parametrize("metric, best_epoch", [("ndcg@10", 1), ("recall@20", 2)])
def test_select_metric_picks_the_kept_checkpoint(successor, metric, best_epoch):
    """Early stopping and the kept weights follow train.select_metric: with scripted validation
    scores whose NDCG@10 peaks at epoch 1 and Recall@20 at epoch 2, each choice keeps its own."""
    scripted = iter([{"ndcg@10": 0.5, "recall@20": 0.1}, {"ndcg@10": 0.2, "recall@20": 0.9},
                     {"ndcg@10": 0.1, "recall@20": 0.3}])  # fmt: skip
    cfg = tiny(max_epochs=3, select_metric=metric)
    n_behaviours = int(successor.events["behaviour"].max())  # type: ignore[arg-type]
    model = NextItemModel(cfg.model, successor.n_items, n_behaviours, None)
    events = EventArrays.from_events(successor.events, n_users=successor.n_users)
    result = train(model, events, cfg.train, validate=lambda m: next(scripted), progress=False)
    assert result.best_epoch == best_epoch
    assert result.best_metrics[metric] == {"ndcg@10": 0.5, "recall@20": 0.9}[metric]


def test_next_basket_training_skips_windows_without_targets(successor):
    """Users whose events share one timestamp have no next basket: their windows are skipped,
    the rest train, and the loss stays finite."""
    one_basket = successor.events["user"] <= 40
    events = successor.events.with_columns(
        timestamp=pl.when(one_basket).then(pl.lit(7, dtype=pl.Int64)).otherwise(pl.col("timestamp"))
    )
    data = dataclasses.replace(successor, events=events)
    cfg = tiny(target="next-basket", max_epochs=2, batch_size=4, loss="sampled", n_negatives=4)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, repeat=True))
    rec = Recommender(cfg).fit(data, progress=False)
    assert rec.result is not None
    assert all(np.isfinite(h["loss"]) and h["tokens"] > 0 for h in rec.result.history)


def test_next_basket_training_needs_timestamps(successor):
    untimed = dataclasses.replace(
        successor, manifest={**successor.manifest, "has_timestamps": False}
    )
    with pytest.raises(ChronorecError, match="next-basket"):
        Recommender(tiny(target="next-basket")).fit(untimed, progress=False)
    rec = Recommender(tiny(target="next-basket", max_epochs=2)).fit(successor, progress=False)
    assert rec.result is not None and np.isfinite(rec.result.history[-1]["loss"])


def test_lr_decay_factor_known_values():
    assert lr_decay_factor("none", 0.7) == 1.0
    assert lr_decay_factor("linear", 0.25) == pytest.approx(0.75)
    assert lr_decay_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_decay_factor("cosine", 1.5) == pytest.approx(0.0)  # past the budget: clamped
    assert lr_decay_factor("linear", -1.0) == 1.0
    assert lr_decay_factor("linear", 0.5, start=0.6) == 1.0  # held until the decay starts
    assert lr_decay_factor("linear", 0.8, start=0.6) == pytest.approx(0.5)


@pytest.mark.parametrize(("decay", "last_lr"), [("none", 1e-2), ("linear", 0.0)])
def test_lr_decays_to_zero_at_the_last_epoch(successor, tmp_path, decay, last_lr):
    cfg = tiny(max_epochs=3, warmup_steps=1, lr_decay=decay)
    Recommender(cfg).fit(successor, run_dir=tmp_path / decay, progress=False)
    optimizer = load_train_state(tmp_path / decay / "train_state.pt")["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(last_lr, abs=1e-12)


def test_lr_decay_by_wall_time_budget(successor, tmp_path):
    cfg = tiny(max_epochs=10_000, max_minutes=0.02, patience=10_000, lr_decay="linear")
    Recommender(cfg).fit(successor, run_dir=tmp_path / "run", progress=False)
    optimizer = load_train_state(tmp_path / "run" / "train_state.pt")["optimizer"]
    # the budget ran out, so the last step's rate is well below the 1e-2 it starts from (loose:
    # validation after the last step may take a while on a busy machine)
    assert optimizer["param_groups"][0]["lr"] < 5e-3


def test_early_stopping_on_validation_ndcg(successor):
    rec = Recommender(tiny(max_epochs=200, patience=2)).fit(successor, progress=False)
    assert rec.result is not None
    assert rec.result.stopped == "patience" and rec.result.epochs < 200
    assert rec.result.best_metrics["ndcg@10"] == 1.0


@pytest.mark.parametrize("repeat", [False, True])
def test_exported_vectors_reproduce_the_model_scores(successor, random_text, repeat):
    """user_vectors . item_vectors = the model's scores: text score term and cosine head
    included; the repeat term (history-dependent) is the only thing left out."""
    cfg = tiny(max_epochs=1)
    cfg = cfg.replace(model=ModelConfig(**{
        **cfg.model.__dict__, "item_repr": "id+text", "text_score": True, "score": "cosine",
        "repeat": repeat,
    }))  # fmt: skip
    rec = Recommender(cfg).fit(successor, text_vectors=random_text(20), progress=False)
    items = rec.item_vectors()
    ids, users = rec.user_vectors(batch_size=5)  # several batches
    assert ids == [f"u{u}" for u in range(1, 65)] and items.shape == (20, users.shape[1])
    assert users.shape[1] == 32 + 16  # d_model + the text vectors' width (text score term)
    batch, _ = rec.user_batch(ids, cfg.model.max_len)
    model = rec.model
    assert model is not None
    expected = rec.score(batch)[:, 1:]
    if repeat:
        bonus = model.repeat_bonus(torch.from_numpy(batch.items),
                                   torch.from_numpy(batch.behaviours),
                                   torch.from_numpy(batch.timestamps))  # fmt: skip
        assert bonus is not None
        expected = expected - bonus[:, 1:]
    torch.testing.assert_close(torch.from_numpy(users @ items.T), expected, rtol=1e-4, atol=1e-4)
    chosen, vectors = rec.user_vectors(["u3", "u1"])
    np.testing.assert_allclose(vectors, users[[2, 0]], rtol=1e-5, atol=1e-5)  # other batch
    assert chosen == ["u3", "u1"] and rec.user_vectors([])[1].shape == (0, users.shape[1])


def view_or_buy_dataset(successor, n_users: int = 256, length: int = 12):  # type: ignore[no-untyped-def]
    """After item x the next event is a view of x + 1 (80%) or a purchase of x + 2 (20%); the
    history does not tell which comes. Trained on every step alike a model ranks x + 1 first;
    what is bought after x is x + 2."""
    rng = np.random.default_rng(0)
    n_items = successor.n_items
    rows = []
    for u in range(1, n_users + 1):
        x = int(rng.integers(1, n_items + 1))
        for pos in range(length):
            buy = pos > 0 and rng.random() < 0.2
            if pos > 0:
                x = (x - 1 + (2 if buy else 1)) % n_items + 1
            rows.append((u, x, 100_000 * u + 3600 * pos, 2 if buy else 1, pos))
    events = pl.DataFrame(
        rows, schema={"user": pl.Int32, "item": pl.Int32, "timestamp": pl.Int64,
                      "behaviour": pl.Int8, "position": pl.Int32}, orient="row",
    ).with_columns(
        pl.lit(1.0, dtype=pl.Float32).alias("value"),
        pl.col("timestamp").diff().over("user").alias("gap"),
    )  # fmt: skip
    users = pl.DataFrame({"user": np.arange(1, n_users + 1, dtype=np.int32),
                          "user_id": [f"u{u}" for u in range(1, n_users + 1)]})  # fmt: skip
    return type(successor)(events, successor.items, users, successor.manifest)


def fit_view_or_buy(data, model: ModelConfig, **train: object) -> Recommender:  # type: ignore[no-untyped-def]
    """A tiny GRU recipe on :func:`view_or_buy_dataset`, purchases (2) as the target."""
    from chronorec.config import DataConfig

    opts: dict[str, object] = dict(lr=1e-2, batch_size=16, max_epochs=10, eval_every=10,
                                   warmup_steps=5, threads=1)  # fmt: skip
    opts.update(train)
    cfg = RunConfig(
        model=model,
        train=TrainConfig(**opts),  # type: ignore[arg-type]
        data=DataConfig(target_behaviour=2, exclude_seen=False),
    )
    return Recommender(cfg).fit(data, progress=False)


def after_last_event(data):  # type: ignore[no-untyped-def]
    """(users, last item of each, the batch of their whole histories)."""
    last = data.events.group_by("user").agg(pl.col("item").last()).sort("user")
    users, items = last["user"].to_numpy(), last["item"].to_numpy()
    arrays = EventArrays.from_events(data.events, n_users=int(users.max()))
    lengths = data.events.group_by("user").len().sort("user")["len"].to_numpy()
    return users, items, arrays.histories(users, lengths, 8)


def test_next_behaviour_ranks_for_the_target_behaviour(successor, tmp_path):
    data = view_or_buy_dataset(successor)
    model = dataclasses.replace(tiny("gru").model, next_behaviour=True)
    rec = fit_view_or_buy(data, model)
    users, items, batch = after_last_event(data)
    scores = rec.score(batch, users)
    assert float((scores.argmax(1).numpy() == (items + 1) % 20 + 1).mean()) > 0.9  # x + 2
    # the same model asked for the next view ranks x + 1 first
    assert rec.model is not None
    rec.model.rank_behaviour = 1
    viewed = rec.score(batch, users).argmax(1).numpy()
    assert float((viewed == items % 20 + 1).mean()) > 0.9
    rec.model.rank_behaviour = 2
    rec.save(tmp_path / "run")
    back = Recommender.load(tmp_path / "run", data)
    assert torch.allclose(back.score(batch, users), scores)
    with pytest.raises(ChronorecError, match="data.target_behaviour"):
        RunConfig(model=model)


def test_ema_returns_the_moving_average_of_the_weights_after_every_step(successor, monkeypatch):
    """train.ema: the returned weights are ema <- d * ema + (1 - d) * w after every optimizer
    step, d = min(decay, (1 + n) / (10 + n)) after n updates (the first step's weights to
    start), replayed here from the live weights."""
    from torch.optim.swa_utils import AveragedModel

    steps: list[dict[str, torch.Tensor]] = []
    update = AveragedModel.update_parameters

    def record(self, model):
        steps.append({k: v.detach().clone() for k, v in model.named_parameters()})
        update(self, model)

    monkeypatch.setattr(AveragedModel, "update_parameters", record)
    cfg = tiny(max_epochs=3, ema=0.5)
    model = NextItemModel(cfg.model, successor.n_items, 2, None)
    events = EventArrays.from_events(successor.events, n_users=successor.n_users)
    train(model, events, cfg.train, progress=False)
    assert len(steps) > 10  # both the warm-up (n < 8) and the decay itself
    expected = steps[0]
    for n, weights in enumerate(steps[1:], start=1):
        d = min(0.5, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * w for k, w in weights.items()}
    got = dict(model.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(got[name].detach(), value, msg=name)
    assert any(not torch.equal(got[k].detach(), w) for k, w in steps[-1].items())  # not the live


def test_ema_validates_and_keeps_the_averaged_weights(successor, tmp_path):
    run = tmp_path / "run"
    rec = Recommender(tiny(max_epochs=3, ema=0.9)).fit(successor, run_dir=run, progress=False)
    assert rec.result is not None and rec.model is not None
    # the kept checkpoint is what validation scored, and it is not the live weights
    assert rec.evaluate("valid")["ndcg@10"] == pytest.approx(rec.result.best_metrics["ndcg@10"])
    kept = load_file(str(run / "model.safetensors"))
    live = load_train_state(run / "train_state.pt")["weights"]
    assert any(not torch.equal(kept[k], live[k]) for k in kept)
    for name, value in rec.model.state_dict().items():
        torch.testing.assert_close(value, kept[name], msg=name)
    # resume carries the average on: the same average as an uninterrupted run; a run without
    # one cannot be resumed with it
    short = tmp_path / "short"
    Recommender(tiny(max_epochs=1, ema=0.9)).fit(successor, run_dir=short, progress=False)
    again = Recommender(tiny(max_epochs=3, ema=0.9)).fit(
        successor, run_dir=short, resume=True, progress=False
    )
    assert again.result is not None and again.result.epochs == 3
    a, b = (
        load_train_state(run / "train_state.pt")["ema"],
        load_train_state(short / "train_state.pt")["ema"],
    )
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    plain = tmp_path / "plain"
    Recommender(tiny(max_epochs=1)).fit(successor, run_dir=plain, progress=False)
    with pytest.raises(ChronorecError, match="different config"):
        Recommender(tiny(max_epochs=2, ema=0.9)).fit(
            successor, run_dir=plain, resume=True, progress=False
        )
    with pytest.raises(ChronorecError, match="train.ema must be in"):
        tiny(ema=1.0)


def _continued(dataset, step: int, n_new: int) -> pl.DataFrame:
    """The dataset's log with ``n_new`` more events per user, each ``step`` items after the
    previous one (the log's own pattern is step 1), an hour apart."""
    last = dataset.events.group_by("user").agg(pl.all().last()).sort("user")
    n_items = dataset.n_items
    new = []
    for k in range(1, n_new + 1):
        new.append(last.with_columns(
            ((pl.col("item") - 1 + step * k) % n_items + 1).cast(pl.Int32).alias("item"),
            (pl.col("timestamp") + 3600 * k).alias("timestamp"),
            (pl.col("position") + k).cast(pl.Int32).alias("position"),
        ))  # fmt: skip
    cols = ["user", "item", "timestamp", "behaviour", "position"]
    log = pl.concat([dataset.events.select(cols), *(f.select(cols) for f in new)])
    return log.sort(["user", "position"])


def test_finetune_learns_the_new_events_and_leaves_the_source_alone(successor):
    rec = Recommender(tiny(max_epochs=6)).fit(successor, progress=False)
    assert rec.model is not None
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    top_before = rec.recommend_histories([["i2", "i4"]], k=1)[0][0][0]
    assert top_before == "i5"  # learned: i is followed by i + 1
    # from now on every user skips an item: i is followed by i + 2
    tuned = rec.finetune(_continued(successor, 2, 8), epochs=15, progress=False)
    assert tuned.recommend_histories([["i2", "i4"]], k=1)[0][0][0] == "i6"
    for name, value in rec.model.state_dict().items():  # the source's weights are untouched
        torch.testing.assert_close(value, before[name], msg=name)
    assert rec.recommend_histories([["i2", "i4"]], k=1)[0][0][0] == "i5"
    step = tuned.meta["finetuned"][-1]
    assert step["epochs"] == 15 and step["users"] == successor.n_users and step["lr_scale"] == 1.0
    # a second round is recorded after the first
    again = tuned.finetune(_continued(successor, 2, 8), epochs=1, progress=False)
    assert [s["epochs"] for s in again.meta["finetuned"]] == [15, 1]
    # its events may come after the dataset's targets: evaluation is refused
    with pytest.raises(ChronorecError, match="fine-tuned"):
        tuned.evaluate("test")


def test_finetune_trains_only_the_chosen_users_windows(successor):
    rec = Recommender(tiny(max_epochs=2)).fit(successor, progress=False)
    log = _continued(successor, 2, 4)
    one = rec.finetune(log, users=np.array([1]), progress=False)
    every = rec.finetune(log, progress=False)
    assert one.meta["finetuned"][-1]["users"] == 1
    assert one.model is not None and every.model is not None
    a, b = one.model.state_dict(), every.model.state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)
    # a user whose only window has a single event teaches nothing: a clear error
    single = pl.DataFrame(
        {"user": [1], "item": [3], "timestamp": [0], "behaviour": [1], "position": [0]}
    ).cast(dict(log.schema))  # type: ignore[arg-type]
    with pytest.raises(ChronorecError, match="two events"):
        rec.finetune(single, progress=False)


def test_finetune_refuses_items_outside_the_catalogue(successor):
    rec = Recommender(tiny(max_epochs=1)).fit(successor, progress=False)
    log = _continued(successor, 1, 1).with_columns(
        pl.when(pl.col("user") == 1).then(successor.n_items + 1).otherwise(pl.col("item"))
        .cast(pl.Int32).alias("item")
    )  # fmt: skip
    with pytest.raises(DataError, match="outside this catalogue"):
        rec.finetune(log, progress=False)
    with pytest.raises(ChronorecError, match="at least 1"):
        rec.finetune(successor.events, epochs=0, progress=False)
