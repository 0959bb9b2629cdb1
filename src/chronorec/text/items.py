"""Catalogue → item vectors, through the disk cache: only new or changed item texts are encoded."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from chronorec.data.dataset import PreparedDataset, load_prepared
from chronorec.errors import ConfigError, DataError
from chronorec.text.cache import VectorCache
from chronorec.text.config import TextConfig
from chronorec.text.encoder import ItemEncoder, resolve_precision
from chronorec.text.model_files import resolve_model
from chronorec.text.onnx import default_cache_root
from chronorec.text.template import (
    default_fields,
    render_catalogue,
    template_fingerprint,
    text_hash,
)

log = logging.getLogger(__name__)

DATASET_CACHE = "text_cache"


@dataclass(frozen=True)
class EncodeResult:
    item_ids: list[str]
    matrix: np.ndarray  # (n, d) float32, L2-normalised, in catalogue row order
    fields: tuple[str, ...]  # the template's field order, as used
    encoded: int  # texts run through the model (cache misses, after de-duplication)
    cached: int  # items whose vector came from the cache
    seconds: float
    cache_path: Path | None


def text_fields(
    catalogue: pl.DataFrame, config: TextConfig, text_columns: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The template's field order for this catalogue: ``config.fields`` (each must exist), or the
    default order over ``text_columns`` (all string and list columns when not given) + price."""
    if config.fields is not None:
        unknown = [f for f in config.fields if f not in catalogue.columns]
        if unknown:
            raise ConfigError(
                f"text field(s) {', '.join(map(repr, unknown))} are not catalogue columns "
                f"(columns: {', '.join(catalogue.columns)})"
            )
        return config.fields
    if text_columns is None:
        text_columns = [
            c
            for c, dtype in catalogue.schema.items()
            if c != "item_id"
            and (dtype == pl.Utf8 or (isinstance(dtype, pl.List) and dtype.inner == pl.Utf8))
        ]
    columns = [c for c in text_columns if c in catalogue.columns]
    if "price" in catalogue.columns and "price" not in columns:
        columns.append("price")
    return default_fields(columns)


def encode_catalogue(
    catalogue: pl.DataFrame,
    config: TextConfig | None = None,
    *,
    text_columns: Sequence[str] | None = None,
    encoder: ItemEncoder | None = None,
) -> EncodeResult:
    """Vectors for every catalogue row; with ``config.cache_dir`` set, cached texts are reused."""
    config = config or (encoder.config if encoder is not None else TextConfig())
    start = time.perf_counter()
    if "item_id" not in catalogue.columns:
        raise DataError("the catalogue has no 'item_id' column", column="item_id")
    if catalogue.height == 0:
        raise DataError("the catalogue has no items")
    fields = text_fields(catalogue, config, text_columns)
    texts = render_catalogue(catalogue, fields, config.max_field_chars)
    item_ids = catalogue["item_id"].cast(pl.Utf8).to_list()
    if config.cache_dir is None:
        encoder = encoder or ItemEncoder.load(config)
        matrix = encoder.encode_texts(texts)
        seconds = time.perf_counter() - start
        return EncodeResult(item_ids, matrix, fields, len(set(texts)), 0, seconds, None)

    root = Path(config.cache_dir)
    files = encoder.files if encoder is not None else resolve_model(config.model)
    settings = (
        encoder.settings()
        if encoder is not None
        else {
            "backend": config.backend,
            "precision": resolve_precision(config),
            "max_length": min(config.max_length, files.max_length),
        }
    )
    key = {
        "model": files.identity(stamp_dir=root),
        **settings,
        "template": template_fingerprint(fields, config.max_field_chars),
    }
    cache = VectorCache(root, key)
    hashes = [text_hash(t) for t in texts]
    found, cached_vectors = cache.lookup(hashes)
    missing = np.flatnonzero(~found)
    if len(missing) == 0:
        matrix = cached_vectors
        encoded = 0
    else:
        encoder = encoder or ItemEncoder.load(config)
        new_texts = [texts[i] for i in missing]
        new_vectors = encoder.encode_texts(new_texts)
        matrix = np.empty((len(texts), new_vectors.shape[1]), dtype=np.float32)
        matrix[missing] = new_vectors
        if found.any():
            matrix[found] = cached_vectors
        encoded = len(set(new_texts))
        try:
            cache.save(hashes, matrix)
        except OSError as exc:
            log.warning("could not write the text cache %s (%s); vectors are not cached", root, exc)
    seconds = time.perf_counter() - start
    log.info("%d items: %d texts encoded, %d from cache", len(texts), encoded, int(found.sum()))
    return EncodeResult(item_ids, matrix, fields, encoded, int(found.sum()), seconds, cache.path)


def encode_items(catalogue: pl.DataFrame, config: TextConfig) -> tuple[list[str], np.ndarray]:
    """``(item_ids, (n, d) float32 L2-normalised matrix)`` in catalogue row order."""
    result = encode_catalogue(catalogue, config)
    return result.item_ids, result.matrix


def encode_dataset(
    dataset: PreparedDataset | str | os.PathLike[str],
    config: TextConfig | None = None,
    *,
    encoder: ItemEncoder | None = None,
) -> tuple[np.ndarray, EncodeResult]:
    """``((n_items + 1, d) matrix, result)``: row 0 is zeros (padding), row i is item index i.

    The cache goes to ``config.cache_dir`` if set, else ``<dataset dir>/text_cache`` when the
    dataset is a directory or was loaded from one, else ``~/.cache/chronorec/text``.
    """
    config = config or (encoder.config if encoder is not None else TextConfig())
    if isinstance(dataset, PreparedDataset):
        where = dataset.path
        default_root = where / DATASET_CACHE if where else default_cache_root() / "text"
    else:
        default_root = Path(dataset) / DATASET_CACHE
        dataset = load_prepared(Path(dataset))
    if config.cache_dir is None:
        config = TextConfig.from_dict({**config.to_dict(), "cache_dir": str(default_root)})
    items = dataset.items.sort("item")
    text_columns = dataset.text_columns or None
    result = encode_catalogue(items, config, text_columns=text_columns, encoder=encoder)
    matrix = np.zeros((dataset.n_items + 1, result.matrix.shape[1]), dtype=np.float32)
    matrix[items["item"].to_numpy()] = result.matrix
    return matrix, result


def item_matrix(
    dataset: PreparedDataset | str | os.PathLike[str], config: TextConfig | None = None
) -> np.ndarray:
    """(n_items + 1, d) float32 text vectors; row 0 is zeros, row i is item index i. Cached."""
    return encode_dataset(dataset, config)[0]
