"""Tiny hand-made event logs and scorers with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from chronorec.data.sequences import EventArrays, HistoryBatch


def make_events(
    histories: dict[int, list[int]],
    behaviours: dict[int, list[int]] | None = None,
    timestamps: dict[int, list[int]] | None = None,
) -> pl.DataFrame:
    """An event log in the prepared schema from ``{user: [item, ...]}`` in chronological order."""
    rows = []
    for user in sorted(histories):
        for pos, item in enumerate(histories[user]):
            beh = behaviours[user][pos] if behaviours else 1
            ts = timestamps[user][pos] if timestamps else 1_000 * user + pos
            rows.append((user, item, ts, beh, pos))
    frame = pl.DataFrame(
        rows,
        schema={
            "user": pl.Int32,
            "item": pl.Int32,
            "timestamp": pl.Int64,
            "behaviour": pl.Int8,
            "position": pl.Int32,
        },
        orient="row",
    )
    return frame.with_columns(pl.col("timestamp").diff().over("user").alias("gap"))


def make_targets(
    rows: list[tuple[int, int, int]], behaviour: list[int] | None = None
) -> pl.DataFrame:
    """Target rows from ``(user, item, history_len)`` triples."""
    return pl.DataFrame(
        {
            "user": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "behaviour": behaviour or [1] * len(rows),
            "timestamp": [0] * len(rows),
            "history_len": [r[2] for r in rows],
        },
        schema={
            "user": pl.Int32,
            "item": pl.Int32,
            "behaviour": pl.Int8,
            "timestamp": pl.Int64,
            "history_len": pl.Int32,
        },
    )


class FixedScorer:
    """Scores user u with row u of ``table`` (n_users + 1, n_items + 1); records its batches."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        self.batches: list[tuple[HistoryBatch, np.ndarray]] = []

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        self.batches.append((batch, users.copy()))
        return torch.from_numpy(self.table[users])


def arrays_of(events: pl.DataFrame) -> EventArrays:
    return EventArrays.from_events(events)


def weak_run(dataset, seed: int = 0):
    """A GRU that has barely started learning (one epoch at lr 1e-4): a blend has something to
    add."""
    from chronorec.config import ModelConfig, RunConfig, TrainConfig
    from chronorec.recommender import Recommender

    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=16, n_layers=1, max_len=8, dropout=0.0),
        train=TrainConfig(max_epochs=1, batch_size=16, lr=1e-4, threads=1, warmup_steps=1,
                          seed=seed),
    )  # fmt: skip
    return Recommender(cfg).fit(dataset, progress=False)
