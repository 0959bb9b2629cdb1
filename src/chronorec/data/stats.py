"""Summary statistics of a prepared dataset."""

from __future__ import annotations

from typing import Any

import polars as pl

from chronorec.data.dataset import PreparedDataset


def dataset_stats(ds: PreparedDataset) -> dict[str, Any]:
    ev = ds.events
    lengths = ev.group_by("user").len()["len"]
    n_users, n_items, n_events = ds.n_users, ds.n_items, ev.height
    text_cols = ds.text_columns
    if text_cols:
        has_text = pl.any_horizontal(
            [pl.col(c).is_not_null() & (pl.col(c).str.strip_chars() != "") for c in text_cols]
        )
        without_text = int(ds.items.filter(~has_text).height)
    else:
        without_text = n_items
    return {
        "format": ds.manifest.get("format"),
        "users": n_users,
        "items": n_items,
        "events": n_events,
        "density": n_events / max(1, n_users * n_items),
        "history_length": {
            "mean": float(lengths.mean()),  # type: ignore[arg-type]
            "median": float(lengths.median()),  # type: ignore[arg-type]
            "min": int(lengths.min()),  # type: ignore[arg-type]
            "max": int(lengths.max()),  # type: ignore[arg-type]
        },
        "time_span": ds.manifest.get("time_span"),
        "behaviour_counts": ds.manifest.get("behaviour_counts", {}),
        "items_without_text": without_text,
        "text_columns": text_cols,
    }
