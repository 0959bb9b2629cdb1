from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chronorec.cli import main
from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset
from chronorec.errors import DataError
from chronorec.text import ItemEncoder, TextConfig, encode_catalogue, encode_items, item_matrix


def config_for(model: Path, cache: Path | None = None, **kwargs: object) -> TextConfig:
    return TextConfig(
        model=str(model),
        precision="fp32",
        cache_dir=None if cache is None else str(cache),
        progress=False,
        **kwargs,  # type: ignore[arg-type]  # test helper passes TextConfig fields through
    )


def prepared(tmp_path: Path, catalogue: pl.DataFrame) -> Path:
    items = catalogue.with_columns(
        pl.int_range(1, catalogue.height + 1, dtype=pl.Int32).alias("item")
    )
    events = pl.DataFrame(
        {"user": [1, 1], "item": [1, 2], "behaviour": [1, 1], "position": [0, 1]},
        schema={"user": pl.Int32, "item": pl.Int32, "behaviour": pl.Int8, "position": pl.Int32},
    )
    users = pl.DataFrame(
        {"user": [1], "user_id": ["u1"]}, schema={"user": pl.Int32, "user_id": pl.Utf8}
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "text_columns": ["title", "brand", "description"],
        "vector_columns": [],
    }
    return PreparedDataset(events, items, users, manifest).save(tmp_path / "ds")


def test_encode_items_matches_the_encoder_row_by_row(
    tiny_model: Path, catalogue: pl.DataFrame
) -> None:
    config = config_for(tiny_model)
    ids, matrix = encode_items(catalogue, config)
    assert ids == ["a", "b", "c", "d"] and matrix.shape == (4, 32) and matrix.dtype == np.float32
    encoder = ItemEncoder.load(config)
    expected = encoder.encode_texts(
        [
            "title: USB charging cable; brand: acme; price: 9.99 (5 to 10); "
            "description: a cable for charging"
        ]
    )
    np.testing.assert_allclose(matrix[0], expected[0], atol=1e-6)


def test_cache_hit_does_not_load_the_model_and_a_changed_item_encodes_alone(
    tiny_model: Path, catalogue: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_for(tiny_model, tmp_path / "cache")
    first = encode_catalogue(catalogue, config)
    assert (first.encoded, first.cached) == (4, 0)
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temp files

    def no_model(*args: object, **kwargs: object) -> ItemEncoder:
        raise AssertionError("the model was loaded although every vector was cached")

    monkeypatch.setattr(ItemEncoder, "load", no_model)
    again = encode_catalogue(catalogue, config)
    assert (again.encoded, again.cached) == (0, 4)
    np.testing.assert_array_equal(again.matrix, first.matrix)

    monkeypatch.undo()
    changed = catalogue.with_columns(
        pl.when(pl.col("item_id") == "b")
        .then(pl.lit("blue hose"))
        .otherwise("title")
        .alias("title")
    )
    grown = pl.concat(
        [changed, pl.DataFrame({"item_id": ["e"], "title": ["usb charger cord"]})], how="diagonal"
    )
    third = encode_catalogue(grown, config)
    assert (third.encoded, third.cached) == (2, 3)
    np.testing.assert_array_equal(third.matrix[[0, 2, 3]], first.matrix[[0, 2, 3]])
    assert not np.allclose(third.matrix[1], first.matrix[1])


def test_another_template_or_model_is_another_cache_entry(
    tiny_model: Path,
    make_tiny_bert: Callable[..., Path],
    catalogue: pl.DataFrame,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    base = encode_catalogue(catalogue, config_for(tiny_model, cache))
    other_template = encode_catalogue(catalogue, config_for(tiny_model, cache, fields=("title",)))
    assert other_template.encoded == 4 and other_template.cache_path != base.cache_path
    other_weights = make_tiny_bert(tmp_path / "other", seed=1)
    other_model = encode_catalogue(catalogue, config_for(other_weights, cache))
    assert other_model.encoded == 4 and other_model.cache_path != base.cache_path
    assert encode_catalogue(catalogue, config_for(tiny_model, cache)).encoded == 0


def test_a_damaged_cache_is_a_miss_not_an_error(
    tiny_model: Path, catalogue: pl.DataFrame, tmp_path: Path
) -> None:
    config = config_for(tiny_model, tmp_path / "cache")
    first = encode_catalogue(catalogue, config)
    assert first.cache_path is not None
    (first.cache_path / "vectors.npz").write_bytes(b"not a zip file")
    again = encode_catalogue(catalogue, config)
    assert again.encoded == 4
    np.testing.assert_allclose(again.matrix, first.matrix, atol=1e-6)


def test_item_matrix_rows_follow_item_indices_and_cache_in_the_dataset(
    tiny_model: Path, catalogue: pl.DataFrame, tmp_path: Path
) -> None:
    directory = prepared(tmp_path, catalogue.reverse())  # item 1 is "d"
    matrix = item_matrix(directory, config_for(tiny_model))
    assert matrix.shape == (5, 32) and matrix.dtype == np.float32
    assert not matrix[0].any()
    _, by_id = encode_items(catalogue, config_for(tiny_model))
    np.testing.assert_allclose(matrix[1:], by_id[::-1], atol=1e-6)
    assert list((directory / "text_cache").rglob("vectors.npz"))


def test_catalogue_without_item_ids_or_items_is_refused(tiny_model: Path) -> None:
    with pytest.raises(DataError, match="item_id"):
        encode_items(pl.DataFrame({"title": ["x"]}), config_for(tiny_model))
    with pytest.raises(DataError, match="no items"):
        encode_items(
            pl.DataFrame({"item_id": []}, schema={"item_id": pl.Utf8}), config_for(tiny_model)
        )


def test_cli_encode_items_prints_json_and_reuses_the_cache(
    tiny_model: Path, catalogue: pl.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = prepared(tmp_path, catalogue)
    argv = ["encode-items", str(directory), "--model", str(tiny_model), "--precision", "fp32"]
    assert main([*argv, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["items"] == 4 and first["encoded"] == 4 and first["dim"] == 32
    assert first["fields"] == ["title", "brand", "price", "description"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 encoded, 4 cached" in out and "all from cache" in out


def test_cli_reports_bad_models_with_exit_code_2(
    catalogue: pl.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = prepared(tmp_path, catalogue)
    (tmp_path / "not-a-model").mkdir()
    assert main(["encode-items", str(directory), "--model", str(tmp_path / "not-a-model")]) == 2
    assert "no config.json" in capsys.readouterr().err
