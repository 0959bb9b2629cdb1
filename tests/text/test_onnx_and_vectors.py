from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chronorec.data.dataset import PreparedDataset
from chronorec.errors import DataError
from chronorec.text import ItemEncoder, TextConfig, vector_matrix
from chronorec.text.vectors import vector_column


def test_onnx_gives_the_torch_vectors_and_is_exported_once(
    tiny_model: Path, tmp_path: Path
) -> None:
    texts = ["usb charging cable", "garden hose " * 30, "a", "red steel staples for the garden"]
    torch_encoder = ItemEncoder.load(TextConfig(model=str(tiny_model), precision="fp32"))
    config = TextConfig(model=str(tiny_model), backend="onnx", cache_dir=str(tmp_path))
    onnx_encoder = ItemEncoder.load(config)
    cosine = (onnx_encoder.encode_texts(texts) * torch_encoder.encode_texts(texts)).sum(1)
    assert cosine.min() >= 0.9999
    exported = list(tmp_path.rglob("model.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    ItemEncoder.load(config)
    assert exported[0].stat().st_mtime_ns == stamp  # reused, not exported again


def vectors(values: list[list[float] | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"item_id": [str(i) for i in range(len(values))], "image": values},
        schema={"item_id": pl.Utf8, "image": pl.List(pl.Float32)},
    )


def test_vector_columns_become_a_matrix_with_a_padding_row() -> None:
    items = vectors([[0.0, 1.0], [2.0, 3.0]]).with_columns(
        pl.Series("item", [2, 1], dtype=pl.Int32)
    )
    dataset = PreparedDataset(pl.DataFrame(), items, pl.DataFrame(), {"vector_columns": ["image"]})
    matrix = vector_matrix(dataset, "image")
    np.testing.assert_array_equal(matrix, [[0, 0], [2, 3], [0, 1]])
    assert matrix.dtype == np.float32


@pytest.mark.parametrize(
    ("values", "dim", "message"),
    [
        ([[0.0, 1.0], [2.0]], None, r"item '1' has a vector of dimension 1, expected 2"),
        ([[0.0, 1.0], [2.0, 3.0]], 3, r"item '0' has a vector of dimension 2, expected 3"),
        ([[0.0, float("nan")], [2.0, 3.0]], None, r"item '0' has NaN"),
        ([[0.0, 1.0], None], None, r"1 item\(s\) have no vector, e.g. item '1'"),
        ([[0.0, None], [2.0, 3.0]], None, r"item '0' has NaN, infinite or missing"),
    ],
)
def test_bad_vector_columns_are_refused_naming_the_item(
    values: list[list[float] | None], dim: int | None, message: str
) -> None:
    with pytest.raises(DataError, match=message) as info:
        vector_column(vectors(values), "image", dim)
    assert "column 'image'" in str(info.value)


def test_a_text_column_is_not_a_vector_column() -> None:
    with pytest.raises(DataError, match="not a list of numbers"):
        vector_column(pl.DataFrame({"item_id": ["a"], "image": ["x"]}), "image")
    with pytest.raises(DataError, match="no vector column 'audio'"):
        vector_column(pl.DataFrame({"item_id": ["a"], "image": ["x"]}), "audio")
