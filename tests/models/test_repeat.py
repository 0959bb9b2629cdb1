"""The repeat bias: hand-computed bonuses, and a repeat pattern learned through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset
from chronorec.models.repeat import RepeatBias, distance_buckets
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
        manifest={"format_version": FORMAT_VERSION, "behaviours": ["buy"]},
    )  # fmt: skip


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_repeat_bias_learns_a_per_user_repeat(name):
    ds = alternating_dataset()
    cfg = RunConfig(
        model=ModelConfig(name=name, d_model=16, n_layers=1, n_heads=2, dropout=0.0, max_len=8,
                          repeat=True),
        train=TrainConfig(lr=2e-2, batch_size=16, max_epochs=15, warmup_steps=5, patience=15,
                          eval_every=15, threads=1),
        data=DataConfig(exclude_history=False),  # the answer is a repeat: it must stay rankable
    )  # fmt: skip
    with_repeat = Recommender(cfg).fit(ds, progress=False).evaluate("test")
    assert with_repeat["hr@1"] == 1.0
    no_repeat_cfg = cfg.replace(model=dataclasses.replace(cfg.model, repeat=False))
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
    ids_a, s_a = rec.recommend(["u1", "u2"], k=5, exclude_seen=False)
    ids_b, s_b = back.recommend(["u1", "u2"], k=5, exclude_seen=False)
    assert ids_a == ids_b and np.allclose(s_a, s_b)
