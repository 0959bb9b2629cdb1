"""Sequence models: one file per encoder, the item tower and the heads."""

from chronorec.models.model import ENCODERS, NextItemModel

__all__ = ["ENCODERS", "NextItemModel"]
