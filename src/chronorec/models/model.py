"""The next-item model: item tower + per-step features + one sequence encoder + heads.

``forward(items, behaviours, timestamps) -> hidden (B, L, D)``: the state after each step, which
predicts the step after it. ``scores(hidden, table)`` ranks the whole catalogue.
"""

from __future__ import annotations

import torch
from torch import nn

from chronorec.config import ModelConfig
from chronorec.models.gru import GRUEncoder
from chronorec.models.heads import BehaviourHead, ScoreHead
from chronorec.models.hstu import HSTUEncoder
from chronorec.models.inputs import time_gap_buckets
from chronorec.models.lstm import LSTMEncoder
from chronorec.models.repeat import RepeatBias
from chronorec.models.tower import ItemTower
from chronorec.models.transformer import TransformerEncoder

ENCODERS: dict[str, type[nn.Module]] = {
    "lstm": LSTMEncoder,
    "gru": GRUEncoder,
    "transformer": TransformerEncoder,
    "hstu": HSTUEncoder,
}


class NextItemModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        n_items: int,
        n_behaviours: int,
        text_vectors: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.n_behaviours = n_behaviours
        D = cfg.d_model
        self.tower = ItemTower(
            n_items,
            D,
            cfg.item_repr,
            text_vectors=text_vectors,
            text_hidden=cfg.text_hidden,
            dropout=cfg.dropout,
        )
        self.behaviour_emb = nn.Embedding(n_behaviours + 1, D, padding_idx=0)
        self.time_emb = nn.Embedding(cfg.n_time_buckets, D, padding_idx=0)
        for emb in (self.behaviour_emb, self.time_emb):
            nn.init.normal_(emb.weight, std=D**-0.5)
            with torch.no_grad():
                emb.weight[0].zero_()
        self.encoder = ENCODERS[cfg.name](cfg)
        self.head = ScoreHead(cfg.score, cfg.temperature)
        self.behaviour_head = BehaviourHead(D, n_behaviours) if cfg.behaviour_head else None
        self.repeat = RepeatBias(n_behaviours) if cfg.repeat else None

    def item_table(self) -> torch.Tensor:
        """All item vectors ``(n_items + 1, D)``; row 0 is padding."""
        return self.tower()

    def forward(
        self,
        items: torch.Tensor,
        behaviours: torch.Tensor,
        timestamps: torch.Tensor,
        table: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """``items``/``behaviours``/``timestamps`` (B, L) int64, left-padded with 0 ->
        hidden (B, L, D), or (B, 1, D) after the last step only with ``last_only`` (cheaper for
        the transformer). Pass ``table`` (V, D) to reuse an item table computed once per step."""
        if table is None:
            table = self.item_table()
        mask = items > 0  # (B, L)
        x = table[items]  # (B, L, D)
        if self.cfg.use_behaviour:
            x = x + self.behaviour_emb(behaviours * mask)
        if self.cfg.use_time:
            x = x + self.time_emb(time_gap_buckets(timestamps, mask, self.cfg.n_time_buckets))
        return self.encoder(x, mask, timestamps, last_only=last_only)  # (B, L | 1, D)

    def scores(self, hidden: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (..., D) -> scores over the catalogue (..., n_items + 1); column 0 is -inf."""
        if table is None:
            table = self.item_table()
        s = self.head(hidden, table)  # (..., V)
        s[..., 0] = float("-inf")
        return s

    def repeat_bonus(self, items: torch.Tensor, behaviours: torch.Tensor) -> torch.Tensor | None:
        """The repeat term after the last step of each history: (B, L) -> (B, n_items + 1), or
        None when the model has no repeat bias. Added to :meth:`scores` by every ranking path."""
        if self.repeat is None:
            return None
        return self.repeat.last(items, behaviours, self.n_items)

    def behaviour_logits(
        self, hidden: torch.Tensor, items: torch.Tensor, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """hidden (B, D), candidate items (B, K) -> logits (B, K, n_behaviours)."""
        if self.behaviour_head is None:
            raise ValueError("this model was built without a behaviour head")
        if table is None:
            table = self.item_table()
        e = table[items]  # (B, K, D)
        return self.behaviour_head(hidden[:, None, :].expand_as(e), e)
