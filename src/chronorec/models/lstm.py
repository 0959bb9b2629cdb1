"""LSTM encoder: the original chronorec design — an LSTM reads the user's behaviour sequence."""

from __future__ import annotations

import torch
from torch import nn

from chronorec.config import ModelConfig
from chronorec.models.dropout import Dropout


def left_to_right_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move each row's real steps to the front: (B, L, D) left-padded -> (B, L, D) right-padded.

    A recurrent net run over right-padded rows never reads padding before a real step, so its
    outputs at real steps do not depend on how much padding the batch has.
    """
    B, L, D = x.shape
    shift = (L - lengths)[:, None]  # (B, 1)
    idx = (torch.arange(L, device=x.device)[None, :] + shift) % L  # (B, L)
    return x.gather(1, idx[..., None].expand(B, L, D))


def right_to_left_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`left_to_right_padding`."""
    B, L, D = x.shape
    shift = (L - lengths)[:, None]  # (B, 1)
    idx = (torch.arange(L, device=x.device)[None, :] - shift) % L  # (B, L)
    return x.gather(1, idx[..., None].expand(B, L, D))


class RecurrentEncoder(nn.Module):
    """A recurrent net over the steps (``cell``, set by each subclass: ``nn.LSTM`` below,
    ``nn.GRU`` in gru.py), with dropout on its input and output and a final layer norm."""

    cell: type[nn.LSTM] | type[nn.GRU]

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.rnn = self.cell(
            cfg.d_model,
            cfg.d_model,
            num_layers=cfg.n_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0,
        )
        self.drop = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, timestamps: torch.Tensor, last_only: bool = False
    ) -> torch.Tensor:
        """``x`` (B, L, D) step inputs, ``mask`` (B, L) bool -> hidden states (B, L, D), or the
        last step's (B, 1, D) with ``last_only``."""
        lengths = mask.sum(1)  # (B,)
        out, _ = self.rnn(left_to_right_padding(self.drop(x), lengths))  # (B, L, D)
        out = right_to_left_padding(out, lengths)  # (B, L, D)
        # Padding steps hold the wrapped-around states of the real ones: zero them.
        out = self.norm(self.drop(out)) * mask[..., None]  # (B, L, D)
        return out[:, -1:] if last_only else out


class LSTMEncoder(RecurrentEncoder):
    cell = nn.LSTM
