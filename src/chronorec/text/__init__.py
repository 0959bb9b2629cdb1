"""Item text tower: catalogue fields → template text → pretrained encoder → cached vectors."""

from chronorec.text.config import TextConfig
from chronorec.text.encoder import ItemEncoder
from chronorec.text.items import EncodeResult, encode_catalogue, encode_items, item_matrix
from chronorec.text.template import item_text
from chronorec.text.vectors import vector_matrix

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
