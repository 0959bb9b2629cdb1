from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from chronorec.errors import ConfigError
from chronorec.text import ItemEncoder, TextConfig, item_text


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> ItemEncoder:
    return ItemEncoder.load(TextConfig(model=str(tiny_model), precision="fp32", threads=1))


def test_vectors_are_unit_length_float32_and_deterministic(encoder: ItemEncoder) -> None:
    texts = ["usb charging cable", "garden hose", "red steel staples"]
    first = encoder.encode_texts(texts)
    assert first.shape == (3, 32) and first.dtype == np.float32 and encoder.dim == 32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, encoder.encode_texts(texts))
    assert not np.allclose(first[0], first[1])


def test_batching_sorting_and_padding_do_not_change_a_vector(encoder: ItemEncoder) -> None:
    alone = encoder.encode_texts(["usb cable"])[0]
    mixed = encoder.encode_texts(["garden hose " * 20, "usb cable", "a", "usb cable"])
    np.testing.assert_allclose(mixed[1], alone, atol=1e-5)
    np.testing.assert_array_equal(mixed[1], mixed[3])  # duplicates: encoded once


def test_texts_longer_than_the_model_are_truncated(encoder: ItemEncoder) -> None:
    # the tiny model has 64 positions; 5,000 words must be cut, not crash
    assert encoder.max_length == 64
    vectors = encoder.encode_texts(["garden hose " * 5000, ""])
    assert np.isfinite(vectors).all()


def test_batches_respect_count_and_token_budgets(tiny_model: Path) -> None:
    config = TextConfig(model=str(tiny_model), batch_size=4, max_batch_tokens=100, precision="fp32")
    encoder = ItemEncoder.load(config)
    batches = encoder._batches(np.array([48, 40, 10, 10, 10, 10, 10, 3]))
    # widths are padded to multiples of 8: 100 // 48 = 2 texts, then 4 (count), then 100 // 16
    assert [(b.start, b.stop) for b in batches] == [(0, 2), (2, 6), (6, 8)]
    assert encoder._padded(10) == 16 and encoder._padded(64) == 64 and encoder._padded(63) == 64
    texts = [f"item {i} " + "usb " * i for i in range(30)]
    reference = ItemEncoder.load(TextConfig(model=str(tiny_model), precision="fp32"))
    np.testing.assert_allclose(
        encoder.encode_texts(texts), reference.encode_texts(texts), atol=1e-5
    )


def test_encode_item_uses_the_template(encoder: ItemEncoder) -> None:
    fields = {"item_id": "x", "title": "usb cable", "price": 12.0, "description": "for charging"}
    text = item_text(fields, ("title", "price", "description"))
    np.testing.assert_allclose(encoder.encode_item(fields), encoder.encode_texts([text])[0])
    empty = encoder.encode_item({"item_id": "x", "title": None})
    np.testing.assert_allclose(empty, encoder.encode_texts(["item x"])[0])


def test_bf16_stays_close_to_fp32(tiny_model: Path, encoder: ItemEncoder) -> None:
    bf16 = ItemEncoder.load(TextConfig(model=str(tiny_model), precision="bf16"))
    texts = ["usb charging cable", "garden hose " * 10]
    cosine = (bf16.encode_texts(texts) * encoder.encode_texts(texts)).sum(1)
    assert (cosine > 0.999).all()


def test_model_directory_without_tokenizer_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model, broken)
    (broken / "vocab.txt").unlink()
    with pytest.raises(ConfigError, match="no tokenizer files"):
        ItemEncoder.load(TextConfig(model=str(broken)))


def test_directory_without_config_or_weights_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        ItemEncoder.load(TextConfig(model=str(tmp_path / "empty")))
    shutil.copytree(tiny_model, tmp_path / "no-weights")
    (tmp_path / "no-weights" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no weights"):
        ItemEncoder.load(TextConfig(model=str(tmp_path / "no-weights")))


def test_a_model_name_not_on_this_machine_says_how_to_provide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty local hub cache
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not available|not in the local") as info:
        ItemEncoder.load(TextConfig(model="bert-base-chinese"))
    assert "hf download bert-base-chinese" in str(info.value)
    assert "--model DIR" in str(info.value)
