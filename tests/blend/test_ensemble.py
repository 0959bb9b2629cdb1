"""Ensembles of runs: standardised score averaging, the same metrics path as one run, clear
errors for runs that do not belong together, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from chronorec.blend import Ensemble, standardise
from chronorec.cli import main
from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chronorec.errors import ConfigError
from chronorec.evaluation.evaluator import per_query
from chronorec.recommender import Recommender, make_split
from tests.evaluation.helpers import weak_run


def _fit(successor, seed: int, name: str = "gru", max_len: int = 8, **data: object) -> Recommender:
    cfg = RunConfig(
        model=ModelConfig(name=name, d_model=16, n_layers=1, n_heads=2, max_len=max_len,
                          dropout=0.0),
        train=TrainConfig(max_epochs=3, batch_size=16, lr=1e-2, threads=1, warmup_steps=1,
                          seed=seed),
        data=DataConfig(**data),  # type: ignore[arg-type]
    )  # fmt: skip
    return Recommender(cfg).fit(successor, progress=False)


def test_standardise_by_hand() -> None:
    s = torch.tensor([[float("-inf"), 1.0, 2.0, 3.0], [float("-inf"), 5.0, 5.0, 8.0]])
    z = standardise(s)
    assert z[0, 0] == float("-inf") and z[1, 0] == float("-inf")
    torch.testing.assert_close(z[0, 1:], torch.tensor([-1.0, 0.0, 1.0]) * 1.5**0.5)
    torch.testing.assert_close(z[1, 1:], torch.tensor([-1.0, -1.0, 2.0]) / 2**0.5)


def test_ensemble_scores_are_the_mean_of_standardised_member_scores(successor) -> None:
    a, b = _fit(successor, 0), _fit(successor, 1, name="transformer", max_len=6)
    ens = Ensemble([a, b])
    assert ens.max_len == 8
    arrays = a._arrays
    assert arrays is not None
    batch = arrays.histories(np.arange(1, 6), arrays.user_lengths()[1:6], 8)  # users 1..5
    got = ens.score(batch)
    short = type(batch)(batch.items[:, -6:], batch.behaviours[:, -6:], batch.timestamps[:, -6:],
                        np.minimum(batch.lengths, 6))  # fmt: skip
    want = (standardise(a.score(batch)) + standardise(b.score(short))) / 2
    torch.testing.assert_close(got, want)
    # one member: a monotone map of its scores per history, so the same metrics as the run
    one, run = Ensemble([a]).evaluate("test").metrics, a.evaluate("test").metrics
    assert one == pytest.approx(run)


def test_runs_that_do_not_belong_together_are_refused(successor) -> None:
    a = _fit(successor, 0)
    b = _fit(successor, 1, exclude_seen=False)
    with pytest.raises(ConfigError, match=r"run 2 has another split .*data.exclude_seen"):
        Ensemble([a, b])
    with pytest.raises(ConfigError, match="at least one run"):
        Ensemble([])


def test_cli_evaluates_several_runs_as_one_ensemble(successor, tmp_path, capsys) -> None:
    data = successor.save(tmp_path / "data")
    runs = [str(_fit(successor, s).save(tmp_path / f"run{s}")) for s in (0, 1)]
    assert main(["evaluate", *runs, "--data", str(data), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "ensemble of 2" and out["runs"] == runs
    assert 0.0 <= out["ndcg@10"] <= 1.0 and "recall@20" in out
    other = str(_fit(successor, 2, exclude_seen=False).save(tmp_path / "other"))
    assert main(["evaluate", runs[0], other, "--data", str(data)]) == 2
    assert "another split" in capsys.readouterr().err


def test_blend_adds_weighted_baseline_z_scores(successor) -> None:
    from chronorec.blend.baselines import ItemTransitions
    from chronorec.data import leave_one_out

    run = weak_run(successor)
    ens = Ensemble([run], weights={"transitions": 0.5})
    arrays = run._arrays
    assert arrays is not None
    batch = arrays.histories(np.arange(1, 6), arrays.user_lengths()[1:6], 8)
    known = leave_one_out(successor.events).before_test  # the default: as the test split sees
    trans = ItemTransitions().fit(known, successor.n_items)
    logs = torch.log1p(torch.as_tensor(trans.score(batch, np.arange(1, 6))).double())
    logs[:, 0] = float("-inf")
    want = standardise(run.score(batch)) + 0.5 * standardise(logs)
    torch.testing.assert_close(ens.score(batch), want)
    with pytest.raises(ConfigError, match="unknown baseline.*'?knn'?.*choose from"):
        ens.blend({"knn": 1.0})
    with pytest.raises(ConfigError, match="weight of repeat must be a number >= 0"):
        ens.blend({"repeat": -1.0})


def test_tuned_blend_learns_the_weight_on_valid_and_helps_on_test(successor) -> None:
    # item i is always followed by i + 1: transitions are perfect, the weak run is not
    run = weak_run(successor)
    alone_valid = run.evaluate("valid").metrics["ndcg@10"]
    alone_test = run.evaluate("test").metrics["ndcg@10"]
    assert alone_test < 0.9
    ens = Ensemble([run])
    weights = ens.tune(["transitions", "popular"], which="valid")
    assert weights["transitions"] > 0 and set(weights) == {"transitions", "popular"}
    assert ens.evaluate("valid").metrics["ndcg@10"] > alone_valid
    assert ens.evaluate("test").metrics["ndcg@10"] > max(alone_test + 0.1, 0.9)


def test_a_weight_moves_only_for_a_gain_beyond_the_noise(successor) -> None:
    # The same perfect transitions: a gain of many standard errors moves the weight at
    # min_z = 2, and no gain is enough at an absurd threshold.
    assert Ensemble([weak_run(successor)]).tune(["transitions"])["transitions"] > 0
    assert Ensemble([weak_run(successor)]).tune(["transitions"], min_z=1e9)["transitions"] == 0


def test_per_query_metrics_average_to_the_reported_metric(successor) -> None:
    run = weak_run(successor)
    targets = make_split(run.dataset, run.config).targets("test")
    result = run.evaluate("test")
    for metric in ("ndcg@10", "recall@20", "mrr@5"):
        values = per_query(result, targets, metric)
        assert values.shape == (result.n_queries,)
        assert values.mean() == pytest.approx(result[metric])
    with pytest.raises(ValueError, match="unknown metric"):
        per_query(result, targets, "ndcg")
    ensemble = Ensemble([run])
    assert ensemble.targets("test").equals(targets)
    values = per_query(ensemble.evaluate("test", slices=()), ensemble.targets("test"), "ndcg@10")
    assert values.mean() == pytest.approx(result["ndcg@10"])


def test_tuning_on_a_memory_budget_searches_a_subset_of_the_users(successor, caplog) -> None:
    ens = Ensemble([weak_run(successor)])
    row_bytes = 4 * (successor.n_items + 1) * 2  # the runs' term and one baseline, float32
    with caplog.at_level("INFO", logger="chronorec.blend.ensemble"):
        weights = ens.tune(["transitions"], memory_gb=16 * row_bytes / 2**30)
    assert "tuning on 16 of 64 users" in caplog.text
    assert weights["transitions"] > 0


def test_cli_blend_reports_its_weights_and_where_they_were_tuned(successor, tmp_path, capsys):
    data = successor.save(tmp_path / "data")
    run = str(weak_run(successor).save(tmp_path / "run"))
    assert main(["evaluate", run, "--data", str(data), "--blend", "transitions", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "gru" and out["weights_tuned_on"] == "valid"
    assert out["blend"]["transitions"] > 0 and out["ndcg@10"] > 0.9
    fixed = ["evaluate", run, "--data", str(data), "--weights", "transitions=0.3", "--json"]
    assert main(fixed) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["blend"] == {"transitions": 0.3} and out["weights_tuned_on"] is None
    assert main(["evaluate", run, "--data", str(data), "--blend", "transitions", "--split",
                 "valid"]) == 0  # fmt: skip
    assert "tuned on valid: optimistic here" in capsys.readouterr().out
    assert main(["evaluate", run, "--data", str(data), "--weights", "transitions"]) == 2
    assert "expected NAME=NUMBER" in capsys.readouterr().err
    assert main(["evaluate", run, "--data", str(data), "--blend", "nope"]) == 2
    assert "unknown baseline(s) nope" in capsys.readouterr().err


def test_blended_recommendations_follow_the_blended_scores(successor, tmp_path, capsys) -> None:
    run = weak_run(successor)
    ens = Ensemble([run], weights={"transitions": 3.0})
    ids, scores = ens.recommend(["u1", "u2"], k=3)
    assert len(ids) == 2 and scores.shape == (2, 3)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # item i is always followed by i + 1, and transitions dominate at weight 3
    ids, _ = ens.recommend_histories([["i4", "i5"]], k=1)
    assert ids == [["i6"]]
    data = successor.save(tmp_path / "data")
    path = str(run.save(tmp_path / "run"))
    args = ["recommend", path, "--data", str(data), "--history", "i4,i5", "-k", "1", "--json"]
    assert main([*args, "--weights", "transitions=3"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == "i6"
    assert main([*args, "--weights", "transitions=x"]) == 2
    assert "expected NAME=NUMBER" in capsys.readouterr().err


def test_recommendations_count_every_event_and_evaluation_refuses_that(successor) -> None:
    run = weak_run(successor)
    live = Ensemble([run], weights={"transitions": 1.0}, fit_on="all")
    offline = Ensemble([run], weights={"transitions": 1.0})
    pairs = successor.events.height - successor.n_users  # consecutive pairs of every user
    assert live.baselines["transitions"].counts_.sum() == pairs
    # for the test split every event but each user's last one is known: one pair fewer per user
    assert offline.baselines["transitions"].counts_.sum() == pairs - successor.n_users
    with offline.at("valid"):  # the training split holds out the last two events of each user
        assert offline.baselines["transitions"].counts_.sum() == pairs - 2 * successor.n_users
    # another log for the blend (a service's, with its posted events): only for fit_on="all"
    half = successor.events.filter(pl.col("user") <= successor.n_users // 2)
    other = Ensemble([run], weights={"transitions": 1.0}, fit_on="all", events=half)
    assert other.baselines["transitions"].counts_.sum() == half.height - successor.n_users // 2
    with pytest.raises(ConfigError, match="fit_on='all'"):
        Ensemble([run], fit_on="train", events=half)
    assert offline.baselines["transitions"].counts_.sum() == pairs - successor.n_users
    with pytest.raises(ConfigError, match="fit_on='train'"):
        live.evaluate("test")
    with pytest.raises(ConfigError, match="fit_on must be"):
        Ensemble([run], fit_on="everything")


def test_recent_popularity_blends_only_with_timestamps(successor) -> None:
    import dataclasses

    run = weak_run(successor)
    ens = Ensemble([run], weights={"popular-recent": 1.0})
    assert ens.evaluate("test").metrics["ndcg@10"] >= 0.0
    untimed = dataclasses.replace(
        successor, events=successor.events.with_columns(pl.lit(None, pl.Int64).alias("timestamp"))
    )
    run._attach(untimed)
    with pytest.raises(ConfigError, match="popular-recent needs a timestamp"):
        Ensemble([run], weights={"popular-recent": 1.0})


def test_ridge_on_too_large_a_catalogue_is_a_config_error(successor, monkeypatch) -> None:
    from chronorec.blend import registry

    run = weak_run(successor)
    assert Ensemble([run], weights={"ridge": 1.0}).evaluate("test").metrics["ndcg@10"] >= 0.0
    monkeypatch.setattr(registry, "RIDGE_MAX_ITEMS", successor.n_items - 1)
    with pytest.raises(ConfigError, match="ridge solves densely over at most"):
        Ensemble([run], weights={"ridge": 1.0})


def test_text_knn_reads_the_item_text_once_for_every_stage(successor, random_text, monkeypatch):
    calls = []

    def text_vectors(dataset, config):  # stands in for the encoder's cached matrix
        calls.append(dataset.n_items)
        return random_text(dataset.n_items)

    monkeypatch.setattr("chronorec.blend.ensemble.build_text_vectors", text_vectors)
    ensemble = Ensemble([weak_run(successor)], {"text-knn": 0.5})
    for which in ("valid", "test"):
        ensemble.evaluate(which, slices=())
    assert calls == [successor.n_items]
    assert set(ensemble._fitted) == {"valid", "test"}  # still one fit per stage


def test_a_saved_blend_is_what_recommend_uses_unless_told_otherwise(successor, tmp_path, capsys):
    """``evaluate --blend ... --save-blend`` stores the tuned weights as RUN/blend.json;
    ``recommend RUN`` then blends with them (as with ``--weights``) and ``--weights none``
    gives the model alone."""
    data = str(successor.save(tmp_path / "data"))
    run = weak_run(successor)
    path = run.save(tmp_path / "run")
    base = ["recommend", str(path), "--data", data, "--history", "i4,i5", "-k", "3", "--json"]
    assert main(base) == 0  # no saved blend yet: the model alone
    alone = json.loads(capsys.readouterr().out)["items"]
    assert main(["evaluate", str(path), "--data", data, "--blend", "transitions",
                 "--save-blend", "--json"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    tuned = json.loads(out)["blend"]
    assert tuned["transitions"] > 0 and "saved the blend as" in err
    assert json.loads((path / "blend.json").read_text())["weights"] == tuned
    assert main(base) == 0
    out, err = capsys.readouterr()
    assert "ranked by the model + " in err and "(the run's blend.json)" in err
    weights = ",".join(f"{k}={v}" for k, v in tuned.items())
    assert main([*base, "--weights", weights]) == 0
    assert json.loads(out)["items"] == json.loads(capsys.readouterr().out)["items"]
    assert json.loads(out)["items"] != alone  # the blend changes the ranking
    assert main([*base, "--weights", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == alone
    # evaluate, too, reports what serve and recommend rank with
    assert main(["evaluate", str(path), "--data", data, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["blend"] == tuned and json.loads(out)["weights_tuned_on"] == "valid"
    assert "ranked by the model + " in err and "(the run's blend.json)" in err
    for off in (["--weights", "none"], ["--blend", "none"]):
        assert main(["evaluate", str(path), "--data", data, "--json", *off]) == 0
        out = json.loads(capsys.readouterr().out)
        assert "blend" not in out and out["model"] == "gru"
    # errors: two runs, no blend to save, a broken file
    assert main(["evaluate", str(path), str(path), "--data", data, "--blend", "transitions",
                 "--save-blend"]) == 2  # fmt: skip
    assert "--save-blend stores the blend of one run" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--data", data, "--save-blend"]) == 2
    capsys.readouterr()
    (path / "blend.json").write_text('{"weights": {"transitions": -1}}')
    assert main(base) == 2
    assert "blend.json: the weight of transitions must be a number >= 0" in capsys.readouterr().err
    (path / "blend.json").write_text("[1, 2]")
    assert main(base) == 2
    assert "blend.json: not a blend file" in capsys.readouterr().err
