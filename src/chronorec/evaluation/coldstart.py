"""The cold-start protocol: hide a random share of the catalogue from training, then evaluate the
test targets that are hidden ("cold") items next to the others ("warm").

1. ``cold = select_cold_items(n_items, fraction=0.1, seed=0)`` — reproducible for a seed.
2. ``split = cold_start_split(split, cold)`` — drops every event of a cold item from ``train``
   (training inputs *and* next-item targets) and every cold validation target, so early stopping
   never rewards a cold item. Test targets are kept: evaluation slices them into cold vs warm.
3. ``evaluate(..., targets=split.test, cold_items=cold)`` — ``result.slices["cold"]["ndcg@10"]``
   next to ``result.slices["warm"]["ndcg@10"]``.

Evaluation histories still come from the full log, so a test history may contain cold items (as
it would in production, where a new item is seen before any retraining); an ID-only model has no
trained embedding for them, a text model can embed them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import polars as pl

from chronorec.data.splits import Split


def select_cold_items(n_items: int, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``round(fraction * n_items)`` items drawn uniformly from ``1..n_items``
    (at least one when ``fraction > 0``); the same ``(n_items, fraction, seed)`` gives the same
    items."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"cold fraction must be in [0, 1), not {fraction}")
    n_cold = 0 if fraction == 0 else max(1, round(fraction * n_items))
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_items)[:n_cold] + 1).astype(np.int64)


def drop_items(events: pl.DataFrame, items: Iterable[int] | np.ndarray) -> pl.DataFrame:
    """``events`` without the events of ``items``; per user, ``position`` is renumbered
    ``0..k-1`` and ``gap`` recomputed from the remaining timestamps, so the result is again a
    valid event log for :class:`~chronorec.data.sequences.EventArrays`."""
    hidden = pl.Series("item", np.fromiter(items, dtype=np.int64)).cast(pl.Int32)
    kept = events.filter(~pl.col("item").is_in(hidden.implode()))
    columns = []
    if "position" in kept.columns:
        columns.append(pl.int_range(pl.len()).over("user").cast(pl.Int32).alias("position"))
    if "gap" in kept.columns and "timestamp" in kept.columns:
        columns.append(pl.col("timestamp").diff().over("user").cast(pl.Int64).alias("gap"))
    return kept.with_columns(columns) if columns else kept


def cold_start_split(split: Split, cold_items: Iterable[int] | np.ndarray) -> Split:
    """``split`` with cold items removed from ``train`` and ``before_test`` (see
    :func:`drop_items`) and from the validation targets; test targets unchanged."""
    cold = np.fromiter(cold_items, dtype=np.int64)
    valid = split.valid.filter(~pl.col("item").is_in(pl.Series(cold).cast(pl.Int32).implode()))
    return replace(
        split,
        train=drop_items(split.train, cold),
        valid=valid,
        before_test=drop_items(split.before_test, cold),
        protocol=f"{split.protocol}+cold-start({cold.size} items)",
    )
