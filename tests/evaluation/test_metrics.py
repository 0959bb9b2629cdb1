import math

import numpy as np
import pytest

from chronorec.evaluation.metrics import compute_metrics, hit_rate, mrr, ndcg, recall

L2 = math.log2


def test_single_targets_hand_computed() -> None:
    ranks = np.array([1, 3, 11])
    assert hit_rate(ranks, 1).tolist() == [1, 0, 0]
    assert hit_rate(ranks, 10).tolist() == [1, 1, 0]
    assert recall(ranks, 10).tolist() == [1, 1, 0]
    assert mrr(ranks, 10).tolist() == pytest.approx([1, 1 / 3, 0])
    assert mrr(ranks, 2).tolist() == pytest.approx([1, 0, 0])
    assert ndcg(ranks, 10).tolist() == pytest.approx([1, 1 / L2(4), 0])
    assert ndcg(ranks, 20).tolist() == pytest.approx([1, 0.5, 1 / L2(12)])

    m = compute_metrics(ranks, ks=(1, 5, 10))
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@5"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 0.5) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["recall@10"] == m["hr@10"]
    assert set(m) == {f"{n}@{k}" for n in ("hr", "ndcg", "mrr", "recall") for k in (1, 5, 10)}


def test_target_sets_hand_computed() -> None:
    # Query 0 has targets at ranks 2, 5, 30; query 1 one target at rank 1.
    ranks = np.array([2, 5, 30, 1])
    query = np.array([0, 0, 0, 1])
    assert hit_rate(ranks, 1, query).tolist() == [0, 1]
    assert hit_rate(ranks, 5, query).tolist() == [1, 1]
    assert recall(ranks, 5, query).tolist() == pytest.approx([2 / 3, 1])
    assert recall(ranks, 50, query).tolist() == pytest.approx([1, 1])
    assert mrr(ranks, 5, query).tolist() == pytest.approx([1 / 2, 1])
    ideal3 = 1 + 1 / L2(3) + 1 / L2(4)
    assert ndcg(ranks, 5, query).tolist() == pytest.approx([(1 / L2(3) + 1 / L2(6)) / ideal3, 1])
    # K = 1: the ideal list holds one relevant item, not three.
    assert ndcg(ranks, 1, query).tolist() == pytest.approx([0, 1])
    # K = 2 with |T| = 3: ideal = 1 + 1/log2(3); only rank 2 counts.
    assert ndcg(ranks, 2, query).tolist() == pytest.approx([(1 / L2(3)) / (1 + 1 / L2(3)), 1])
    assert compute_metrics(ranks, query, ks=(5,))["recall@5"] == pytest.approx((2 / 3 + 1) / 2)


def test_perfect_set_has_ndcg_one() -> None:
    assert ndcg(np.array([1, 2, 3]), 10, np.zeros(3, dtype=int)).tolist() == pytest.approx([1.0])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="1-based"):
        hit_rate(np.array([0, 1]), 5)
    with pytest.raises(ValueError, match="k must be"):
        ndcg(np.array([1]), 0)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(np.array([1]), names=("auc",))


def test_empty_gives_nan() -> None:
    assert math.isnan(compute_metrics(np.array([], dtype=int), ks=(10,))["ndcg@10"])
