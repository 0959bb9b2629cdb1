import numpy as np
import polars as pl

from chronorec.data.splits import leave_one_out
from chronorec.evaluation import cold_start_split, drop_items, select_cold_items

from .helpers import make_events


def test_selection_is_reproducible() -> None:
    a = select_cold_items(1000, 0.1, seed=7)
    assert a.tolist() == select_cold_items(1000, 0.1, seed=7).tolist()
    assert a.tolist() != select_cold_items(1000, 0.1, seed=8).tolist()
    assert a.size == 100 and len(set(a.tolist())) == 100
    assert a.min() >= 1 and a.max() <= 1000 and np.all(np.diff(a) > 0)
    assert select_cold_items(5, 0.1).size == 1
    assert select_cold_items(5, 0.0).size == 0


def test_drop_items_renumbers_positions_and_gaps() -> None:
    events = make_events({1: [1, 2, 3, 2], 2: [2, 4]}, timestamps={1: [0, 5, 7, 20], 2: [3, 9]})
    out = drop_items(events, [2])
    assert out["item"].to_list() == [1, 3, 4]
    assert out["position"].to_list() == [0, 1, 0]
    assert out["gap"].to_list() == [None, 7, None]
    assert out.schema == events.schema


def test_cold_start_split_hides_cold_items_from_training_and_validation() -> None:
    events = make_events({1: [1, 2, 3, 4, 5], 2: [5, 4, 3, 2, 1], 3: [2, 2, 2]})
    split = leave_one_out(events)
    cold = cold_start_split(split, [2])
    assert 2 not in cold.train["item"].to_list()
    assert 2 not in cold.valid["item"].to_list()
    assert cold.test.equals(split.test)
    assert cold.valid.height == split.valid.height - 2  # users 2 and 3 had item 2 as valid target
    assert "cold-start" in cold.protocol
    assert cold.train.filter(pl.col("user") == 3).height == 0
