"""Left-padded history tensors gathered from a prepared event log, with no Python loop over events.

``EventArrays`` holds the event log as flat NumPy columns plus each user's offset, built once.
``EventArrays.histories(users, history_lens, max_len)`` then gathers a ``(B, L)`` window per row:
the user's events with ``position`` in ``[history_len - max_len, history_len)``, left-padded with 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class HistoryBatch:
    """One batch of histories as NumPy arrays; padding is on the left and equals 0."""

    items: np.ndarray  # (B, L) int64
    behaviours: np.ndarray  # (B, L) int64
    timestamps: np.ndarray  # (B, L) int64 seconds; 0 at padding or when the log has none
    lengths: np.ndarray  # (B,) int64 real events in the window (≤ L)

    def __len__(self) -> int:
        return int(self.items.shape[0])


@dataclass(frozen=True)
class EventArrays:
    """Flat per-event columns of a log sorted by ``(user, position)`` and per-user offsets."""

    items: np.ndarray  # (E,) int64
    behaviours: np.ndarray  # (E,) int64
    timestamps: np.ndarray  # (E,) int64
    offsets: np.ndarray  # (n_users + 2,) int64: user u's events are offsets[u]:offsets[u + 1]

    @classmethod
    def from_events(cls, events: pl.DataFrame, n_users: int | None = None) -> EventArrays:
        """``events`` must hold, per user, a prefix ``position = 0..k-1`` (a full log or a split's
        ``train``), sorted by ``(user, position)`` as a prepared dataset stores it."""
        users = events["user"].to_numpy().astype(np.int64)
        if users.size and np.any(np.diff(users) < 0):
            raise ValueError("events must be sorted by (user, position)")
        top = int(users.max()) if users.size else 0
        n = max(top, n_users or 0)
        counts = np.bincount(users, minlength=n + 1)  # (n + 1,)
        offsets = np.zeros(n + 2, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        ts = events["timestamp"].fill_null(0).to_numpy().astype(np.int64)
        return cls(
            items=events["item"].to_numpy().astype(np.int64),
            behaviours=events["behaviour"].to_numpy().astype(np.int64),
            timestamps=ts,
            offsets=offsets,
        )

    def user_lengths(self) -> np.ndarray:
        """(n_users + 1,) number of events per user index (index 0 is padding)."""
        return np.diff(self.offsets)

    def histories(self, users: np.ndarray, history_lens: np.ndarray, max_len: int) -> HistoryBatch:
        users = np.asarray(users, dtype=np.int64)
        history_lens = np.asarray(history_lens, dtype=np.int64)
        have = self.offsets[users + 1] - self.offsets[users]
        if np.any(history_lens > have):
            raise ValueError("a history_len exceeds the events of its user in this log")
        steps = np.arange(max_len, dtype=np.int64) - max_len  # (L,) = -L .. -1
        pos = history_lens[:, None] + steps[None, :]  # (B, L) positions in the user's history
        valid = pos >= 0
        idx = np.where(valid, self.offsets[users][:, None] + pos, 0)
        return HistoryBatch(
            items=np.where(valid, self.items[idx], 0),
            behaviours=np.where(valid, self.behaviours[idx], 0),
            timestamps=np.where(valid, self.timestamps[idx], 0),
            lengths=np.minimum(history_lens, max_len),
        )
