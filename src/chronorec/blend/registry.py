"""The baselines a blend can name, and how each is built for a log: :data:`BLEND_BASELINES`,
:func:`make_baseline`, and :func:`fit_baselines` (every one the data allows, as the reports
list them)."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from chronorec.blend.baselines import (
    REPEAT_HALF_LIFE,
    ItemTransitions,
    MostPopular,
    RepeatFrequency,
    TextKNN,
)
from chronorec.blend.neighbours import RIDGE_MAX_ITEMS, SequentialRidge, UserKNN
from chronorec.errors import ConfigError

BLEND_BASELINES = (
    "popular", "popular-recent", "repeat", "repeat-recent", "transitions", "user-knn", "ridge",
    "text-knn",
)  # fmt: skip
RECENT_DAYS = 30.0  # the window of "popular-recent", before the last training event

Baseline = MostPopular | RepeatFrequency | ItemTransitions | TextKNN | UserKNN | SequentialRidge


def fit_baselines(
    train: pl.DataFrame,
    n_items: int,
    *,
    recent_days: float | None = None,
    item_vectors: np.ndarray | torch.Tensor | None = None,
    behaviour: int | None = None,
    behaviour_name: str | None = None,
) -> dict[str, Baseline]:
    """Every baseline that the data allows, fitted on ``train`` and keyed by name: global
    popularity, recent popularity (with ``recent_days``, when every event has a timestamp),
    repeat, recency-weighted repeat (when every event has a timestamp), transitions, user-KNN, ridge
    (up to :data:`RIDGE_MAX_ITEMS` items), text-KNN (with ``item_vectors``).

    ``behaviour`` (the targets' behaviour, e.g. purchases) restricts the popularity counts to
    it and adds ``repeat-<behaviour_name>``: the user's own items of that behaviour only. The
    plain repeat baselines count every event of the history, whatever its behaviour: on the
    Taobao sample the items a user viewed predict the next purchase far better than the items
    they bought before (BENCHMARKS.md)."""
    models: list[Baseline] = [MostPopular(behaviour=behaviour)]
    timed = "timestamp" in train.columns and train["timestamp"].null_count() == 0
    if recent_days is not None and timed:
        models.append(MostPopular(window_days=recent_days, behaviour=behaviour))
    models.append(RepeatFrequency())
    if behaviour is not None:
        models.append(
            RepeatFrequency(behaviour=behaviour, name=f"repeat-{behaviour_name or behaviour}")
        )
    if timed:
        models.append(RepeatFrequency(half_life=REPEAT_HALF_LIFE))
    models += [ItemTransitions(), UserKNN()]
    if n_items <= RIDGE_MAX_ITEMS:
        models.append(SequentialRidge())
    if item_vectors is not None:
        models.append(TextKNN(item_vectors))
    return {m.name: m.fit(train, n_items) for m in models}


def make_baseline(
    name: str,
    train: pl.DataFrame,
    n_items: int,
    *,
    has_text: bool = False,
    behaviour: int | None = None,
    text: np.ndarray | None = None,
) -> Baseline:
    """The blend's baseline ``name`` (one of :data:`BLEND_BASELINES`), unfitted, for a log like
    ``train`` of ``n_items`` items; a ConfigError where the data cannot support it. The
    popularity counts count the targets' ``behaviour``; the repeat counts every behaviour (what
    a user viewed predicts what they buy, see :func:`fit_baselines`). ``text``: the item text
    vectors text-knn needs."""
    if name == "popular":
        return MostPopular(behaviour=behaviour)
    if name == "popular-recent":
        if "timestamp" not in train.columns or train["timestamp"].null_count():
            raise ConfigError("popular-recent needs a timestamp on every event")
        return MostPopular(window_days=RECENT_DAYS, behaviour=behaviour)
    if name == "repeat":
        return RepeatFrequency()
    if name == "repeat-recent":
        return RepeatFrequency(half_life=REPEAT_HALF_LIFE)
    if name == "transitions":
        return ItemTransitions()
    if name == "user-knn":
        return UserKNN()
    if name == "ridge":
        if n_items > RIDGE_MAX_ITEMS:
            raise ConfigError(
                f"ridge solves densely over at most {RIDGE_MAX_ITEMS:,} items; "
                f"this catalogue has {n_items:,}"
            )
        return SequentialRidge()
    if name == "text-knn":
        if not has_text or text is None:
            raise ConfigError("text-knn needs item text; this catalogue has none")
        return TextKNN(text)
    raise ConfigError(f"unknown baseline {name!r}; choose from {', '.join(BLEND_BASELINES)}")
