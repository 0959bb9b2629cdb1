"""Named training recipes, shipped as TOML files next to this module, and ``auto``: the recipe
chosen from a log's own statistics.

A recipe sets ``[model]`` and ``[train]`` values only — never the evaluation protocol
(``data.split``, ``data.test_days``, ``data.exclude_seen``, ``data.target_behaviour``), which is
the user's question, not the recipe's. Its ``[recipe]`` table says when it fits (``fits``) and
what it measured (``measured``). Layers, later ones winning: the defaults, the recipe, a
``--config`` file, ``--set`` and the command's own flags.

``auto`` (:func:`choose`) reads :class:`LogStats`: several behaviours → ``multi-behaviour``; many
repeats → ``basket-repeat``; long histories → ``dense``; else ``sparse-text`` or ``sparse-id`` by
text coverage. A recipe that reads item text falls back to item ids on a log with little text.
The thresholds are round numbers between the logs the recipes were measured on, not tuned to one.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from chronorec.config import RunConfig, load_config
from chronorec.data.dataset import PreparedDataset
from chronorec.errors import ConfigError

HERE = Path(__file__).parent
AUTO = "auto"
NONE = "none"  # the defaults alone
SECTIONS = ("model", "train")  # what a recipe may set
# auto's thresholds (see the module docstring)
MINORITY_BEHAVIOURS = 0.01  # the rarer behaviours' share of events for a multi-behaviour log
REPEATS = 0.30  # share of events that revisit an item the user had
BASKET_REPEATS = 0.15  # ... enough when most events come in baskets
BASKETS = 0.30  # share of events sharing the user's previous timestamp
LONG_HISTORY = 50  # median events per user of a dense log
TEXT_COVERAGE = 0.5  # share of items with text for a recipe that reads it


@dataclass(frozen=True)
class Recipe:
    name: str
    fits: str  # when it fits
    measured: str  # what it measured, where
    settings: dict[str, dict[str, Any]]  # section -> key -> value

    def reads_text(self) -> bool:
        return str(self.settings.get("model", {}).get("item_repr", "id")) != "id"


@dataclass(frozen=True)
class LogStats:
    """What ``auto`` reads of a log."""

    users: int
    items: int
    events: int
    median_history: float
    repeat_share: float  # events whose item the user had before
    basket_share: float  # events at the same timestamp as the user's previous one
    minority_behaviours: float  # share of events that are not of the commonest behaviour
    n_behaviours: int
    text_coverage: float  # share of items with some text

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load_recipe(name: str) -> Recipe:
    path = HERE / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"unknown recipe {name!r}; choose from {', '.join(names())}, {AUTO} or {NONE}"
        )
    raw = tomllib.loads(path.read_text())
    about = raw.pop("recipe", {})
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: a recipe sets only {SECTIONS}, not [{unknown[0]}]")
    return Recipe(name, str(about.get("fits", "")), str(about.get("measured", "")), raw)


def log_stats(dataset: PreparedDataset) -> LogStats:
    ev = dataset.events
    n = max(1, ev.height)
    lengths = ev.group_by("user").len()["len"]
    pairs = ev.select("user", "item").n_unique()
    basket = 0.0
    if dataset.has_timestamps and "gap" in ev.columns:
        basket = float((ev["gap"] == 0).sum()) / n
    counts = ev.group_by("behaviour").len()["len"]
    minority = 1.0 - float(counts.max()) / n if counts.len() else 0.0  # type: ignore[arg-type]
    return LogStats(
        users=dataset.n_users,
        items=dataset.n_items,
        events=ev.height,
        median_history=float(lengths.median() or 0.0),  # type: ignore[arg-type]
        repeat_share=1.0 - pairs / n,
        basket_share=basket,
        minority_behaviours=minority,
        n_behaviours=int(counts.len()),
        text_coverage=_text_coverage(dataset),
    )


def _text_coverage(dataset: PreparedDataset) -> float:
    cols = [c for c in dataset.text_columns if c in dataset.items.columns]
    if not cols or dataset.n_items == 0:
        return 0.0
    has = pl.any_horizontal(
        [pl.col(c).cast(pl.Utf8).str.strip_chars().str.len_chars() > 0 for c in cols]
    )
    return float(dataset.items.select(has.fill_null(False).sum()).item()) / dataset.n_items


def choose(stats: LogStats) -> tuple[str, str]:
    """The recipe for a log of these statistics and why, in words."""
    if stats.n_behaviours >= 2 and stats.minority_behaviours >= MINORITY_BEHAVIOURS:
        return "multi-behaviour", (
            f"{stats.n_behaviours} behaviours, {stats.minority_behaviours:.0%} of events "
            "not of the commonest"
        )
    basket = stats.basket_share >= BASKETS and stats.repeat_share >= BASKET_REPEATS
    if stats.repeat_share >= REPEATS or basket:
        return "basket-repeat", (
            f"{stats.repeat_share:.0%} of events revisit an item, "
            f"{stats.basket_share:.0%} share a basket"
        )
    if stats.median_history >= LONG_HISTORY:
        return "dense", (
            f"median history {stats.median_history:.0f} events, {stats.repeat_share:.0%} repeats"
        )
    if stats.text_coverage >= TEXT_COVERAGE:
        return "sparse-text", (
            f"median history {stats.median_history:.0f} events, text on "
            f"{stats.text_coverage:.0%} of items"
        )
    return "sparse-id", (
        f"median history {stats.median_history:.0f} events, text on "
        f"{stats.text_coverage:.0%} of items"
    )


def resolve(
    name: str,
    dataset: PreparedDataset,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> tuple[RunConfig, dict[str, Any]]:
    """The run config for ``dataset`` with recipe ``name`` (``auto``: chosen from its
    statistics; ``none``: the defaults), then ``config_file``, then ``overrides``; and the
    choice as a run records it (name, why, the settings applied, the statistics)."""
    stats = log_stats(dataset)
    if name == NONE:
        return load_config(config_file, overrides or []), {"name": NONE, "why": "asked for none"}
    why = "asked for"
    if name == AUTO:
        name, why = choose(stats)
    recipe = load_recipe(name)
    settings = {s: dict(v) for s, v in recipe.settings.items()}
    if recipe.reads_text() and stats.text_coverage < TEXT_COVERAGE:
        settings["model"]["item_repr"] = "id"
        why += f"; item ids only (text on {stats.text_coverage:.0%} of items)"
    base = RunConfig.from_dict(settings, source=f"recipe {name}")
    config = load_config(config_file, overrides or [], base=base)
    choice = {"name": name, "why": why, "settings": settings, "stats": stats.as_dict()}
    return config, choice
