"""A dataset's event log with a service's stored events merged in (:func:`merged_log`): what
the service's blended baselines are fitted on, what ``chronorec finetune`` trains on and what
``chronorec collect`` writes."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl

from chronorec.data.stored import Event, Forgotten

if TYPE_CHECKING:
    from chronorec.data.dataset import PreparedDataset


def behaviour_row(behaviours: Sequence[str], name: str) -> int:
    """The 1-based behaviour index of ``name`` among the run's lowercase ``behaviours``; an
    unknown name counts as the first (the service accepts any behaviour string)."""
    try:
        return behaviours.index(name.lower()) + 1
    except ValueError:
        return 1


def merged_log(
    dataset: PreparedDataset,
    stored: Sequence[Event],
    item_rows: Mapping[str, int],
    behaviours: Sequence[str],
    forgotten: Forgotten | Collection[str] = (),
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The dataset's event log without the ``forgotten`` users' logged events, then the
    ``stored`` events on the catalogue's items (``item_rows``: item id -> row; a forgotten
    user's store holds only what they posted since), each user's after their logged ones by
    time, with the dataset's columns; and each user's row in it (users the dataset does not
    know get rows after its own, in order of first appearance). What the service's blended
    baselines are fitted on and what ``chronorec finetune`` trains on. ``behaviours``: the
    run's behaviour names (a stored event's unknown behaviour counts as the first)."""
    names = [b.lower() for b in behaviours] or ["event"]
    cols = ["user", "item", "timestamp", "behaviour", "position"]
    base = dataset.events.select(cols)
    rows = {
        str(u): int(i) for i, u in zip(dataset.users["user"], dataset.users["user_id"], strict=True)
    }
    gone = [rows[u] for u in forgotten_among(forgotten, rows)]
    if gone:
        base = base.filter(~pl.col("user").is_in(gone))
    kept = [e for e in stored if e.item_id in item_rows]
    if not kept:
        return base, rows
    next_row = dataset.n_users + 1
    for e in kept:
        if e.user_id not in rows:
            rows[e.user_id] = next_row
            next_row += 1
    posted = pl.DataFrame(
        {
            "user": [rows[e.user_id] for e in kept],
            "item": [item_rows[e.item_id] for e in kept],
            "timestamp": [e.ts if dataset.has_timestamps else None for e in kept],
            "behaviour": [behaviour_row(names, e.behaviour) for e in kept],
            "_ts": [e.ts for e in kept],
        }
    )
    posted = posted.with_columns(pl.col("user").cast(base.schema["user"])).sort(
        ["user", "_ts"], maintain_order=True
    )
    logged = base.group_by("user").agg(pl.len().alias("_n"))
    posted = (
        posted.join(logged, on="user", how="left")
        .with_columns(
            (pl.col("_n").fill_null(0) + pl.int_range(pl.len()).over("user")).alias("position")
        )
        .select(cols)
        .cast(dict(base.schema))  # type: ignore[arg-type]
    )
    return pl.concat([base, posted]).sort(["user", "position"]), rows


def forgotten_among(forgotten: Forgotten | Collection[str], user_ids: Iterable[str]) -> list[str]:
    """The ids of ``user_ids`` in ``forgotten`` (keyed hashes, or plain ids)."""
    if isinstance(forgotten, Forgotten):
        return forgotten.among(user_ids)
    return [u for u in user_ids if u in forgotten]
