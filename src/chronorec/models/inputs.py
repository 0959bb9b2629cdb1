"""Per-step input features shared by every sequence model: padding mask, time-gap buckets."""

from __future__ import annotations

import torch


def time_gap_buckets(timestamps: torch.Tensor, mask: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Log2-scale bucket of the gap (seconds) to the previous event in the window.

    ``timestamps`` (B, L) int64 and ``mask`` (B, L) bool -> (B, L) int64 buckets:
    0 = padding, 1 = first event of the window, ``2 + floor(log2(1 + gap))`` otherwise (clipped to
    ``n_buckets - 1``). A log without timestamps (all 0) puts every later event in bucket 2.
    """
    prev = torch.nn.functional.pad(timestamps[:, :-1], (1, 0))  # (B, L)
    prev_real = torch.nn.functional.pad(mask[:, :-1], (1, 0), value=False)  # (B, L)
    gap = (timestamps - prev).clamp(min=0).float()
    bucket = 2 + torch.floor(torch.log2(1.0 + gap)).long()
    bucket = bucket.clamp(max=n_buckets - 1)
    bucket = torch.where(prev_real, bucket, torch.ones_like(bucket))
    return torch.where(mask, bucket, torch.zeros_like(bucket))


def log_time_diff_buckets(timestamps: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Pairwise ``|t_i - t_j|`` in log2 buckets: (B, L) -> (B, L, L) int64 in ``[0, n_buckets)``."""
    diff = (timestamps[:, :, None] - timestamps[:, None, :]).abs().float()  # (B, L, L)
    return torch.floor(torch.log2(1.0 + diff)).long().clamp(max=n_buckets - 1)


def positions_from_start(mask: torch.Tensor) -> torch.Tensor:
    """0-based index of each step counted from the first real event: (B, L) bool -> (B, L) int64.

    Counting from the start (not from the window's left edge) makes the output independent of how
    much left padding a batch has, and keeps step ``t`` blind to how many steps follow it.
    """
    return (mask.long().cumsum(1) - 1).clamp(min=0)
