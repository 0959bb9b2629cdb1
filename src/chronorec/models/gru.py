"""GRU encoder (GRU4Rec-style), the lighter recurrent alternative to the LSTM: the LSTM
encoder's steps (:class:`~chronorec.models.lstm.RecurrentEncoder`) with a GRU cell."""

from __future__ import annotations

from torch import nn

from chronorec.models.lstm import RecurrentEncoder


class GRUEncoder(RecurrentEncoder):
    cell = nn.GRU
