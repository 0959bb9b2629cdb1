"""Raw events + catalogue → a :class:`PreparedDataset` (sorted, filtered, id-mapped, with gaps).

Order: a **stable** chronological sort per user — events with equal timestamps keep their file
order (an unstable sort reshuffles ties and changes test targets). Logs without timestamps keep
file order per user.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from chronorec import __version__
from chronorec.data.dataset import EVENT_SCHEMA, FORMAT_VERSION, PreparedDataset
from chronorec.data.readers import RawData
from chronorec.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareOptions:
    dedupe: bool = False  # drop repeated (user, item, timestamp, behaviour) rows
    min_user_events: int = 0  # k-core: users need at least this many events (0 = off)
    min_item_events: int = 0  # k-core: items need at least this many events (0 = off)
    last_days: float | None = None  # keep only the last N days of the log
    max_events_per_user: int | None = None  # keep each user's last L events
    behaviours: tuple[str, ...] | None = None  # fixed vocabulary; other values are errors
    keep_catalogue_items: bool = False  # keep catalogue items that have no events


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _dense_ids(ids: pl.Series, name: str) -> pl.DataFrame:
    """External id → dense index 1..n, numeric order when every id is an integer."""
    uniq = ids.unique()
    as_int = uniq.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        order = pl.DataFrame({"ext": uniq, "k": as_int}).sort("k")["ext"]
    else:
        order = uniq.sort()
    return (
        pl.DataFrame({f"{name}_id": order})
        .with_row_index(name, offset=1)
        .with_columns(pl.col(name).cast(pl.Int32))
    )


def _k_core(events: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    while True:  # iterations, not events: each pass is vectorised
        before = events.height
        if min_item > 0:
            events = events.filter(pl.len().over("item_id") >= min_item)
        if min_user > 0:
            events = events.filter(pl.len().over("user_id") >= min_user)
        if events.height == before:
            return events


def prepare(raw: RawData, options: PrepareOptions = PrepareOptions()) -> PreparedDataset:
    events = raw.events
    src = str(raw.sources[0]) if raw.sources else "<events>"
    if events.height == 0:
        raise DataError("no events", path=src)

    vocab = options.behaviours or raw.behaviour_vocab
    events = events.with_columns(pl.col("behaviour").fill_null(raw.default_behaviour))
    if vocab is not None:
        bad = ~events["behaviour"].is_in(list(vocab))
        if bad.any():
            row = events.filter(bad).row(0, named=True)
            raise DataError(
                f"unknown behaviour {row['behaviour']!r} (allowed: {', '.join(vocab)})",
                path=src,
                line=row["_line"],
                column="behaviour",
            )
        behaviours = list(vocab)
    else:
        behaviours = sorted(events["behaviour"].unique().to_list())

    has_ts = events["timestamp"].null_count() < events.height
    # Stable sort: ties (same user and timestamp) keep file order.
    keys = ["user_id", "timestamp", "_line"] if has_ts else ["user_id", "_line"]
    if options.dedupe:
        events = events.unique(
            ["user_id", "item_id", "timestamp", "behaviour"], keep="first", maintain_order=True
        )
    if options.last_days is not None and has_ts:
        t_max = events["timestamp"].max()
        events = events.filter(pl.col("timestamp") >= t_max - int(options.last_days * 86400))  # type: ignore[operator]
    if options.min_user_events or options.min_item_events:
        events = _k_core(events, options.min_user_events, options.min_item_events)
    if events.height == 0:
        raise DataError("no events left after filtering", path=src)

    users = _dense_ids(events["user_id"], "user")
    item_pool = events["item_id"]
    if options.keep_catalogue_items and raw.items is not None:
        item_pool = pl.concat([item_pool, raw.items["item_id"]])
    items_map = _dense_ids(item_pool, "item")

    ev = (
        events.join(users, on="user_id", how="left")
        .join(items_map, on="item_id", how="left")
        .sort(["user"] + keys[1:], maintain_order=True)
    )
    if options.max_events_per_user is not None:
        ev = ev.filter(
            pl.int_range(pl.len()).over("user")
            >= pl.len().over("user") - options.max_events_per_user
        )
    ev = ev.with_columns(
        pl.int_range(pl.len()).over("user").cast(pl.Int32).alias("position"),
        pl.col("behaviour").replace_strict(
            behaviours, list(range(1, len(behaviours) + 1)), return_dtype=pl.Int8
        ),
        pl.col("value").cast(pl.Float32),
    ).with_columns((pl.col("timestamp") - pl.col("timestamp").shift(1).over("user")).alias("gap"))
    ev = ev.select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])

    # catalogue: one row per item index, text for those the catalogue knows
    items = items_map
    text_cols: list[str] = []
    vec_cols: list[str] = []
    if raw.items is not None:
        items = items_map.join(raw.items, on="item_id", how="left")
        text_cols = [c for c in raw.text_columns if c in items.columns]
        vec_cols = [c for c in raw.vector_columns if c in items.columns]
    items = items.sort("item")

    behaviour_counts = ev.group_by("behaviour").len().sort("behaviour")
    counts_by_name = {
        behaviours[int(b) - 1]: int(n)
        for b, n in zip(behaviour_counts["behaviour"], behaviour_counts["len"], strict=True)
    }
    time_span = None
    if has_ts:
        lo, hi = int(ev["timestamp"].min()), int(ev["timestamp"].max())  # type: ignore[arg-type]
        time_span = {
            "min": lo,
            "max": hi,
            "min_iso": datetime.fromtimestamp(lo, UTC).isoformat(),
            "max_iso": datetime.fromtimestamp(hi, UTC).isoformat(),
            "days": round((hi - lo) / 86400, 3),
        }
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "format": raw.format,
        "chronorec_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": [
            {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for p in raw.sources
        ],
        "counts": {"users": users.height, "items": items.height, "events": ev.height},
        "behaviours": behaviours,
        "behaviour_counts": counts_by_name,
        "has_timestamps": has_ts,
        "time_span": time_span,
        "text_columns": text_cols,
        "vector_columns": vec_cols,
        "options": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()
        },
        "tie_order": "stable: events with equal timestamps keep their file order",
    }
    log.info("prepared %s: %s", raw.format, manifest["counts"])
    return PreparedDataset(events=ev, items=items, users=users, manifest=manifest)
