"""A tiny random-initialised BERT written by the tests themselves (no files from outside)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import polars as pl
import pytest

WORDS = (
    "usb charging cable charger cord garden hose title brand price description item genres "
    "category categories under to over and the a of for with steel staples red blue"
).split()


def write_tiny_bert(path: Path, seed: int = 0, max_positions: int = 64) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = special + WORDS + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    config = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def make_tiny_bert() -> object:
    """The writer itself, for tests that need a second, different model."""
    return write_tiny_bert


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def catalogue() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["USB charging cable", "garden hose", None, "red steel staples"],
            "brand": ["acme", None, None, "stanley"],
            "description": ["a cable for charging", "a hose " * 400, None, ""],
            "price": [9.99, 25.0, None, 120.0],
        },
        schema_overrides={"price": pl.Float64},
    )
