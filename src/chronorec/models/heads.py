"""Output heads: catalogue scores and the pointwise behaviour head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ScoreHead(nn.Module):
    """Scores ``h · e`` (dot) or ``cos(h, e) / temperature`` (cosine) against the item table."""

    def __init__(self, kind: str = "dot", temperature: float = 0.05) -> None:
        super().__init__()
        self.kind = kind
        self.temperature = temperature

    def query(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> the query side of ``scores = q @ e.T``."""
        if self.kind == "cosine":
            return F.normalize(hidden, dim=-1) / self.temperature
        return hidden

    def rows(self, table: torch.Tensor) -> torch.Tensor:
        """item rows (V, D) -> the item side of ``scores = q @ e.T``."""
        return F.normalize(table, dim=-1) if self.kind == "cosine" else table

    def prepare(
        self, hidden: torch.Tensor, table: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(q, e)`` with ``scores = q @ e.T``; losses take these directly."""
        return self.query(hidden), self.rows(table)

    def forward(self, hidden: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        q, e = self.prepare(hidden, table)  # (..., D), (V, D)
        return q @ e.T  # (..., V)


class BehaviourHead(nn.Module):
    """Pointwise ``P(behaviour = b | history, item)``, e.g. "will this user buy this item"."""

    def __init__(self, d_model: int, n_behaviours: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(3 * d_model, d_model), nn.GELU(), nn.Linear(d_model, n_behaviours)
        )

    def forward(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``hidden`` (..., D) and item vectors ``items`` (..., D) -> logits (..., n_behaviours);
        class ``b - 1`` is behaviour index ``b``."""
        return self.mlp(torch.cat([hidden, items, hidden * items], dim=-1))
