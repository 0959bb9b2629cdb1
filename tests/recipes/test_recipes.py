"""Recipes as data and ``auto``: every shipped recipe loads and builds a config; auto picks by
the log's character on synthetic logs of known character; the choice is printed and saved;
--set and --config override a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chronorec import recipes
from chronorec.cli import main
from chronorec.config import RunConfig
from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset
from chronorec.errors import ConfigError
from chronorec.recommender import Recommender


def synthetic_log(
    lengths: list[int] | np.ndarray,
    *,
    n_items: int = 50,
    repeat: float = 0.0,
    basket: int = 1,
    behaviours: tuple[str, ...] = ("view",),
    text: bool = True,
    seed: int = 0,
) -> PreparedDataset:
    """Users of the given lengths; each event revisits one of the user's items with probability
    ``repeat`` (else a fresh random one); ``basket`` events share each timestamp; behaviours
    drawn uniformly; item titles unless ``text`` is False."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for u, n in enumerate(lengths, start=1):
        own: list[int] = []
        for t in range(n):
            item = (
                rng.choice(own) if own and rng.random() < repeat else rng.integers(1, n_items + 1)
            )
            own.append(int(item))
            users.append(u)
            items.append(int(item))
            stamps.append(1_600_000_000 + 100_000 * u + 3600 * (t // basket))
    pos = np.concatenate([np.arange(n) for n in lengths])
    events = pl.DataFrame(
        {
            "user": np.array(users, np.int32),
            "item": np.array(items, np.int32),
            "timestamp": np.array(stamps, np.int64),
            "behaviour": rng.integers(1, len(behaviours) + 1, len(users)).astype(np.int8),
            "value": np.ones(len(users), np.float32),
            "position": pos.astype(np.int32),
        }
    ).with_columns(pl.col("timestamp").diff().over("user").alias("gap"))
    catalogue = {"item": np.arange(1, n_items + 1, dtype=np.int32),
                 "item_id": [f"i{i}" for i in range(1, n_items + 1)]}  # fmt: skip
    if text:
        catalogue["title"] = [f"product number {i}" for i in range(1, n_items + 1)]
    n_users = len(lengths)
    return PreparedDataset(
        events=events,
        items=pl.DataFrame(catalogue),
        users=pl.DataFrame(
            {
                "user": np.arange(1, n_users + 1, dtype=np.int32),
                "user_id": [f"u{u}" for u in range(1, n_users + 1)],
            }
        ),  # fmt: skip
        manifest={
            "format_version": FORMAT_VERSION,
            "format": "synthetic",
            "behaviours": list(behaviours),
            "has_timestamps": True,
            "text_columns": ["title"] if text else [],
            "counts": {"users": n_users, "items": n_items, "events": len(users)},
        },  # fmt: skip
    )


def test_every_shipped_recipe_loads_says_when_it_fits_and_sets_no_protocol() -> None:
    assert set(recipes.names()) >= {
        "dense", "sparse-text", "sparse-id", "basket-repeat", "multi-behaviour"
    }  # fmt: skip
    for name in recipes.names():
        recipe = recipes.load_recipe(name)
        assert recipe.fits and recipe.measured, name
        assert set(recipe.settings) <= {"model", "train"}, name  # never data.*: the protocol
        RunConfig.from_dict(recipe.settings, source=name)  # valid keys and values
    with pytest.raises(ConfigError, match="unknown recipe 'gourmet'; choose from"):
        recipes.load_recipe("gourmet")


@pytest.mark.parametrize(
    ("log", "want"),
    [
        (lambda: synthetic_log([20] * 40, repeat=0.6, basket=4), "basket-repeat"),
        (lambda: synthetic_log([120] * 30, n_items=400), "dense"),
        (lambda: synthetic_log([6] * 80, n_items=300), "sparse-text"),
        (lambda: synthetic_log([6] * 80, n_items=300, text=False), "sparse-id"),
        (lambda: synthetic_log([10] * 50, behaviours=("view", "buy")), "multi-behaviour"),
    ],
    ids=["basket-repeat", "dense", "sparse-text", "sparse-id", "multi-behaviour"],
)
def test_auto_picks_the_recipe_of_the_logs_character(log, want: str) -> None:
    dataset = log()
    got = [recipes.choose(recipes.log_stats(dataset))[0] for _ in range(3)]
    assert got == [want] * 3  # and the same every time


def test_a_text_recipe_on_a_log_without_text_uses_item_ids() -> None:
    config, choice = recipes.resolve("sparse-text", synthetic_log([6] * 40, text=False))
    assert config.model.item_repr == "id" and "item ids only" in choice["why"]


def test_train_prints_and_saves_the_choice_and_set_overrides_it(tmp_path: Path, capsys) -> None:
    data = synthetic_log([20] * 40, repeat=0.6, basket=4, text=False).save(tmp_path / "data")
    run = tmp_path / "run"
    tiny = ["--set", "model.d_model=16", "--set", "train.max_epochs=1", "--set",
            "train.threads=1", "--set", "model.max_len=12", "--no-progress"]  # fmt: skip
    assert main(["train", str(data), "--out", str(run), *tiny]) == 0
    out = capsys.readouterr().out
    assert out.startswith("recipe: basket-repeat (")
    back = Recommender.load(run)
    assert back.meta["recipe"]["name"] == "basket-repeat"
    assert back.meta["recipe"]["stats"]["repeat_share"] > 0.3
    cfg = back.config
    assert cfg.model.repeat and cfg.train.target == "next-basket"  # from the recipe
    assert cfg.model.max_len == 12 and cfg.model.d_model == 16  # --set wins over it
    # --model and --recipe none
    again = tmp_path / "again"
    assert main(["train", str(data), "--out", str(again), "--recipe", "none", "--model", "gru",
                 *tiny]) == 0  # fmt: skip
    assert not Recommender.load(again).config.model.repeat
    assert Recommender.load(again).config.model.name == "gru"
    assert main(["train", str(data), "--out", str(tmp_path / "x"), "--recipe", "nope"]) == 2


def test_a_config_file_overrides_the_recipe_key_by_key(tmp_path: Path) -> None:
    file = tmp_path / "mine.toml"
    file.write_text("[model]\nd_model = 24\n[train]\nselect_metric = 'ndcg@10'\n")
    config, _ = recipes.resolve(
        "basket-repeat", synthetic_log([20] * 10, repeat=0.6), file, ["train.lr=1e-2"]
    )
    assert config.model.d_model == 24 and config.train.select_metric == "ndcg@10"
    assert config.model.repeat and config.train.lr == 1e-2  # the recipe's, and --set's
    assert json.loads(json.dumps(config.to_dict()))  # still a plain config
