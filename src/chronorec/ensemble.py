"""Several trained runs on one dataset and split, ranked together.

Each run scores the whole catalogue after a history; the scores are standardised per history
(z-scores over the catalogue, so runs with different score scales — dot products, cosine with a
temperature, LSTM or transformer — weigh the same) and averaged. On ML-1M the mean of three LSTM
seeds ranks better than any one of them (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chronorec.data.sequences import HistoryBatch
from chronorec.errors import ConfigError
from chronorec.recommender import Recommender, cold_items, make_split


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """(B, V) scores -> per-row z-scores over the finite entries; -inf stays -inf."""
    finite = torch.isfinite(scores)
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


class Ensemble:
    """Runs fitted on the same catalogue and split (``data`` config), scored as one model."""

    def __init__(self, members: Sequence[Recommender]) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one run")
        first = members[0]
        first._require_dataset()
        items = first.item_ids()
        for i, rec in enumerate(members[1:], start=2):
            rec._require_dataset()
            if rec.item_ids() != items:
                raise ConfigError(f"run {i} was trained on another catalogue than run 1")
            if rec.config.data != first.config.data:
                diff = [
                    f.name
                    for f in dataclasses.fields(first.config.data)
                    if getattr(rec.config.data, f.name) != getattr(first.config.data, f.name)
                ]
                raise ConfigError(
                    f"run {i} has another split or evaluation setting than run 1: "
                    + ", ".join(f"data.{name}" for name in diff)
                )
        self.members = list(members)
        self.config = first.config
        self.max_len = max(rec.config.model.max_len for rec in members)

    @classmethod
    def load(cls, paths: Sequence[str | Path], dataset: str | Path | None = None) -> Ensemble:
        """Load every run directory; ``dataset`` (default: each run's recorded dataset)."""
        first = Recommender.load(paths[0], dataset=dataset)
        data = first._require_dataset()
        return cls([first] + [Recommender.load(p, dataset=data) for p in paths[1:]])

    @torch.no_grad()
    def score(self, batch: HistoryBatch, users: np.ndarray | None = None) -> torch.Tensor:
        """Mean standardised scores ``(B, n_items + 1)``; column 0 is -inf."""
        total = torch.zeros(0)
        for rec in self.members:
            z = standardise(rec.score(_window(batch, rec.config.model.max_len), users))
            total = z if total.numel() == 0 else total + z
        return total / len(self.members)

    def evaluate(
        self, which: str = "test", *, exclude_history: bool | None = None, **options: Any
    ) -> Any:
        """Full-ranking metrics of the ensemble on the runs' split, as
        :meth:`Recommender.evaluate` computes them for one run."""
        from chronorec.evaluation import evaluate

        dataset = self.members[0]._require_dataset()
        split = make_split(dataset, self.config)
        exclude = self.config.data.exclude_history if exclude_history is None else exclude_history
        if self.config.data.cold_fraction > 0:
            options.setdefault("cold_items", cold_items(dataset, self.config))
        return evaluate(
            self, dataset, split.targets(which),  # type: ignore[arg-type]  # checked by Split
            exclude_history=exclude, max_len=self.max_len,
            batch_size=self.config.train.eval_batch_size, train=split.train, **options,
        )  # fmt: skip
