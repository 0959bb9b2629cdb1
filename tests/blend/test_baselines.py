import numpy as np
import polars as pl
import pytest

from chronorec.blend import fit_baselines, neighbours
from chronorec.blend.baselines import ItemTransitions, MostPopular, RepeatFrequency, TextKNN
from chronorec.blend.neighbours import SequentialRidge, UserKNN
from chronorec.data.sequences import EventArrays, HistoryBatch
from chronorec.evaluation import evaluate, evaluate_many, results_table
from tests.evaluation.helpers import make_events, make_targets


def scores_for(scorer, events, user, history_len, max_len=50):  # type: ignore[no-untyped-def]
    arrays = EventArrays.from_events(events)
    batch = arrays.histories(np.array([user]), np.array([history_len]), max_len)
    return np.asarray(scorer.score(batch, np.array([user])))[0]


def top(scores: np.ndarray, k: int) -> list[int]:
    return np.argsort(-scores, kind="stable")[:k].tolist()


def test_popularity_counts_then_recency() -> None:
    # Item 3: 3 events, items 1 and 2: 2 each (item 1 seen last), items 4, 5 never.
    train = make_events({1: [2, 3, 3], 2: [2, 3, 1], 3: [1]})
    model = MostPopular().fit(train, 5)
    s = scores_for(model, train, 1, 1)
    assert top(s, 5) == [3, 1, 2, 4, 5]
    assert s[0] < s[1:].min()
    assert len(set(s[1:].tolist())) == 5  # a strict order: no ties left to the evaluator


def test_recent_popularity_uses_only_the_window() -> None:
    day = 86400
    train = make_events(
        {1: [1, 1, 1, 2], 2: [3, 2]},
        timestamps={1: [0, 1, 2, 10 * day], 2: [9 * day, 10 * day]},
    )
    model = MostPopular(window_days=3).fit(train, 3)
    assert model.name == "popular-3d"
    assert top(scores_for(model, train, 1, 1), 3) == [2, 3, 1]
    no_time = make_events({1: [1]}).with_columns(timestamp=None)
    with pytest.raises(ValueError, match="timestamp"):
        MostPopular(window_days=3).fit(no_time, 3)


def test_repeat_ranks_own_frequent_items_ties_by_recency() -> None:
    events = make_events({1: [5, 3, 5, 2, 3], 2: [4, 4, 4, 1]})
    model = RepeatFrequency().fit(events, 6)
    s = scores_for(model, events, 1, 5)
    # 5 and 3 occur twice; 3 occurred last -> first; then 5, then 2; then popular non-history.
    assert top(s, 4) == [3, 5, 2, 4]
    assert top(
        RepeatFrequency(fill_popular=False)
        .fit(events, 6)
        .score(
            EventArrays.from_events(events).histories(np.array([1]), np.array([5]), 50),
            np.array([1]),
        )
        .numpy()[0],
        3,
    ) == [3, 5, 2]


def test_repeat_can_count_one_behaviour() -> None:
    events = make_events({1: [1, 1, 2]}, behaviours={1: [1, 1, 2]})
    model = RepeatFrequency(behaviour=2, fill_popular=False).fit(events, 3)
    assert top(scores_for(model, events, 1, 3), 1) == [2]


def test_recent_repeat_weighs_each_visit_by_its_age() -> None:
    # Item 5 in three early baskets, item 2 in the last basket together with item 3; item 4
    # once in between. Visits back: 5 -> 4, 3, 2; 4 -> 1; 2 and 3 -> 0. User 2 makes 2 and 6
    # more popular than 3.
    events = make_events(
        {1: [5, 5, 5, 4, 2, 3], 2: [6, 6, 2]},
        timestamps={1: [0, 10, 20, 30, 40, 40], 2: [0, 1, 2]},
    )
    frequent = RepeatFrequency().fit(events, 6)
    assert top(scores_for(frequent, events, 1, 6), 2) == [5, 3]  # 3 times; then the latest
    recent = RepeatFrequency(half_life=1.0).fit(events, 6)
    assert recent.name == "repeat-recent" and recent.by_visit_
    s = scores_for(recent, events, 1, 6)
    assert s[5] == pytest.approx(2**-4 + 2**-3 + 2**-2, abs=1e-6)  # 0.4375
    assert s[4] == pytest.approx(0.5, abs=1e-6)
    assert s[2] == pytest.approx(1.0, abs=1e-6)
    # 2 and 3 share the last visit: the more popular (2) first, then 3, 4, 5, then the rest
    # (item 6 popular, item 1 never seen)
    assert top(s, 6) == [2, 3, 4, 5, 6, 1]
    slow = RepeatFrequency(half_life=100.0).fit(events, 6)
    assert top(scores_for(slow, events, 1, 6), 1) == [5]  # almost plain frequency
    with pytest.raises(ValueError, match="half-life"):
        RepeatFrequency(half_life=0.0)


def test_transitions_rank_the_known_successor_first() -> None:
    # In training 1 -> 2 always, 2 -> 3 twice and 2 -> 4 once; item 4 is the most popular.
    train = make_events({1: [1, 2, 3], 2: [1, 2, 4, 4, 4], 3: [4, 4, 1, 2], 4: [2, 3]})
    model = ItemTransitions().fit(train, 4)
    assert top(scores_for(model, train, 1, 1), 1) == [2]  # history [1]
    assert top(scores_for(model, train, 1, 2), 2) == [3, 4]  # history [1, 2]
    # No transition across users: user 1's last item 3 is not followed by user 2's first item 1.
    s = scores_for(model, train, 1, 3)  # history ends in 3, which has no successors
    assert top(s, 1) == [4]  # no successors: popularity fallback
    targets = make_targets([(1, 2, 1), (2, 2, 1), (3, 2, 3)])
    result = evaluate(model, EventArrays.from_events(train), targets, n_items=4)
    assert result["hr@1"] == 1.0


def test_text_knn_finds_the_nearest_text() -> None:
    vectors = np.array([[0, 0], [1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32)
    events = make_events({1: [1, 3]})
    model = TextKNN(vectors).fit(events, 4)
    s = scores_for(model, events, 1, 1)  # last item 1
    assert top(s, 2) == [1, 2]
    assert top(s, 4)[-1] == 4
    with pytest.raises(ValueError, match="rows"):
        TextKNN(vectors).fit(events, 7)


def test_user_knn_scores_by_hand() -> None:
    # Query: user 1's history [1, 2] with half-life 1 -> weights (0.5, 1) on items 1, 2.
    # Neighbours (no decay, rows L2-normalised): user 2 = [1, 2, 3], user 3 = [4, 5],
    # user 4 = [2, 6]. cos(q, u2) = 1.5 / (sqrt(1.25) sqrt(3)), cos(q, u4) = 1 / (sqrt(1.25)
    # sqrt(2)), cos(q, u3) = 0; user 1's own row is left out.
    events = make_events({1: [1, 2], 2: [1, 2, 3], 3: [4, 5], 4: [2, 6]})
    s2 = 1.5 / (np.sqrt(1.25) * np.sqrt(3))
    s4 = 1.0 / (np.sqrt(1.25) * np.sqrt(2))
    model = UserKNN(k=2, half_life=1.0, neighbour_half_life=None).fit(events, 6)
    s = scores_for(model, events, 1, 2)
    assert s[3] == pytest.approx(s2 / np.sqrt(3), abs=1e-5)
    assert s[6] == pytest.approx(s4 / np.sqrt(2), abs=1e-5)
    assert s[2] == pytest.approx(s2 / np.sqrt(3) + s4 / np.sqrt(2), abs=1e-5)
    assert s[4] < 1e-5 and s[5] < 1e-5 and s[0] < 0  # no overlap: popularity tie-break only
    # k = 1 keeps user 2 only; without a user id the user's own row counts too.
    one = scores_for(UserKNN(k=1, half_life=1.0, neighbour_half_life=None).fit(events, 6),
                     events, 1, 2)  # fmt: skip
    assert one[6] < 1e-5 and one[3] == pytest.approx(s[3], abs=1e-5)
    batch = EventArrays.from_events(events).histories(np.array([1]), np.array([2]), 50)
    own = np.asarray(model.score(batch, None))[0]
    assert own[1] == pytest.approx(s[1] + 1.5 / np.sqrt(1.25) / np.sqrt(2) / np.sqrt(2), abs=1e-5)


def test_user_knn_same_scores_a_few_histories_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    events = make_events({u: rng.integers(1, 9, 6).tolist() for u in range(1, 8)})
    arrays = EventArrays.from_events(events)
    batch = arrays.histories(np.arange(1, 8), np.full(7, 5), 50)
    model = UserKNN(k=3).fit(events, 8)
    whole = np.asarray(model.score(batch, np.arange(1, 8)))
    monkeypatch.setattr(neighbours, "SIMILARITY_ELEMENTS", 1)  # one history at a time
    np.testing.assert_allclose(np.asarray(model.score(batch, np.arange(1, 8))), whole)
    # a few histories are scored one by one from the CSR arrays (what a service request
    # needs): the same sums, to float32 rounding (with every user a neighbour: no k-th tie)
    model = UserKNN(k=10).fit(events, 8)
    whole = np.asarray(model.score(batch, np.arange(1, 8)))  # 7 > FEW_HISTORIES: sparse
    for r in range(7):
        one = HistoryBatch(batch.items[r : r + 1], batch.behaviours[r : r + 1],
                           batch.timestamps[r : r + 1], batch.lengths[r : r + 1])  # fmt: skip
        got = np.asarray(model.score(one, np.array([r + 1])))[0]
        np.testing.assert_allclose(got, whole[r], rtol=1e-5, atol=1e-7)
        assert np.abs(got[1:]).max() > 0.1  # neighbours were found


def test_user_knn_forget_is_fitting_without_the_user() -> None:
    rng = np.random.default_rng(1)
    histories = {u: rng.integers(1, 9, 6).tolist() for u in range(1, 8)}
    events = make_events(histories)
    model = UserKNN(k=3).fit(events, 8)
    before = scores_for(model, events, 1, 5)
    model.forget(4)
    model.forget(99)  # not a training user: nothing to do
    without = make_events({u: h for u, h in histories.items() if u != 4})
    # the same rows (user ids are rows), popularity from every event: ties only differ
    want = scores_for(UserKNN(k=3).fit(without, 8), events, 1, 5)
    got = scores_for(model, events, 1, 5)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - before).max() > 1e-3  # user 4 was a neighbour
    arrays = EventArrays.from_events(events)  # the batched (sparse) path agrees
    batch = arrays.histories(np.arange(1, 8), np.full(7, 5), 50)
    np.testing.assert_allclose(np.asarray(model.score(batch, np.arange(1, 8)))[0], got, atol=1e-6)


def test_user_knn_neighbours_weigh_their_recent_items_more() -> None:
    # User 2 had item 3 long ago and item 4 last; with a neighbour half-life 4 outranks 3.
    events = make_events({1: [1], 2: [3, 1, 1, 1, 4]})
    decayed = scores_for(UserKNN(neighbour_half_life=1.0).fit(events, 4), events, 1, 1)
    flat = scores_for(UserKNN(neighbour_half_life=None).fit(events, 4), events, 1, 1)
    assert decayed[4] > decayed[3]
    assert flat[4] == pytest.approx(flat[3], abs=1e-5)
    with pytest.raises(ValueError, match="half-lives"):
        UserKNN(half_life=0)


def test_user_knn_counts_steps_in_visits_when_timestamped() -> None:
    # User 2 bought item 3, then one basket of four items (one timestamp): by visits item 3 is
    # one step back and item 4 none (weights 0.5 and 1 at half-life 1); by events 4 and 2.
    histories = {1: [1], 2: [3, 1, 4, 5, 6]}
    timed = make_events(histories, timestamps={1: [0], 2: [0, 50, 50, 50, 50]})
    apart = make_events(histories)  # every event at its own time: a visit each
    by_visit = UserKNN(neighbour_half_life=1.0).fit(timed, 6)
    assert by_visit.by_visit_
    s = scores_for(by_visit, timed, 1, 1)
    assert s[3] / s[4] == pytest.approx(0.5, rel=1e-4)
    s = scores_for(UserKNN(neighbour_half_life=1.0).fit(apart, 6), apart, 1, 1)
    assert s[3] / s[4] == pytest.approx(0.25, rel=1e-3)  # 4 vs 2 events back
    # the history side: items 7 then a basket {1, 8}; at half-life 1 item 7 weighs 0.5
    query = make_events({1: [7, 1, 8], 2: [7, 2], 3: [8, 9]}, timestamps={
        1: [0, 9, 9], 2: [0, 1], 3: [0, 1]})  # fmt: skip
    model = UserKNN(half_life=1.0, neighbour_half_life=None).fit(query, 9)
    s = scores_for(model, query, 1, 3)  # neighbours 2 (via item 7) and 3 (via item 8)
    assert s[9] / s[2] == pytest.approx(2.0, rel=1e-4)


def test_ridge_reads_more_than_the_last_item() -> None:
    # After item 1 comes 2 when 3 came before it, 4 when 5 did: transitions, which read the
    # last item only, cannot tell the two histories apart; the ridge regression can.
    train = make_events({u: [3, 1, 2] if u % 2 else [5, 1, 4] for u in range(1, 21)})
    model = SequentialRidge(lam=1.0).fit(train, 5)
    assert top(scores_for(model, train, 1, 2), 1) == [2]  # history [3, 1]
    assert top(scores_for(model, train, 2, 2), 1) == [4]  # history [5, 1]
    chain = ItemTransitions().fit(train, 5)
    assert scores_for(chain, train, 1, 2)[2] == scores_for(chain, train, 2, 2)[2]
    # weights by hand: one user, [1, 2], lam 1 -> x = e1, y = e2, B[1, 2] = 1 / (1 + 1)
    one = SequentialRidge(lam=1.0).fit(make_events({1: [1, 2]}), 2)
    assert one.weights_ is not None
    assert one.weights_[1, 2].item() == pytest.approx(0.5)
    assert one.weights_.abs().sum().item() == pytest.approx(0.5)


def test_ridge_steps_are_visits_on_a_timed_log() -> None:
    # Baskets {1, 2} then {3, 4}: each item of the next basket is a target of both items of
    # the basket before, none of the basket's own items (the same timestamp is one step).
    train = make_events(
        {u: [1, 2, 3, 4] for u in range(1, 6)}, timestamps={u: [0, 0, 60, 60] for u in range(1, 6)}
    )
    model = SequentialRidge(lam=1.0).fit(train, 5)
    assert model.by_visit_
    assert model.weights_ is not None
    assert model.weights_[1, 2].item() == 0.0  # same basket
    s = scores_for(model, train, 1, 2)  # history: the basket {1, 2}
    assert sorted(top(s, 2)) == [3, 4]
    with pytest.raises(ValueError, match="at most"):
        SequentialRidge().fit(train, neighbours.RIDGE_MAX_ITEMS + 1)
    with pytest.raises(ValueError, match="lam"):
        SequentialRidge(lam=0.0)


def test_baselines_side_by_side() -> None:
    events = make_events({u: [1, 2, 3, 1, 2, 3] for u in range(1, 5)})
    train = events.filter(events["position"] < 5)
    targets = make_targets([(u, 3, 5) for u in range(1, 5)])
    models = fit_baselines(train, 3, recent_days=1, item_vectors=np.eye(4, dtype=np.float32))
    assert list(models) == [
        "popular", "popular-1d", "repeat", "repeat-recent", "transitions", "user-knn", "ridge",
        "text-knn",
    ]  # fmt: skip
    results = evaluate_many(models, EventArrays.from_events(events), targets, n_items=3)
    assert results["transitions"]["hr@1"] == 1.0  # 2 -> 3 every time
    table = results_table(results)
    assert table.splitlines()[0].startswith("| scorer")
    assert "| transitions" in table and "1.0000" in table


def test_target_behaviour_adds_a_repeat_of_that_behaviour_only() -> None:
    # user 1 viewed item 2 three times and bought item 3 once
    events = make_events({1: [2, 2, 2, 3], 2: [3, 3]}, behaviours={1: [1, 1, 1, 2], 2: [2, 2]})
    models = fit_baselines(events, 3, behaviour=2, behaviour_name="buy")
    assert list(models) == [
        "popular", "repeat", "repeat-buy", "repeat-recent", "transitions", "user-knn", "ridge"
    ]  # fmt: skip
    assert top(scores_for(models["repeat"], events, 1, 4), 1) == [2]  # every behaviour
    assert top(scores_for(models["repeat-buy"], events, 1, 4), 1) == [3]
    assert top(scores_for(models["popular"], events, 1, 4), 1) == [3]  # purchases only


def test_a_log_without_timestamps_gets_no_recent_window_baseline() -> None:
    events = make_events({u: [1, 2, 3] for u in range(1, 4)})
    untimed = events.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    models = fit_baselines(untimed, 3, recent_days=30)
    assert list(models) == ["popular", "repeat", "transitions", "user-knn", "ridge"]
