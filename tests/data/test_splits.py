"""Split properties: partition per user, no target in its own inputs, determinism."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chronorec.data.prepare import prepare
from chronorec.data.readers import ColumnMap, RawData
from chronorec.data.sequences import EventArrays
from chronorec.data.splits import leave_one_out, temporal_split


@pytest.fixture
def log() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    raw = pl.DataFrame(
        {
            "user_id": rng.integers(0, 30, n).astype(str),
            "item_id": rng.integers(0, 50, n).astype(str),
            "timestamp": rng.integers(0, 100 * 86400, n),
            "behaviour": rng.choice(["view", "buy"], n),
            "value": np.ones(n),
            "_line": np.arange(2, n + 2),
        }
    )
    return prepare(RawData(events=raw, items=None, format="csv", sources=[])).events


def _key(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("user", "item", "timestamp")


def test_leave_one_out_partitions_each_user(log):
    split = leave_one_out(log)
    n = log.group_by("user").len()
    eligible = n.filter(pl.col("len") >= 3)["user"]
    assert split.valid["user"].sort().equals(eligible.sort())
    assert split.test["user"].sort().equals(eligible.sort())
    union = pl.concat([_key(split.train), _key(split.valid), _key(split.test)])
    assert union.sort(["user", "timestamp", "item"]).equals(
        _key(log).sort(["user", "timestamp", "item"])
    )
    # history_len points at the target itself: test history includes the valid target only
    last = (
        log.group_by("user")
        .agg(pl.col("position").max())
        .filter(pl.col("user").is_in(eligible.to_list()))
    )
    hl = split.test.join(last, on="user")
    assert (hl["history_len"] == hl["position"]).all()
    assert (
        split.valid.join(split.test, on="user")
        .select(pl.col("history_len") + 1 == pl.col("history_len_right"))
        .to_series()
    ).all()


def test_no_target_among_training_events(log):
    for split in (leave_one_out(log), temporal_split(log, test_days=20)):
        train = split.train.select("user", "position")
        for targets in (split.valid, split.test):
            # a target's own event sits at position history_len of the full log in LOO
            ts = targets.select("user", "timestamp", "item")
            assert (
                train.join(
                    log.join(ts, on=["user", "timestamp", "item"]).select("user", "position"),
                    on=["user", "position"],
                ).height
                == 0
            )


def test_before_test_holds_every_event_but_the_test_targets(log):
    loo = leave_one_out(log)
    expected = pl.concat([_key(loo.train), _key(loo.valid)]).sort(["user", "timestamp", "item"])
    assert _key(loo.before_test).sort(["user", "timestamp", "item"]).equals(expected)
    assert loo.known("valid") is loo.train and loo.known("test") is loo.before_test
    split = temporal_split(log, test_days=20, valid_days=10)
    cut = log["timestamp"].max() - 20 * 86400
    assert (split.before_test["timestamp"] < cut).all()
    assert split.before_test.height == log.filter(pl.col("timestamp") < cut).height
    assert split.before_test.height > split.train.height  # the validation period is in it
    with pytest.raises(ValueError):
        split.known("train")  # type: ignore[arg-type]


def test_temporal_split_cuts_globally(log):
    split = temporal_split(log, test_days=20, valid_days=10)
    t_max = log["timestamp"].max()
    cut, vcut = t_max - 20 * 86400, t_max - 30 * 86400
    assert (split.test["timestamp"] >= cut).all()
    assert ((split.valid["timestamp"] >= vcut) & (split.valid["timestamp"] < cut)).all()
    assert (split.train["timestamp"] < vcut).all()
    # every test target has history strictly before the cut, and all of it
    arrays = EventArrays.from_events(log)
    batch = arrays.histories(
        split.test["user"].to_numpy(), split.test["history_len"].to_numpy(), max_len=400
    )
    assert (batch.timestamps[batch.items > 0] < cut).all()
    before = log.filter(pl.col("timestamp") < cut).group_by("user").len()
    got = split.test.select("user", "history_len").unique().join(before, on="user")
    assert (got["history_len"] == got["len"]).all()
    # users with nothing before the cut get no test targets
    assert split.test["user"].is_in(before["user"].to_list()).all()


def test_temporal_split_behaviour_filter_and_quantile(log):
    split = temporal_split(log, test_quantile=0.8, behaviour=2)
    assert (split.test["behaviour"] == 2).all()
    assert split.test.height > 0


def test_splits_are_deterministic(log):
    a, b = leave_one_out(log), leave_one_out(log.clone())
    assert a.train.equals(b.train) and a.valid.equals(b.valid) and a.test.equals(b.test)


def test_histories_are_left_padded_windows(log):
    arrays = EventArrays.from_events(log)
    user = int(log["user"][0])
    seq = log.filter(pl.col("user") == user)["item"].to_list()
    batch = arrays.histories(np.array([user, user]), np.array([len(seq), 2]), max_len=5)
    assert batch.items[0].tolist() == seq[-5:]
    assert batch.items[1].tolist() == [0, 0, 0, *seq[:2]]
    assert batch.lengths.tolist() == [5, 2]
    with pytest.raises(ValueError):
        arrays.histories(np.array([user]), np.array([len(seq) + 1]), max_len=5)


def test_timestampless_log_refuses_temporal_split(write):
    from chronorec.data.readers import read
    from chronorec.errors import DataError

    path = write("e.csv", "user_id,item_id\na,x\na,y\n")
    ds = prepare(read("csv", path, columns=ColumnMap(time=None)))
    with pytest.raises(DataError, match="timestamps"):
        temporal_split(ds.events, test_days=1)
