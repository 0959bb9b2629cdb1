import json
import math

import numpy as np
import pytest
import torch

from chronorec.data.sequences import EventArrays
from chronorec.evaluation import EvalResult, Scorer, evaluate, evaluator

from .helpers import FixedScorer, make_events, make_targets

N_ITEMS = 5
# Full log. Targets below: user 1 -> item 5 after [4, 2]; user 2 -> item 2 after [1];
# user 3 -> item 3 after [3] (a repeat).
EVENTS = make_events({1: [4, 2, 5], 2: [1, 2], 3: [3, 3]})
TARGETS = make_targets([(1, 5, 2), (2, 2, 1), (3, 3, 1)])
TABLE = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        # column 0 is padding: a huge score there must never count.
        [99, 0.5, 0.9, 0.1, 0.8, 0.7],  # item 5 (0.7): items 2 and 4 higher -> rank 3
        [99, 0.3, 0.3, 0.3, 0.1, 0.2],  # item 2 ties with items 1 and 3
        [99, 0.1, 0.2, 0.9, 0.3, 0.4],  # item 3 is the top item
    ]
)


def run(**options: object) -> EvalResult:
    arrays = EventArrays.from_events(EVENTS)
    return evaluate(FixedScorer(TABLE), arrays, TARGETS, n_items=N_ITEMS, **options)  # type: ignore[arg-type]


def test_fixed_scorer_is_a_scorer() -> None:
    assert isinstance(FixedScorer(TABLE), Scorer)


def test_known_ranks_and_pessimistic_ties() -> None:
    result = run()
    # Pessimistic: user 2's target ties with items 1 and 3, both count as above it.
    assert result.ranks.tolist() == [3, 3, 1]
    assert result["hr@1"] == pytest.approx(1 / 3)
    assert result["hr@5"] == 1.0
    assert result["mrr@5"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert result["ndcg@5"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert result.exclude_seen is False and result.ties == "pessimistic"
    assert result.repeat_share == pytest.approx(1 / 3)


def test_index_ties() -> None:
    # Item 1 has a lower index than the target (2), item 3 a higher one.
    assert run(ties="index").ranks.tolist() == [3, 2, 1]


def test_exclude_seen_masks_exactly_the_history() -> None:
    result = run(exclude_seen=True)
    # User 1: items 4 and 2 removed -> target is first. User 2: item 1 removed -> only item 3 ties.
    # User 3: the target 3 is itself in the history -> masked with it, ranks last.
    assert result.ranks.tolist() == [1, 2, N_ITEMS]
    assert result.exclude_seen is True
    assert result.repeat_share == pytest.approx(1 / 3)
    assert run(exclude_seen=True, ties="index").ranks.tolist() == [1, 1, N_ITEMS]


def test_exclusion_uses_whole_history_not_the_window() -> None:
    # max_len=1 shows user 1 only [2], but item 4 (earlier) is excluded as well.
    scorer = FixedScorer(TABLE)
    result = evaluate(
        scorer,
        EventArrays.from_events(EVENTS),
        TARGETS,
        n_items=N_ITEMS,
        exclude_seen=True,
        max_len=1,
    )
    assert result.ranks.tolist()[0] == 1
    batch, users = scorer.batches[0]
    assert batch.items.tolist() == [[2], [1], [3]]
    assert users.tolist() == [1, 2, 3]


def test_scorer_gets_left_padded_histories_grouped_by_length() -> None:
    scorer = FixedScorer(TABLE)
    evaluate(scorer, EventArrays.from_events(EVENTS), TARGETS, n_items=N_ITEMS, max_len=3)
    batch, _ = scorer.batches[0]
    # queries ordered by window length; the window only as wide as the batch's longest history
    assert batch.items.tolist() == [[0, 1], [0, 3], [4, 2]]
    assert batch.lengths.tolist() == [1, 1, 2]
    scorer = FixedScorer(TABLE)
    evaluate(scorer, EventArrays.from_events(EVENTS), TARGETS, n_items=N_ITEMS, max_len=1)
    assert scorer.batches[0][0].items.tolist() == [[2], [1], [3]]  # cut to max_len, user order


def test_target_sets_and_duplicates() -> None:
    events = make_events({1: [1, 2, 3, 4, 3]})
    # One query (history [1, 2]) with targets {3, 4}; item 3 bought twice counts once.
    targets = make_targets([(1, 3, 2), (1, 4, 2), (1, 3, 2)])
    table = np.array([[0] * 6, [0, 0.1, 0.2, 0.9, 0.5, 0.8]])  # 3 -> rank 1, 4 -> rank 3
    result = evaluate(FixedScorer(table), EventArrays.from_events(events), targets, n_items=5)
    assert result.ranks.tolist() == [1, 3, 1]
    assert result.n_queries == 1 and result.n_targets == 2
    assert result["hr@1"] == 1.0
    assert result["recall@1"] == 0.5
    assert result["recall@5"] == 1.0
    assert result["mrr@5"] == 1.0
    assert result["ndcg@5"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))


def test_batches_give_the_same_result() -> None:
    one = run(batch_size=1)
    assert one.ranks.tolist() == run(batch_size=512).ranks.tolist()
    assert one.ranks.tolist() == run(max_tokens=1, batch_size=512).ranks.tolist()


def test_batches_fit_the_history_step_budget() -> None:
    widths = np.array([1, 1, 2, 3, 3])
    # at most 4 histories and 4 steps (count x widest window), but never an empty batch
    assert evaluator._batch_starts(widths, 4, 4).tolist() == [0, 2, 3, 4, 5]
    assert evaluator._batch_starts(widths, 4, None).tolist() == [0, 4, 5]
    assert evaluator._batch_starts(widths[:0], 4, 4).tolist() == [0]


def test_slices() -> None:
    events = make_events({u: [1, 2, 3, 4, 5, 1][: u + 1] for u in range(1, 6)})
    targets = make_targets(
        [(u, [1, 2, 3, 4, 5, 1][u], u) for u in range(1, 6)], behaviour=[1, 2, 1, 2, 1]
    )
    table = np.tile(np.array([0, 0.5, 0.4, 0.3, 0.2, 0.1]), (6, 1))  # item i has rank i
    result = evaluate(
        FixedScorer(table),
        EventArrays.from_events(events),
        targets,
        n_items=5,
        cold_items=[2],
        history_buckets=(2, 4),
        behaviour_names=["view", "buy"],
    )
    s = result.slices
    assert s["cold"]["n_targets"] == 1 and s["cold"]["hr@1"] == 0.0
    assert s["warm"]["n_targets"] == 4
    # Targets: u1 item 2 (len 1), u2 item 3 (len 2), u3 item 4, u4 item 5, u5 item 1 (len 5).
    assert s["history:<2"]["n_queries"] == 1
    assert s["history:2-3"]["n_queries"] == 2
    assert s["history:>=4"]["n_queries"] == 2
    assert s["behaviour:view"]["n_targets"] == 3 and s["behaviour:buy"]["n_targets"] == 2
    assert s["history:>=4"]["hr@1"] == 0.5  # u5's target (item 1) is ranked first
    # Cold = never in train when no explicit list is given.
    train = events.filter(events["item"] != 3)
    via_train = evaluate(
        FixedScorer(table), EventArrays.from_events(events), targets, n_items=5, train=train
    )
    assert via_train.slices["cold"]["n_targets"] == 1


def test_result_is_json_with_lowercase_keys() -> None:
    data = json.loads(json.dumps(run().to_dict()))
    for key in ("ndcg@10", "hr@10", "mrr@10", "recall@20", "hr@50"):
        assert key in data
    assert data["exclude_seen"] is False and data["ranking"] == "full"


@pytest.mark.parametrize("path", ["compare", "sort"])
def test_matches_brute_force_on_random_scores(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Target sets are ranked by comparing each target with its row or by sorting the rows,
    # whichever is cheaper; force each (and, comparing, chunks of two targets).
    monkeypatch.setattr(evaluator, "SORT_COST", 1e-9 if path == "compare" else 1e9)
    monkeypatch.setattr(evaluator, "COMPARE_CHUNK", 60)
    rng = np.random.default_rng(0)
    n_items, n_users = 30, 40
    histories = {
        u: rng.integers(1, n_items + 1, size=rng.integers(3, 12)).tolist()
        for u in range(1, n_users + 1)
    }
    events = make_events(histories)
    rows = [(u, h[-1], len(h) - 1) for u, h in histories.items()]
    # Users 1-10 get a target set: a random extra item (and for 1-3 a duplicate row).
    rows += [(u, int(rng.integers(1, n_items + 1)), len(histories[u]) - 1) for u in range(1, 11)]
    rows += [(u, histories[u][-1], len(histories[u]) - 1) for u in range(1, 4)]
    targets = make_targets(rows)
    # Rounded scores create many ties; -inf scores (an item the scorer blocks) tie with the
    # excluded history items, which must still not count.
    table = np.round(rng.random((n_users + 1, n_items + 1)), 1)
    table[rng.random(table.shape) < 0.15] = -np.inf
    for exclude in (False, True):
        for ties in ("pessimistic", "index"):
            # Sets (rows repeat) and single targets (one row each) take different code paths.
            result = evaluate(
                FixedScorer(table),
                EventArrays.from_events(events),
                targets,
                n_items=n_items,
                exclude_seen=exclude,
                ties=ties,
                batch_size=7,
            )
            for (u, item, hlen), rank in zip(rows, result.ranks, strict=True):
                seen = set(histories[u][:hlen])
                if exclude and item in seen:
                    assert rank == n_items
                    continue
                ranked = [i for i in range(1, n_items + 1) if not (exclude and i in seen)]
                t = table[u, item]
                higher = sum(table[u, i] > t for i in ranked)
                tied = [i for i in ranked if table[u, i] == t and i != item]
                if ties == "index":
                    tied = [i for i in tied if i < item]
                assert rank == 1 + higher + len(tied), (u, item, exclude, ties)


def test_bad_scores_are_refused() -> None:
    arrays = EventArrays.from_events(EVENTS)
    nan_table = TABLE.copy()
    nan_table[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(FixedScorer(nan_table), arrays, TARGETS, n_items=N_ITEMS)
    with pytest.raises(ValueError, match="shape"):
        evaluate(FixedScorer(TABLE[:, :4]), arrays, TARGETS, n_items=N_ITEMS)
    with pytest.raises(ValueError, match="1..5"):
        evaluate(FixedScorer(TABLE), arrays, make_targets([(1, 6, 2)]), n_items=N_ITEMS)


def test_torch_and_numpy_scores_agree() -> None:
    class NumpyScorer(FixedScorer):
        def score(self, batch, users):  # type: ignore[no-untyped-def]
            return self.table[users]

    arrays = EventArrays.from_events(EVENTS)
    a = evaluate(NumpyScorer(TABLE), arrays, TARGETS, n_items=N_ITEMS)
    assert a.ranks.tolist() == run().ranks.tolist()
    assert torch.is_tensor(FixedScorer(TABLE).score(None, np.array([1])))  # type: ignore[arg-type]
