"""HSTU-style encoder: pointwise (SiLU) attention with relative position and time-gap biases.

Each block (Zhai et al., 2024, "Actions Speak Louder than Words"):
``U, V, Q, K = SiLU(W x)``; ``A = SiLU(Q K^T + b_pos(i - j) + b_time(log|t_i - t_j|)) / max_len``
masked causally; ``x += W_o (LayerNorm(A V) * U)``. No softmax: attention weights are not
normalised across keys, so the model can express "how much" history supports an item; dividing by
the fixed ``max_len`` (not the row's length) keeps outputs independent of left padding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from chronorec.config import ModelConfig
from chronorec.models.dropout import Dropout
from chronorec.models.inputs import log_time_diff_buckets

TIME_DIFF_BUCKETS = 40  # log2 seconds up to ~35 years


class HSTUBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.max_len = max_len
        self.norm = nn.LayerNorm(d_model)
        self.uvqk = nn.Linear(d_model, 4 * d_model)
        self.attn_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)
        self.pos_bias = nn.Embedding(max_len, n_heads)
        self.time_bias = nn.Embedding(TIME_DIFF_BUCKETS, n_heads)
        nn.init.zeros_(self.pos_bias.weight)
        nn.init.zeros_(self.time_bias.weight)
        self.drop = Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        keep: torch.Tensor,
        rel_pos: torch.Tensor,
        time_diff: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x`` (B, L, D); ``keep`` (B, 1, L, L) float 0/1; ``rel_pos`` (L, L) int64;
        ``time_diff`` (B, L, L) int64 buckets or None -> (B, L, D)."""
        B, L, D = x.shape
        H = self.n_heads
        u, v, q, k = F.silu(self.uvqk(self.norm(x))).chunk(4, dim=-1)  # each (B, L, D)
        q = q.view(B, L, H, D // H).transpose(1, 2)  # (B, H, L, Dh)
        k = k.view(B, L, H, D // H).transpose(1, 2)
        v = v.view(B, L, H, D // H).transpose(1, 2)
        logits = q @ k.transpose(-1, -2)  # (B, H, L, L)
        logits = logits + self.pos_bias(rel_pos).permute(2, 0, 1)[None]  # (1, H, L, L)
        if time_diff is not None:
            logits = logits + self.time_bias(time_diff).permute(0, 3, 1, 2)  # (B, H, L, L)
        attn = F.silu(logits) * keep / self.max_len  # (B, H, L, L)
        y = (self.drop(attn) @ v).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return x + self.drop(self.out(self.attn_norm(y) * u))


class HSTUEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.use_time = cfg.use_time
        self.blocks = nn.ModuleList(
            HSTUBlock(cfg.d_model, cfg.n_heads, cfg.max_len, cfg.dropout)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.max_len = cfg.max_len

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, timestamps: torch.Tensor, last_only: bool = False
    ) -> torch.Tensor:
        """``x`` (B, L, D) step inputs, ``mask`` (B, L) bool -> hidden states (B, L, D), or the
        last step's (B, 1, D) with ``last_only``."""
        L = x.shape[1]
        idx = torch.arange(L, device=x.device)
        rel_pos = (idx[:, None] - idx[None, :]).clamp(0, self.max_len - 1)  # (L, L)
        causal = idx[:, None] >= idx[None, :]  # (L, L)
        keep = (causal & mask[:, None, :] & mask[:, :, None])[:, None].to(x.dtype)  # (B,1,L,L)
        time_diff = (
            log_time_diff_buckets(timestamps, TIME_DIFF_BUCKETS) if self.use_time else None
        )  # (B, L, L)
        x = self.drop(x) * mask[..., None]
        for block in self.blocks:
            x = block(x, keep, rel_pos, time_diff)
        return self.norm(x[:, -1:] if last_only else x)  # (B, L, D) or (B, 1, D)
