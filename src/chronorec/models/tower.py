"""The item tower: one vector per catalogue item, from a learned ID, frozen text vectors, or both.

``ItemTower()`` returns the whole table ``(n_items + 1, D)`` (row 0 = padding) and is used twice:
for the per-step inputs and for scoring the catalogue. With ``item_repr = "text"`` every row comes
from the item's text vector through a learned adaptor, so items never seen in training are still
scored (the model is inductive).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from chronorec.models.dropout import Dropout


class TextAdaptor(nn.Module):
    """Parametric whitening ``(x - b) W`` followed by a residual MLP (as in UniSRec, one expert);
    ``hidden = 0`` keeps the whitening alone (a linear map of the text vectors)."""

    def __init__(self, d_text: int, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d_text))
        self.whiten = nn.Linear(d_text, d_model, bias=False)
        self.mlp: nn.Module | None = None
        if hidden > 0:
            self.mlp = nn.Sequential(
                nn.Linear(d_model, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, d_model)
            )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        w = self.whiten(vectors - self.bias)  # (V, D)
        return self.norm(w if self.mlp is None else w + self.mlp(w))  # (V, D)


class ItemTower(nn.Module):
    id_known: torch.Tensor  # (V,) buffer of id+text towers
    text_vectors: torch.Tensor  # (V, d_text) buffer of text and id+text towers

    def __init__(
        self,
        n_items: int,
        d_model: int,
        item_repr: str,
        *,
        text_vectors: torch.Tensor | None = None,
        text_hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.item_repr = item_repr
        self.n_items = n_items
        self.id_emb: nn.Embedding | None = None
        self.adaptor: TextAdaptor | None = None
        self.gate: nn.Linear | None = None
        if item_repr in ("id", "id+text"):
            self.id_emb = nn.Embedding(n_items + 1, d_model, padding_idx=0)
            nn.init.normal_(self.id_emb.weight, std=d_model**-0.5)
            with torch.no_grad():
                self.id_emb.weight[0].zero_()
        if item_repr in ("text", "id+text"):
            if text_vectors is None or text_vectors.shape[0] != n_items + 1:
                raise ValueError(f"item_repr {item_repr!r} needs a text matrix (n_items + 1, d)")
            # Persistent buffer: a saved model carries its catalogue's text vectors and rebuilds
            # without the text encoder.
            self.register_buffer("text_vectors", text_vectors.float().clone())
            self.adaptor = TextAdaptor(text_vectors.shape[1], d_model, text_hidden, dropout)
            with torch.no_grad():
                self.adaptor.bias.copy_(text_vectors[1:].float().mean(0))
        if item_repr == "id+text":
            self.gate = nn.Linear(2 * d_model, d_model)
            # 1 for items with training events. An item without any has no learned id: under a
            # full softmax its id row is only ever pushed away as a negative, which ranked every
            # cold item last; masked, it is scored from its text (as a new item in the service is).
            self.register_buffer("id_known", torch.ones(n_items + 1))

    @torch.no_grad()
    def set_known_items(self, items: torch.Tensor) -> None:
        """id+text: only these item indices have a learned id; the rest are scored from text."""
        if self.item_repr == "id+text":
            self.id_known.zero_()
            self.id_known[items] = 1.0

    def text_rows(
        self,
        vectors: torch.Tensor,
        ids: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Table rows ``(N, D)`` from text vectors ``(N, d_text)``; for id+text also the id rows
        ``ids`` (N, D) and ``known`` (N,), 1 where the item has a learned id. An item without a
        learned id (cold, or new to the service) goes through the gate with an all-zero id.

        Giving such items their text alone (the gate closed) was measured and rejected: on Amazon
        Scientific cold start their vectors then outscored every warm item (warm-target NDCG@10
        0.0004 against 0.0757; BENCHMARKS.md)."""
        assert self.adaptor is not None
        text = self.adaptor(vectors)  # (N, D)
        if self.item_repr == "text":
            return text
        assert self.gate is not None
        if ids is None or known is None:  # new items: no learned id
            ids = torch.zeros_like(text)
        else:
            ids = ids * known[:, None]  # (N, D)
        g = torch.sigmoid(self.gate(torch.cat([ids, text], dim=-1)))  # (N, D)
        return g * ids + (1.0 - g) * text

    def forward(self) -> torch.Tensor:
        """The catalogue table ``(n_items + 1, D)``; row 0 (padding) is all zeros."""
        if self.item_repr == "id":
            assert self.id_emb is not None
            return self.id_emb.weight  # (V, D)
        ids = None if self.id_emb is None else self.id_emb.weight
        known = self.id_known if self.item_repr == "id+text" else None
        table = self.text_rows(self.text_vectors, ids, known)  # (V, D)
        return F.pad(table[1:], (0, 0, 1, 0))  # padding row back to zeros
