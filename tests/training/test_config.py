"""Typed config: defaults, TOML, --set overrides, and errors that name the bad key."""

from __future__ import annotations

import pytest

from chronorec.config import RunConfig, load_config
from chronorec.errors import ConfigError


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nname = "gru"\nd_model = 48\n\n[train]\nlr = 3e-4\n')
    cfg = load_config(path, ["model.d_model=96", "train.max_minutes=1.5", 'model.item_repr="text"'])
    assert (cfg.model.name, cfg.model.d_model, cfg.model.item_repr) == ("gru", 96, "text")
    assert cfg.train.lr == 3e-4 and cfg.train.max_minutes == 1.5


def test_round_trip_through_a_dict():
    cfg = load_config(None, ["train.betas=[0.9, 0.99]", "data.exclude_seen=false"])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.train.betas == (0.9, 0.99)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.d_modle=32", "unknown key model.d_modle"),
        ("modle.d_model=32", "unknown section 'modle'"),
        ("model.d_model=big", "must be an integer"),
        ("model.name=rnn", "is not one of"),
        ("train.lr", "expected section.key=value"),
        ("model.n_heads=7", "divisible"),
        ("model.text_hidden=-1", "text_hidden must be >= 0"),
        ("model.text_score=true", "text_score needs item text"),
        ("train.decay_start=0.5", "needs train.lr_decay"),
        ("train.target=next-invoice", "is not one of"),
        ("train.target_days=0", "target_days must be > 0"),
        ("train.select_metric=ndcg@7", "select_metric must be one of"),
        ("train.select_metric=auc", "select_metric must be one of"),
        ("train.drop_events=0.1", "unknown key train.drop_events"),
        ("train.refit=maybe", "refit"),
        ("train.target=next-k", "is not one of"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_key_in_a_file_is_an_error(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown key train.learning_rate"):
        load_config(path)


def test_text_section_passes_through_for_the_text_tower():
    cfg = load_config(None, ["text.batch_size=8"])
    assert cfg.text == {"batch_size": 8}


def test_separate_output_table_needs_an_id_tower():
    with pytest.raises(ConfigError, match="separate_output needs item_repr 'id'"):
        load_config(None, ["model.item_repr=id+text", "model.separate_output=true"])
    assert load_config(None, ["model.separate_output=true"]).model.separate_output


def test_a_run_saved_with_data_exclude_history_reads_it_as_exclude_seen() -> None:
    cfg = RunConfig.from_dict({"data": {"exclude_history": False}})
    assert cfg.data.exclude_seen is False
    assert "exclude_history" not in cfg.to_dict()["data"]


def test_a_run_saved_with_a_removed_option_loads_only_at_its_old_default() -> None:
    kept = RunConfig.from_dict({"train": {"drop_events": 0.0, "target_weight": 1.0, "target_k": 2}})
    assert kept == RunConfig()
    with pytest.raises(ConfigError, match="train.drop_events was removed"):
        RunConfig.from_dict({"train": {"drop_events": 0.2}})
