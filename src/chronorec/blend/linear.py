"""The linear blend's arithmetic: per-history z-scores, the scale each baseline is added at, and
the weighted sum."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

from chronorec.data.sequences import HistoryBatch

# counts (or decayed counts): log1p, then z
LOG_SCALED = ("popular", "popular-recent", "repeat", "repeat-recent", "transitions")
LINEAR = "linear"  # the term that is the linear blend: runs + sum of weight * baseline z-scores


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """(B, V) scores -> per-row z-scores over the finite entries; -inf stays -inf."""
    finite = torch.isfinite(scores)
    if bool(finite[:, 1:].all()) and not bool(finite[:, 0].any()):
        # the usual case, only the padding column 0 at -inf: 10x faster than the masked sums
        body = scores[:, 1:].double()
        mean = body.mean(1, keepdim=True)
        std = body.std(1, correction=0, keepdim=True)
        z = ((scores.double() - mean) / (std + 1e-12)).float()
        z[:, 0] = float("-inf")
        return z
    n = finite.sum(1, keepdim=True).clamp(min=1)
    s = torch.where(finite, scores.double(), 0.0)
    mean = s.sum(1, keepdim=True) / n
    var = (torch.where(finite, s - mean, 0.0) ** 2).sum(1, keepdim=True) / n
    z = (s - mean) / (var.sqrt() + 1e-12)
    return torch.where(finite, z, float("-inf")).float()


def _window(batch: HistoryBatch, max_len: int) -> HistoryBatch:
    """The last ``max_len`` columns of a left-padded batch."""
    if batch.items.shape[1] <= max_len:
        return batch
    return HistoryBatch(
        items=batch.items[:, -max_len:],
        behaviours=batch.behaviours[:, -max_len:],
        timestamps=batch.timestamps[:, -max_len:],
        lengths=np.minimum(batch.lengths, max_len),
    )


def _known_only(batch: HistoryBatch, rows: int) -> HistoryBatch:
    """The batch with items from row ``rows`` on (unknown to a baseline) as padding."""
    if int(batch.items.max(initial=0)) < rows:
        return batch
    items = np.where(batch.items < rows, batch.items, 0)
    return dataclasses.replace(batch, items=items)


def _baseline_z(name: str, raw: torch.Tensor, width: int) -> torch.Tensor:
    """A baseline's raw scores on the scale the blend adds them at: per-history z-scores, of
    ``log1p`` of the counts for the count-based ones."""
    s = raw.to(torch.float64, copy=True)  # a baseline may return a view of its own state
    if name == "repeat":  # count * (width + 1) + latest step + popularity in [0, 1)
        s = s / (width + 1)  # -> count + a recency fraction in [0, 1)
    if name in LOG_SCALED:
        s = torch.log1p(s.clamp(min=0.0))
    s[:, 0] = float("-inf")
    return standardise(s)


def with_linear(
    parts: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    """``parts`` plus the term :data:`LINEAR`, the linear blend's sum with ``weights``."""
    total = parts["runs"].clone()
    for name, w in weights.items():
        if w > 0:
            total += w * parts[name]
    return {**parts, LINEAR: total}
