"""The blend a run keeps after training: the model alone where the baselines add nothing (a
successor pattern the model has learned), a blend where they do (a model that has barely
started), and what the train command saves and every command then ranks with."""

from __future__ import annotations

import json
from pathlib import Path

from chronorec.blend import Ensemble, choose_blend
from chronorec.blend.auto import allowed, auto_blend
from chronorec.cli import main
from chronorec.config import ModelConfig, RunConfig, TrainConfig
from chronorec.recommender import Recommender
from tests.evaluation.helpers import weak_run


def learned_run(dataset):  # noqa: ANN001, ANN201
    """A GRU that has learned the successor pattern (item i is followed by item i + 1)."""
    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=32, n_layers=1, max_len=8, dropout=0.0),
        train=TrainConfig(max_epochs=30, batch_size=16, lr=1e-2, threads=1, warmup_steps=1),
    )
    return Recommender(cfg).fit(dataset, progress=False)


def test_the_model_alone_is_kept_where_the_baselines_add_nothing(successor) -> None:
    rec = learned_run(successor)
    assert rec.evaluate("valid")["ndcg@10"] > 0.95  # it has learned the pattern
    ensemble = Ensemble([rec])
    chosen = auto_blend(ensemble)
    assert chosen.kind == "none" and chosen.weights == {} and chosen.learned is None
    assert ensemble.learned is None and not any(ensemble.weights.values())


def test_a_blend_is_kept_where_the_baselines_add_to_a_weak_model(successor) -> None:
    ensemble = Ensemble([weak_run(successor)])
    assert "popular-recent" in allowed(ensemble) and "text-knn" in allowed(ensemble)
    chosen = auto_blend(ensemble, learned=False)
    assert chosen.kind == "linear" and chosen.weights.get("transitions", 0) > 0
    before = weak_run(successor).evaluate("valid")["ndcg@10"]
    assert ensemble.evaluate("valid")["ndcg@10"] > before + 0.1


def test_train_saves_its_choice_and_evaluate_ranks_with_it(successor, tmp_path: Path, capsys):
    data = successor.save(tmp_path / "data")
    run = tmp_path / "run"
    weak = ["--model", "gru", "--recipe", "none", "--set", "model.d_model=16", "--set",
            "model.max_len=8", "--set", "train.max_epochs=1", "--set", "train.lr=1e-4",
            "--set", "train.threads=1", "--no-progress"]  # fmt: skip
    assert main(["train", str(data), "--out", str(run), "--blend", "linear", *weak]) == 0
    out = capsys.readouterr().out
    assert "blend: the model + " in out and "transitions" in out
    saved = json.loads((run / "blend.json").read_text())
    assert saved["weights"]["transitions"] > 0 and saved["tuned_on"] == "valid"
    assert choose_blend(None, run, "--blend").source == "saved"
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["blend"] == saved["weights"]
    none = tmp_path / "none"
    assert main(["train", str(data), "--out", str(none), "--blend", "none", *weak]) == 0
    assert "blend: the model alone" in capsys.readouterr().out
    assert not choose_blend(None, none, "--blend").blended
