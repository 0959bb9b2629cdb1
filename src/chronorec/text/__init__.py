"""Item text tower: catalogue fields → template text → pretrained encoder → cached vectors.

Names are imported on first use (PEP 562), so that ``chronorec.text.config`` — which the CLI reads
to build its options — does not import torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chronorec.text.config import TextConfig
    from chronorec.text.encoder import ItemEncoder
    from chronorec.text.items import EncodeResult, encode_catalogue, encode_items, item_matrix
    from chronorec.text.template import item_text
    from chronorec.text.vectors import vector_matrix

_WHERE = {
    "TextConfig": "chronorec.text.config",
    "ItemEncoder": "chronorec.text.encoder",
    "EncodeResult": "chronorec.text.items",
    "encode_catalogue": "chronorec.text.items",
    "encode_items": "chronorec.text.items",
    "item_matrix": "chronorec.text.items",
    "item_text": "chronorec.text.template",
    "vector_matrix": "chronorec.text.vectors",
}

__all__ = [
    "EncodeResult",
    "ItemEncoder",
    "TextConfig",
    "encode_catalogue",
    "encode_items",
    "item_matrix",
    "item_text",
    "vector_matrix",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'chronorec.text' has no attribute {name!r}")
