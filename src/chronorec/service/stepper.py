"""Step-wise state of a recurrent (GRU / LSTM) model: one new event costs one RNN step.

The model's ``forward`` reads a whole left-padded window; a recurrent encoder run from its first
real step gives the same state, so the service can keep the RNN's carry per user and advance it
by one step per event instead of re-reading the window. Valid while the user's history fits in
``max_len`` (beyond it the offline model forgets the oldest events, which a carried state cannot);
the engine falls back to recomputing the window then. :func:`check_stepper` compares the two
paths on the loaded model and the engine uses the stepper only if they agree.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from chronorec.models.inputs import time_gap_buckets

log = logging.getLogger(__name__)

Carry = Any  # GRU: h (n_layers, 1, D); LSTM: (h, c)


class RNNStepper:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.rnn = model.encoder.rnn
        self.norm = model.encoder.norm

    @classmethod
    def for_model(cls, model: Any) -> RNNStepper | None:
        enc = getattr(model, "encoder", None)
        rnn = getattr(enc, "rnn", None)
        if isinstance(rnn, torch.nn.GRU | torch.nn.LSTM) and hasattr(enc, "norm"):
            return cls(model)
        return None

    def inputs(
        self,
        table: torch.Tensor,
        items: np.ndarray,
        behaviours: np.ndarray,
        timestamps: np.ndarray,
        prev_ts: int | None = None,
    ) -> torch.Tensor:
        """Step inputs ``(1, n, D)`` as ``NextItemModel.forward`` builds them; ``prev_ts`` is the
        timestamp of the event before ``items[0]`` (None when ``items[0]`` starts the history)."""
        cfg = self.model.cfg
        it = torch.from_numpy(np.asarray(items, dtype=np.int64))[None]  # (1, n)
        x = table[it]  # (1, n, D)
        if cfg.use_behaviour:
            x = x + self.model.behaviour_emb(
                torch.from_numpy(np.asarray(behaviours, np.int64))[None]
            )
        if cfg.use_time:
            ts = np.asarray(timestamps, dtype=np.int64)
            if prev_ts is not None:
                ts = np.concatenate([[prev_ts], ts])
            t = torch.from_numpy(ts)[None]  # (1, n or n + 1)
            buckets = time_gap_buckets(t, torch.ones_like(t, dtype=torch.bool), cfg.n_time_buckets)
            x = x + self.model.time_emb(buckets[:, -it.shape[1] :])
        return x

    @torch.no_grad()
    def run(self, x: torch.Tensor, carry: Carry = None) -> tuple[torch.Tensor, Carry]:
        """``x`` (1, n, D) from ``carry`` (None: a new history) -> (hidden (D,), new carry)."""
        out, carry = self.rnn(x, carry)  # (1, n, D)
        return self.norm(out[0, -1]).clone(), carry  # a copy: not a view of the (1, n, D) output


@torch.no_grad()
def check_stepper(
    stepper: RNNStepper, table: torch.Tensor, max_len: int, atol: float = 1e-4
) -> bool:
    """True when whole-window forward, one run and event-by-event steps give the same state."""
    rng = np.random.default_rng(0)
    n = min(max_len, 6)
    items = rng.integers(1, table.shape[0], n)
    behs = np.ones(n, dtype=np.int64)
    ts = 1_700_000_000 + np.cumsum(rng.integers(0, 100_000, n))
    window = np.zeros((3, 1, max_len), dtype=np.int64)
    window[0, 0, -n:], window[1, 0, -n:], window[2, 0, -n:] = items, behs, ts
    w = torch.from_numpy(window)
    want = stepper.model(w[0], w[1], w[2], table)[0, -1]  # (D,)
    whole, _ = stepper.run(stepper.inputs(table, items, behs, ts))
    carry, prev = None, None
    for i in range(n):
        hidden, carry = stepper.run(
            stepper.inputs(table, items[i : i + 1], behs[i : i + 1], ts[i : i + 1], prev), carry
        )
        prev = int(ts[i])
    ok = bool(torch.allclose(want, whole, atol=atol) and torch.allclose(want, hidden, atol=atol))
    if not ok:
        log.warning("step-wise RNN state disagrees with the model's forward; recomputing instead")
    return ok
