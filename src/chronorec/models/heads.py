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
    """Pointwise ``P(behaviour = b | history, item)``, e.g. "will this user buy this item".

    With ``n_features`` it also reads :func:`history_features` of the history and the item: what
    the hidden state may not keep (the user's behaviour mix, their own earlier events on the
    item), and what simple baselines predict purchases from."""

    def __init__(
        self, d_model: int, n_behaviours: int, n_features: int = 0, read_item: bool = True
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.read_item = read_item
        self.mlp = nn.Sequential(
            nn.Linear((3 if read_item else 1) * d_model + n_features, d_model),
            nn.GELU(),
            nn.Linear(d_model, n_behaviours),
        )

    def forward(
        self, hidden: torch.Tensor, items: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``hidden`` (..., D), item vectors ``items`` (..., D) and, for a head built with
        ``n_features``, ``features`` (..., n_features) -> logits (..., n_behaviours); class
        ``b - 1`` is behaviour index ``b``. A head built without ``read_item`` ignores
        ``items``."""
        parts = [hidden, items, hidden * items] if self.read_item else [hidden]
        if self.n_features:
            if features is None:
                raise ValueError("this behaviour head reads history features: pass them")
            parts.append(features.to(hidden.dtype))
        return self.mlp(torch.cat(parts, dim=-1))


def history_features(
    items: torch.Tensor, behaviours: torch.Tensor, candidates: torch.Tensor, n_behaviours: int
) -> torch.Tensor:
    """Features for :class:`BehaviourHead`, ``(B, T, K, 2 * n_behaviours)``: for the history
    window ``items``/``behaviours`` (B, L), left-padded with 0, up to and including step
    ``t`` of T steps and each candidate item ``candidates`` (B, T, K), the share of each
    behaviour among the events so far, then the log1p count of the user's events of each
    behaviour on the candidate so far.

    T = L scores every step of a training window (step t sees events 0..t); T = 1 the state
    after the whole window."""
    B, L = items.shape
    T = candidates.shape[1]
    real = items > 0  # (B, L)
    onehot = F.one_hot(behaviours.long() * real, n_behaviours + 1)[..., 1:].float()  # (B, L, n_b)
    if T == L:  # step t sees events s <= t
        seen = torch.ones(L, L, dtype=torch.bool).tril()  # (T, L)
        mix = onehot.cumsum(1) / real.cumsum(1).clamp(min=1)[..., None]  # (B, L, n_b)
    elif T == 1:
        seen = torch.ones(1, L, dtype=torch.bool)
        mix = (onehot.sum(1) / real.sum(1).clamp(min=1)[:, None])[:, None]  # (B, 1, n_b)
    else:
        raise ValueError(f"history_features: {T} steps for a window of {L}")
    same = candidates[..., None] == items[:, None, None, :]  # (B, T, K, L)
    same = same & (seen[None, :, None, :] & real[:, None, None, :])
    counts = torch.einsum("btkl,bln->btkn", same.float(), onehot)  # (B, T, K, n_b)
    mix = mix[:, :, None, :].expand_as(counts)
    return torch.cat([mix, counts.log1p()], dim=-1)
