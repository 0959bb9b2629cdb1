"""The repeat bias: hand-computed bonuses, and a repeat pattern learned through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset
from chronorec.data.sequences import EventArrays
from chronorec.errors import ConfigError
from chronorec.models.repeat import RepeatBias, age_buckets, distance_buckets, visit_index
from chronorec.recommender import Recommender


def test_distance_buckets_are_log2():
    d = torch.tensor([0, 1, 2, 3, 4, 7, 8, 1000])
    assert distance_buckets(d, 6).tolist() == [0, 1, 2, 2, 3, 3, 4, 5]


def test_bonus_by_hand():
    bias = RepeatBias(n_behaviours=2, n_buckets=4)
    bias.set_weights(torch.tensor([1.0, 10.0, 100.0, 1000.0]), torch.tensor([0.0, 0.0, 0.5]))
    items = torch.tensor([[0, 3, 5, 3]])  # left padding, then 3, 5, 3 (oldest first)
    behaviours = torch.tensor([[0, 1, 2, 1]])
    last = bias.last(items, behaviours, n_items=6)  # (1, 7)
    # item 3: steps back 0 (bucket 0) + 2 (bucket 2) = 1 + 100; item 5: 1 back -> 10 + 0.5
    expected = torch.zeros(1, 7)
    expected[0, 3], expected[0, 5] = 101.0, 10.5
    assert torch.allclose(last, expected)
    steps = bias(items, behaviours).dense(7)  # (1, 4, 7)
    assert torch.allclose(steps[:, -1], last)
    assert steps[0, 1].tolist() == [0, 0, 0, 1.0, 0, 0, 0]  # only item 3, just seen
    assert steps[0, 0].abs().sum() == 0  # a padding step sees nothing


def test_last_sparse_names_rows_past_the_trained_catalogue():
    """Rows appended after training (items posted to the service) get their bonus from the
    sparse form; the dense form refuses them with a clear error instead of an index error."""
    bias = RepeatBias(n_behaviours=2, n_buckets=4)
    bias.set_weights(torch.tensor([1.0, 10.0, 100.0, 1000.0]))
    items = torch.tensor([[0, 3, 9, 3]])  # row 9 is past a 6-item catalogue
    behaviours = torch.tensor([[0, 1, 1, 1]])
    sparse = bias.last_sparse(items, behaviours)
    assert sparse.dense(10)[0, [3, 9]].tolist() == [101.0, 10.0]
    with pytest.raises(ValueError, match="row 9 is past the catalogue's 6"):
        bias.last(items, behaviours, n_items=6)


def test_age_buckets_are_log2_hours():
    hour = 3600
    seconds = torch.tensor([0, 1, hour, 3 * hour, 24 * hour, 30 * 24 * hour, 10**9])
    # 0: same moment; then 1 + floor(log2(1 + hours)), clipped
    assert age_buckets(seconds, 12).tolist() == [0, 1, 2, 3, 5, 10, 11]


def test_age_bonus_by_hand():
    bias = RepeatBias(n_behaviours=1, n_buckets=4, n_age_buckets=12)
    by_age = torch.arange(12, dtype=torch.float32) * 100  # bucket b adds 100 b
    bias.set_weights(torch.tensor([1.0, 10.0, 10.0, 10.0]), by_age=by_age)
    hour = 3600
    items = torch.tensor([[3, 5, 3]])
    behaviours = torch.tensor([[1, 1, 1]])
    times = torch.tensor([[0, 23 * hour, 24 * hour]])  # item 3 a day before the last event
    last = bias.last(items, behaviours, n_items=6, timestamps=times)
    # item 3: now (steps 0: 1, age 0: 0) + a day ago (steps 2: 10, age bucket 5: 500);
    # item 5: 1 step and 1 hour back (10 + bucket 2: 200)
    assert last[0, 3].item() == pytest.approx(511.0)
    assert last[0, 5].item() == pytest.approx(210.0)
    steps = bias(items, behaviours, times).dense(7)  # (1, 3, 7)
    assert torch.allclose(steps[:, -1], last)
    assert steps[0, 1, 3].item() == pytest.approx(
        10.0 + by_age[age_buckets(torch.tensor(23 * hour), 12)]
    )
    with pytest.raises(ValueError, match="timestamps"):
        bias.last(items, behaviours, n_items=6)
    with pytest.raises(ValueError, match="without age"):
        RepeatBias(n_behaviours=1).set_weights(torch.zeros(12), by_age=by_age)


def test_visit_bonus_by_hand():
    # one basket {3, 5} at t=10, then item 7 and item 3 again in the last basket at t=20
    bias = RepeatBias(n_behaviours=1, n_buckets=4, visits=True)
    bias.set_weights(torch.tensor([1.0, 10.0, 100.0, 1000.0]))
    items = torch.tensor([[0, 3, 5, 7, 3]])
    behaviours = torch.tensor([[0, 1, 1, 1, 1]])
    times = torch.tensor([[0, 10, 10, 20, 20]])
    assert visit_index(times).tolist() == [[0, 1, 1, 2, 2]]
    last = bias.last(items, behaviours, n_items=8, timestamps=times)
    # item 3: this visit (1) + one visit back (10); item 5: one visit back, although two lines
    # separate it from item 3 in the same basket; item 7: this visit
    assert last[0, [3, 5, 7]].tolist() == [11.0, 10.0, 1.0]
    by_events = RepeatBias(n_behaviours=1, n_buckets=4)
    by_events.set_weights(torch.tensor([1.0, 10.0, 100.0, 1000.0]))
    assert by_events.last(items, behaviours, 8)[0, [3, 5]].tolist() == [101.0, 100.0]
    steps = bias(items, behaviours, times).dense(9)  # (1, 5, 9)
    assert torch.allclose(steps[:, -1], last)
    # step 2 (item 5) sees its basket (3, 5) at distance 0, never the later item 7
    assert steps[0, 2].tolist() == [0, 0, 0, 1.0, 0, 1.0, 0, 0, 0]
    with pytest.raises(ValueError, match="timestamps"):
        bias.last(items, behaviours, n_items=8)


def test_next_behaviour_offsets_by_hand():
    # behaviours 1 = view, 2 = buy; predicting a purchase adds 100 to every bucket-0 occurrence
    # and 7 to every viewed one, predicting a view nothing
    bias = RepeatBias(n_behaviours=2, n_buckets=3, by_next=True)
    bias.set_weights(torch.tensor([1.0, 10.0, 10.0]))
    assert bias.raw_next_distance is not None and bias.raw_next_behaviour is not None
    with torch.no_grad():
        bias.raw_next_distance[2, 0] = 100.0 / bias.scale
        bias.raw_next_behaviour[2, 1] = 7.0 / bias.scale
    items = torch.tensor([[4, 5]])
    behaviours = torch.tensor([[1, 2]])  # item 4 viewed, then item 5 bought
    view = bias.last(items, behaviours, n_items=6, next_behaviour=1)
    buy = bias.last(items, behaviours, n_items=6, next_behaviour=2)
    assert view[0, [4, 5]].tolist() == [10.0, 1.0]
    assert buy[0, [4, 5]].tolist() == [17.0, 101.0]
    # the step weights pick each step's own next behaviour: step 1 predicts a purchase
    steps = bias(items, behaviours, next_behaviours=torch.tensor([[1, 2]])).dense(7)
    assert torch.allclose(steps[:, -1], buy)
    assert steps[0, 0].tolist() == [0, 0, 0, 0, 1.0, 0, 0]  # step 0 predicts a view


@pytest.mark.parametrize("use_behaviour", [True, False])
def test_a_behaviour_blind_model_repeats_without_behaviours(use_behaviour):
    from chronorec.models.model import NextItemModel

    cfg = ModelConfig(name="gru", d_model=8, max_len=4, repeat=True, use_behaviour=use_behaviour)
    model = NextItemModel(cfg, n_items=6, n_behaviours=2)
    assert model.repeat is not None
    model.repeat.set_weights(torch.ones(12), torch.tensor([0.0, 1.0, 50.0]))  # a buy weighs 50
    items, times = torch.tensor([[0, 3, 5]]), torch.tensor([[0, 1, 2]])
    viewed = model.repeat_bonus(items, torch.tensor([[0, 1, 1]]), times)
    bought = model.repeat_bonus(items, torch.tensor([[0, 2, 1]]), times)
    steps = model.repeat_steps(items, torch.tensor([[0, 2, 1]]), times)
    assert viewed is not None and bought is not None and steps is not None
    assert torch.equal(viewed, bought) != use_behaviour
    assert torch.allclose(steps.dense(7)[:, -1], bought)


def test_repeat_visits_needs_the_repeat_term_and_timestamps():
    with pytest.raises(ConfigError, match="model.repeat=true"):
        ModelConfig(repeat_visits=True)
    untimed = alternating_dataset(n_users=4)
    untimed = dataclasses.replace(untimed, manifest={**untimed.manifest, "has_timestamps": False})
    cfg = RunConfig(model=ModelConfig(name="gru", d_model=8, max_len=8, repeat=True,
                                      repeat_visits=True),
                    train=TrainConfig(max_epochs=1, threads=1))  # fmt: skip
    with pytest.raises(ConfigError, match="timestamps"):
        Recommender(cfg).fit(untimed, progress=False)


def test_repeat_time_needs_the_repeat_term():
    with pytest.raises(ConfigError, match="model.repeat=true"):
        ModelConfig(repeat_time=True)


def alternating_dataset(n_users: int = 80, n_items: int = 60, seed: int = 0) -> PreparedDataset:
    """Each user alternates between two random items: a b a b … — the next item is always the
    one two steps back, a repeat that no item-to-item pattern shared across users predicts."""
    rng = np.random.default_rng(seed)
    length = 8
    pairs = np.stack([rng.choice(n_items, 2, replace=False) + 1 for _ in range(n_users)])
    items = np.where(np.arange(length)[None] % 2 == 0, pairs[:, :1], pairs[:, 1:]).ravel()
    users = np.repeat(np.arange(1, n_users + 1), length)
    pos = np.tile(np.arange(length), n_users)
    events = pl.DataFrame({
        "user": users.astype(np.int32), "item": items.astype(np.int32),
        "timestamp": (10_000 * users + 60 * pos).astype(np.int64),
        "behaviour": np.ones(users.size, dtype=np.int8),
        "value": np.ones(users.size, dtype=np.float32), "position": pos.astype(np.int32),
    }).with_columns(pl.col("timestamp").diff().over("user").alias("gap"))  # fmt: skip
    return PreparedDataset(
        events=events,
        items=pl.DataFrame({"item": np.arange(1, n_items + 1, dtype=np.int32),
                            "item_id": [f"i{i}" for i in range(1, n_items + 1)]}),
        users=pl.DataFrame({"user": np.arange(1, n_users + 1, dtype=np.int32),
                            "user_id": [f"u{u}" for u in range(1, n_users + 1)]}),
        manifest={"format_version": FORMAT_VERSION, "behaviours": ["buy"], "has_timestamps": True},
    )  # fmt: skip


@pytest.mark.parametrize(("name", "visits"), [("gru", False), ("transformer", False),
                                             ("gru", True)])  # fmt: skip
def test_repeat_bias_learns_a_per_user_repeat(name, visits):
    ds = alternating_dataset()
    cfg = RunConfig(
        model=ModelConfig(name=name, d_model=16, n_layers=1, n_heads=2, dropout=0.0, max_len=8,
                          repeat=True, repeat_visits=visits),
        train=TrainConfig(lr=2e-2, batch_size=16, max_epochs=15, warmup_steps=5, patience=15,
                          eval_every=15, threads=1),
        data=DataConfig(exclude_seen=False),  # the answer is a repeat: it must stay rankable
    )  # fmt: skip
    with_repeat = Recommender(cfg).fit(ds, progress=False).evaluate("test")
    assert with_repeat["hr@1"] == 1.0
    no_repeat = dataclasses.replace(cfg.model, repeat=False, repeat_visits=False)
    no_repeat_cfg = cfg.replace(model=no_repeat)
    without = Recommender(no_repeat_cfg).fit(ds, progress=False).evaluate("test")
    assert without["hr@1"] < with_repeat["hr@1"]


def test_saved_repeat_model_scores_identically(tmp_path):
    ds = alternating_dataset(n_users=20)
    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=8, max_len=8, repeat=True, dropout=0.0),
        train=TrainConfig(max_epochs=2, threads=1),
    )
    rec = Recommender(cfg).fit(ds, progress=False)
    rec.save(tmp_path / "run")
    back = Recommender.load(tmp_path / "run", ds)
    batch = EventArrays.from_events(ds.events).histories(np.array([1, 2]), np.array([8, 8]), 8)
    parts = rec.score_parts(batch)
    assert torch.allclose(parts["hidden"] + parts["repeat"], rec.score(batch))
    assert parts["repeat"].abs().sum() > 0  # the history's items get a bonus
    ids_a, s_a = rec.recommend(["u1", "u2"], k=5, exclude_seen=False)
    ids_b, s_b = back.recommend(["u1", "u2"], k=5, exclude_seen=False)
    assert ids_a == ids_b and np.allclose(s_a, s_b)
