"""The learned blend (chronorec.blend.learned): its features by hand, that it learns on the
validation split what helps on test, and that a saved one is what evaluate and recommend rank
with."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
import torch

from chronorec.blend import Ensemble, fit_learned, read_learned, save_blend
from chronorec.blend.learned import (
    ITEM_FEATURES,
    LEARNED_FILE,
    OBJECTIVES,
    ItemStats,
    LearnedBlend,
    _ranks,
    candidate_features,
    feature_names,
)
from chronorec.blend.learned_fit import _Collect
from chronorec.cli import main
from chronorec.config import DataConfig, RunConfig
from chronorec.data.sequences import HistoryBatch
from chronorec.data.splits import temporal_split
from chronorec.errors import ConfigError
from chronorec.recommender import make_split
from tests.evaluation.helpers import make_events, weak_run

DAY = 86_400


def _history() -> HistoryBatch:
    """One history: item 3 at day 1, item 1 at day 2, item 3 again at day 4."""
    return HistoryBatch(
        items=np.array([[0, 3, 1, 3]]),
        behaviours=np.array([[0, 1, 1, 1]]),
        timestamps=np.array([[0, DAY, 2 * DAY, 4 * DAY]]),
        lengths=np.array([3]),
    )


def test_candidate_features_by_hand() -> None:
    batch = _history()  # catalogue of 5
    inf = float("-inf")
    runs = torch.tensor([[inf, 0.1, 0.5, 0.2, 2.0, 1.0]])  # item 4 best, then 5, 2, 3, 1
    pop = torch.tensor([[inf, 3.0, 2.0, 1.0, 0.0, -1.0]])  # item 1 best
    b, v, X = candidate_features({"runs": runs, "popular": pop}, ("runs", "popular"), batch, 1)
    cols = feature_names(("runs", "popular"), items=False)
    rows = {int(item): dict(zip(cols, x, strict=True)) for item, x in zip(v, X, strict=True)}
    assert b.tolist() == [0, 0, 0] and sorted(rows) == [1, 3, 4]  # each term's top 1 + history
    three, one, four = rows[3], rows[1], rows[4]
    assert three["z_runs"] == pytest.approx(0.2) and three["z_popular"] == pytest.approx(1.0)
    assert three["rank_runs"] == pytest.approx(np.log1p(3))  # 4th best by the runs
    assert four["rank_runs"] == 0.0 and one["rank_popular"] == 0.0
    assert three["count"] == 2 and three["events_back"] == 0 and three["days_back"] == 0
    assert three["interval_days"] == pytest.approx(3.0)  # two occurrences 3 days apart
    assert one["count"] == 1 and one["events_back"] == 1 and one["days_back"] == pytest.approx(2)
    assert one["interval_days"] == -1 and one["intervals_due"] == -1
    assert four["count"] == 0 and four["events_back"] == 5 and four["days_back"] == -1
    assert three["log_length"] == pytest.approx(np.log1p(3))
    assert three["distinct_share"] == pytest.approx(2 / 3)
    assert three["log_visits"] == pytest.approx(np.log1p(3))


def test_item_features_by_hand() -> None:
    batch = _history()  # item 1's buyers come back every 4 days, item 3's unknown
    table = torch.full((4, len(ITEM_FEATURES) - 1), -1.0, dtype=torch.float64)  # items 1-3
    table[1] = torch.tensor([0.5, 2.0, 4.0, 1.0, 9.0, 0.25])
    parts = {"runs": torch.tensor([[float("-inf"), 0.1, 0.5, 0.2, 2.0, 1.0]])}  # 5 items
    b, v, X = candidate_features(parts, ("runs",), batch, 1, item_stats=ItemStats(table))
    cols = feature_names(("runs",))
    rows = {int(item): dict(zip(cols, x, strict=True)) for item, x in zip(v, X, strict=True)}
    one, three, four = rows[1], rows[3], rows[4]
    assert [one[c] for c in ITEM_FEATURES[:-1]] == [0.5, 2.0, 4.0, 1.0, 9.0, 0.25]
    assert one["item_intervals_due"] == pytest.approx(0.5)  # 2 days of its usual 4
    assert three["item_rebuy"] == -1 and three["item_intervals_due"] == -1
    assert all(four[c] == -1 for c in ITEM_FEATURES)  # item 4: past the statistics' table


def test_item_stats_by_hand() -> None:
    day = lambda d: d * DAY  # noqa: E731
    events = make_events(
        {1: [1, 1, 2], 2: [1, 1, 3, 4]},
        behaviours={1: [1, 1, 1], 2: [1, 1, 1, 2]},
        timestamps={1: [day(0), day(10), day(10)], 2: [day(20), day(24), day(40), day(40)]},
    )
    stats = ItemStats.fit(events, 5, behaviour=1)  # item 4 was only viewed (behaviour 2)
    one, two, three, four = (stats.table[i].tolist() for i in (1, 2, 3, 4))
    # both buyers came back: rebuy (2 + 1) / (2 + 10); intervals 10 and 4 days, median 7;
    # last sale day 24, first day 0 (the log ends at day 40); 3 of 4 sales from day 10 on
    assert one == pytest.approx([0.25, np.log1p(2), 7.0, 16.0, 40.0, 0.75])
    assert two == pytest.approx([1 / 11, np.log1p(1), -1.0, 30.0, 30.0, 1.0])
    assert three[0] == pytest.approx(1 / 11) and four == [-1.0] * 6
    assert stats.rows(torch.tensor([1, 9])).tolist()[1] == [-1.0] * 6  # past the table
    # an untimed log: counts only, every event a visit
    untimed = events.with_columns(timestamp=None)
    one = ItemStats.fit(untimed, 5).table[1].tolist()
    assert one == pytest.approx([0.25, np.log1p(2), -1.0, -1.0, -1.0, -1.0])


def test_ranks_are_the_items_scored_higher_up_to_the_cap() -> None:
    z = torch.tensor([[[5.0, 3.0, 3.0, 3.0, 1.0, 0.0]]])
    assert _ranks(z, 10, 1)[0][0, 0].tolist() == [0, 1, 1, 1, 4, 5]  # ties share a rank
    ranks, best = _ranks(z, 2, 4)
    assert ranks[0, 0].tolist() == [0, 1, 1, 1, 2, 2]  # the 3s tie with the 2nd best
    assert sorted(best[0, 0].tolist()) == [0, 1, 2, 3]  # the top 4, past the cap
    assert _ranks(z, None, 1)[0][0, 0].tolist() == [0, 1, 2, 3, 4, 5]  # older: a stable sort
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 20, (2, 3, 50), generator=g).float()  # many ties
    higher = (z[..., None, :] > z[..., :, None]).sum(-1)
    for cap in (7, 30, 60):
        assert torch.equal(_ranks(z, cap, 10)[0], higher.clamp(max=cap))


def test_learned_blend_learns_on_valid_and_helps_on_test(successor) -> None:
    # item i is always followed by i + 1: transitions are perfect, the weak run is not
    run = weak_run(successor)
    alone = run.evaluate("test").metrics["ndcg@10"]
    ens = Ensemble([run])
    learned, report = fit_learned(ens, ["transitions", "popular"], threads=1)
    assert learned.baselines == ["transitions", "popular"] and ens.learned is learned
    assert report["targets_covered"] == 1.0  # the transition's top 1 is every target
    both = [report[f"valid ndcg@10, learned blend ({o}) out of fold"] for o in OBJECTIVES]
    assert min(both) > report["valid ndcg@10, runs alone"] + 0.1
    assert report["objective"] == OBJECTIVES[int(np.argmax(both))]  # the better one is kept
    shares = report["features by gain"]
    assert len(shares) == 8 and set(shares) <= set(learned.booster.feature_name())
    assert (
        list(shares.values()) == sorted(shares.values(), reverse=True)
        and sum(shares.values()) <= 1.001
    )
    assert ens.evaluate("test").metrics["ndcg@10"] > max(alone + 0.1, 0.9)
    with pytest.raises(ConfigError, match="at least one baseline"):
        fit_learned(ens, [])
    with pytest.raises(ConfigError, match="objective must be one of"):
        fit_learned(ens, ["transitions"], objective="poisson")


def test_an_earlier_split_is_the_validation_split_windows_back(successor) -> None:
    events = successor.events
    n = events.group_by("user").len()
    loo = RunConfig()
    now, back = make_split(successor, loo), make_split(successor, loo, earlier=2)
    # leave-one-out: each user's 4th-last event (of users with 3 events left after the last 2),
    # its history every event before it
    want = events.join(n, on="user").filter(
        (pl.col("position") == pl.col("len") - 4) & (pl.col("len") >= 5)
    )
    got = back.valid.sort("user")
    assert got["user"].to_list() == want.sort("user")["user"].to_list()
    assert got["item"].to_list() == want.sort("user")["item"].to_list()
    assert (got["history_len"].to_numpy() == want.sort("user")["position"].to_numpy()).all()
    known = back.train.group_by("user").agg(pl.col("position").max().alias("p"))
    known = known.join(got.select("user", "history_len"), on="user")  # the users with a target
    assert (known["p"] == known["history_len"] - 1).all()
    assert now.valid.height > back.valid.height  # users of 4 events have none
    # temporal: the window `earlier` validation windows before the validation window (each
    # user's events 3 days apart here, so every window has users with a history before it)
    day = 86_400
    events = events.with_columns(3 * day * pl.col("position").cast(pl.Int64) + pl.col("user"))
    timed = dataclasses.replace(successor, events=events)
    temporal = RunConfig(data=DataConfig(split="temporal", test_days=6.0, valid_days=5.0))
    t_max = int(events["timestamp"].max())
    earlier = make_split(timed, temporal, earlier=2)
    lo, hi = t_max - (6 + 3 * 5) * day, t_max - (6 + 2 * 5) * day
    window = earlier.valid["timestamp"]
    assert earlier.valid.height > 0 and ((window >= lo) & (window < hi)).all()
    assert (earlier.train["timestamp"] < lo).all()
    assert earlier.train.height == events.filter(pl.col("timestamp") < lo).height
    default = RunConfig(data=DataConfig(split="temporal", test_days=6.0))  # valid = test days
    assert make_split(timed, default).valid.equals(temporal_split(events, test_days=6.0).valid)
    with pytest.raises(ValueError, match="earlier must be >= 0"):
        make_split(successor, loo, earlier=-1)


def test_a_learned_blend_trains_on_earlier_windows_too(successor) -> None:
    run = weak_run(successor)
    _, r1 = fit_learned(Ensemble([run]), ["transitions", "popular"], threads=1, folds=1, windows=1)
    ens = Ensemble([run])
    for objective in OBJECTIVES:  # lambdarank's queries are one per user and window
        learned, report = fit_learned(
            ens, ["transitions", "popular"], threads=1, windows=3, objective=objective
        )
        assert report["windows"] == 3 and report["training rows"] > r1["training rows"]
        oof = report[f"valid ndcg@10, learned blend ({objective}) out of fold"]
        assert oof > report["valid ndcg@10, runs alone"] + 0.1
        assert ens.evaluate("test").metrics["ndcg@10"] > 0.9
    # the runs' features are missing (NaN) where the runs were trained on the targets
    terms = ("runs", "transitions", "popular", "linear")
    view = ens.earlier(1)
    collect = _Collect(view, terms, learned.weights, 5, in_sample=True)
    view._evaluate(collect, "valid")
    users, X, labels, n_targets = collect.rows(view.targets("valid"))
    cols = feature_names(terms)
    missing = [cols.index(c) for c in ("z_runs", "rank_runs", "z_linear", "rank_linear")]
    assert np.isnan(X[:, missing]).all() and not np.isnan(np.delete(X, missing, 1)).any()
    assert labels.sum() == n_targets  # the transition's top 1 is every earlier target
    with pytest.raises(ConfigError, match="windows must be >= 1"):
        fit_learned(ens, ["transitions"], windows=0)
    with pytest.raises(ConfigError, match="only on the valid split"):
        fit_learned(ens, ["transitions"], which="test", windows=2)


def test_a_saved_learned_blend_ranks_evaluate_and_recommend(successor, tmp_path, capsys):
    data = str(successor.save(tmp_path / "data"))
    path = weak_run(successor).save(tmp_path / "run")
    assert main(["evaluate", str(path), "--data", data, "--blend", "transitions,popular",
                 "--learned", "--learned-windows", "2", "--save-blend", "--threads", "1",
                 "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["learned_blend"]["terms"] == ["runs", "transitions", "popular", "linear"]
    assert out["learned_blend"]["windows"] == 2
    assert out["ndcg@10"] > 0.9 and "blend" not in out
    saved = json.loads((path / "blend.json").read_text())
    assert saved["weights"] == {} and saved["learned"]["file"] == LEARNED_FILE
    # evaluate without options ranks with it, the same figures
    assert main(["evaluate", str(path), "--data", data, "--json"]) == 0
    got, err = capsys.readouterr()
    again = json.loads(got)
    assert "ranked by a learned blend of the model and" in err
    assert again["ndcg@10"] == pytest.approx(out["ndcg@10"])
    # recommend ranks with it too: the same list as the Python API
    base = ["recommend", str(path), "--data", data, "--history", "i4,i5", "-k", "3", "--json"]
    assert main(base) == 0
    got, err = capsys.readouterr()
    assert "learned blend of the model and transitions, popular" in err
    ens = Ensemble.load([path], dataset=data, fit_on="all")
    learned = read_learned(path)
    assert learned is not None
    ids, _ = ens.use_learned(learned).recommend_histories([["i4", "i5"]], k=3)
    assert [x["item_id"] for x in json.loads(got)["items"]] == ids[0]
    assert ids[0][0] == "i6"  # the transition the weak model alone does not know
    assert main([*base, "--weights", "none"]) == 0
    assert "learned" not in capsys.readouterr().err
    # a deployment refit takes it along
    served = tmp_path / "served"
    refit = ["refit", str(path), "--data", data, "--out", str(served), "--epochs", "1"]
    assert main([*refit, "--no-progress"]) == 0
    capsys.readouterr()
    assert read_learned(served) is not None
    # a linear blend saved over it removes the model file
    ens = Ensemble.load([path], dataset=data, weights={"transitions": 1.0})
    save_blend(path, ens.weights, tuned_on="given")
    assert not (path / LEARNED_FILE).exists() and read_learned(path) is None


def test_a_learned_blend_saved_before_item_features_still_ranks(successor, tmp_path) -> None:
    # blend.json from before item features and capped ranks: no such keys, the model's
    # columns without them; it loads and ranks as the same blend built in memory
    import lightgbm as lgb

    data = str(successor.save(tmp_path / "data"))
    path = weak_run(successor).save(tmp_path / "run")
    terms = ("runs", "transitions", "linear")
    cols = feature_names(terms, items=False)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(400, len(cols))), rng.integers(0, 2, 400)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, y, feature_name=cols),
        num_boost_round=5,
    )
    old = LearnedBlend(booster, terms, {"transitions": 0.5}, rank_cap=None, item_features=False)
    save_blend(path, {}, tuned_on="valid", learned=old)
    meta = json.loads((path / "blend.json").read_text())
    for key in ("rank_cap", "item_features"):
        del meta["learned"][key]
    (path / "blend.json").write_text(json.dumps(meta))
    loaded = read_learned(path)
    assert loaded is not None and loaded.rank_cap is None and not loaded.item_features
    ens = Ensemble.load([path], dataset=data)
    got = ens.use_learned(loaded).evaluate("test").metrics
    assert got == ens.use_learned(old).evaluate("test").metrics


def test_a_broken_learned_blend_is_a_clear_error(successor, tmp_path, capsys) -> None:
    data = str(successor.save(tmp_path / "data"))
    path = weak_run(successor).save(tmp_path / "run")
    ens = Ensemble.load([path], dataset=data)
    learned, _ = fit_learned(ens, ["transitions"], threads=1, folds=1)
    save_blend(path, {}, tuned_on="valid", learned=learned)
    base = ["recommend", str(path), "--data", data, "--history", "i4", "--json"]
    (path / LEARNED_FILE).write_text("not a model")
    assert main(base) == 2
    assert f"{LEARNED_FILE}: not a LightGBM model" in capsys.readouterr().err
    (path / LEARNED_FILE).unlink()
    assert main(base) == 2
    assert "the learned blend's model is missing" in capsys.readouterr().err
    meta = json.loads((path / "blend.json").read_text())
    meta["learned"]["weights"] = {"user-knn": 1.0}
    (path / "blend.json").write_text(json.dumps(meta))
    assert main(base) == 2
    assert "'learned.weights' names baselines not in its terms" in capsys.readouterr().err
    meta["learned"]["weights"], meta["learned"]["item_features"] = {}, "yes"
    (path / "blend.json").write_text(json.dumps(meta))
    assert main(base) == 2
    assert "'learned.item_features' must be true or false" in capsys.readouterr().err
    meta["learned"]["terms"] = ["transitions"]
    (path / "blend.json").write_text(json.dumps(meta))
    assert main(base) == 2
    assert "'learned.terms' must list 'runs'" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--data", data, "--learned"]) == 2
    assert "--learned trains on the baselines --blend names" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--data", data, "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    blend = ["--blend", "transitions"]
    assert main(["evaluate", str(path), "--data", data, *blend, "--learned-windows", "2"]) == 2
    assert "--learned-windows goes with --learned" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--data", data, *blend, "--learned",
                 "--learned-windows", "0"]) == 2  # fmt: skip
    assert "--learned-windows must be at least 1" in capsys.readouterr().err
