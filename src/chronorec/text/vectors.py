"""Precomputed vector columns of the catalogue (image or audio embeddings made elsewhere).

They are checked (one dimension for every item, no NaN or infinity, no missing rows) and
exposed like the text vectors: a float32 matrix with row 0 for padding and row i for item i.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from chronorec.data.dataset import PreparedDataset
from chronorec.errors import DataError


def vector_column(
    catalogue: pl.DataFrame, column: str, dim: int | None = None
) -> tuple[list[str], np.ndarray]:
    """``(item_ids, (n, d) float32)`` of one vector column, validated."""
    if column not in catalogue.columns:
        raise DataError(
            f"no vector column {column!r} in the catalogue "
            f"(columns: {', '.join(catalogue.columns)})"
        )
    series = catalogue[column]
    if not isinstance(series.dtype, pl.List | pl.Array):
        raise DataError(f"is {series.dtype}, not a list of numbers", column=column)
    ids = catalogue["item_id"].cast(pl.Utf8).to_list()
    lengths = series.list.len() if isinstance(series.dtype, pl.List) else series.arr.len()
    missing = (series.is_null() | lengths.is_null()).arg_true()
    if len(missing):
        raise DataError(
            f"{len(missing)} item(s) have no vector, e.g. item {ids[missing[0]]!r}", column=column
        )
    expected = int(lengths[0]) if dim is None else dim
    wrong = (lengths != expected).arg_true()
    if len(wrong):
        i = wrong[0]
        raise DataError(
            f"item {ids[i]!r} has a vector of dimension {lengths[i]}, expected {expected} "
            f"({len(wrong)} item(s) differ)",
            column=column,
        )
    if expected == 0:
        raise DataError("vectors have dimension 0", column=column)
    flat = series.explode() if isinstance(series.dtype, pl.List) else series.arr.explode()
    try:
        matrix = flat.cast(pl.Float32).to_numpy().reshape(len(ids), expected)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise DataError(f"values are not numbers ({exc})", column=column) from exc
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"item {ids[i]!r} has NaN, infinite or missing values in its vector "
            f"({int(bad.sum())} item(s) affected)",
            column=column,
        )
    return ids, np.ascontiguousarray(matrix, dtype=np.float32)


def vector_matrix(dataset: PreparedDataset, column: str, dim: int | None = None) -> np.ndarray:
    """(n_items + 1, d) float32; row 0 is zeros (padding), row i is item index i."""
    items = dataset.items.sort("item")
    _, matrix = vector_column(items, column, dim)
    out = np.zeros((dataset.n_items + 1, matrix.shape[1]), dtype=np.float32)
    out[items["item"].to_numpy()] = matrix
    return out
