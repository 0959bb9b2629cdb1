"""A service's state folded into a prepared dataset, for the next full training.

The run's event log and catalogue, plus what the service stored since: the events posted to it,
the items posted to it (as catalogue rows, their text in the dataset's text columns), without
the users forgotten with ``DELETE /users/{id}`` — neither their logged events nor their ids.
``chronorec collect`` writes it; ``chronorec train`` on it learns the new items' ids too, which
fine-tuning cannot (:meth:`chronorec.recommender.Recommender.finetune` keeps the catalogue).

The store keeps its events, so a collected dataset says which it holds (:class:`Folded`): the
store's arrival numbers of the events folded in (``FOLDED_FILE``) and the time the store was
read (``manifest["collected"]["at"]``). A service, ``finetune`` or a later ``collect`` on such a
dataset reads only the other stored events, and takes a user as forgotten only when forgotten
after that time (one forgotten before it who posted again has only those events in it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from chronorec import __version__
from chronorec.data.dataset import EVENT_SCHEMA, PreparedDataset
from chronorec.data.merge import forgotten_among, merged_log
from chronorec.data.stored import Event, Forgotten, StoredItem
from chronorec.errors import DataError

FOLDED_FILE = "service_events.parquet"  # seq: the store's events folded into the dataset


@dataclass(frozen=True)
class Folded:
    """What of a service's store a dataset already holds (nothing, unless collected)."""

    seqs: np.ndarray  # (N,) int64, sorted: the stored events' arrival numbers
    at: float | None = None  # when the store was read (seconds since the epoch)

    def new(self, events: Iterable[Event]) -> list[Event]:
        """The events not folded in yet."""
        out = list(events)
        if not self.seqs.size or not out:
            return out
        seqs = np.fromiter((e.seq for e in out), dtype=np.int64, count=len(out))
        at = np.minimum(np.searchsorted(self.seqs, seqs), self.seqs.size - 1)  # O(k log N)
        held = self.seqs[at] == seqs
        return [e for e, h in zip(out, held, strict=True) if not h]


def folded(dataset: PreparedDataset | None) -> Folded:
    """What ``dataset`` holds of its service's store (read from its directory)."""
    if dataset is None or "collected" not in dataset.manifest:
        return Folded(np.zeros(0, dtype=np.int64))
    at = float(dataset.manifest["collected"]["at"])
    file = None if dataset.path is None else dataset.path / FOLDED_FILE
    if file is None or not file.is_file():
        raise DataError(
            f"a collected dataset without its {FOLDED_FILE}: the service would count its "
            "stored events twice",
            path=dataset.path,
        )
    seqs = np.sort(pl.read_parquet(file)["seq"].to_numpy().astype(np.int64))
    return Folded(seqs, at)


@dataclass(frozen=True)
class Collected:
    dataset: PreparedDataset
    events_added: int
    items_added: int
    users_added: int
    users_removed: int  # forgotten users whose logged events and ids were left out
    fields_left_out: list[str]  # posted items' field names the catalogue has no column for
    folded: Folded  # what the new dataset holds of the store

    def write(self, directory: Path) -> None:
        """The dataset and its record of the store into ``directory`` (a new, empty one)."""
        self.dataset.save(directory, overwrite=True)
        pl.DataFrame({"seq": self.folded.seqs}).write_parquet(directory / FOLDED_FILE)


def collect(
    dataset: PreparedDataset,
    events: Sequence[Event],
    items: Sequence[StoredItem],
    forgotten: Forgotten | Collection[str] = (),
    *,
    at: float | None = None,
) -> Collected:
    """``dataset`` with the stored ``events`` and posted ``items`` added and the ``forgotten``
    users' logged events removed. Items keep their indices, new ones follow; users are numbered
    again, densely, without those left with no events. ``at``: when the store was
    read (default: now). A collected ``dataset`` adds only the events it does not hold yet and
    passes ``forgotten`` as the users forgotten since it was collected."""
    at = datetime.now(UTC).timestamp() if at is None else at
    before = folded(dataset)
    events = before.new(events)
    known = set(dataset.items["item_id"].to_list())
    posted = [it for it in items if it.item_id not in known]
    catalogue, left_out = _catalogue(dataset, posted)
    rows = dict(zip(catalogue["item_id"].to_list(), catalogue["item"].to_list(), strict=True))
    events = [e for e in events if e.item_id in rows]  # the service takes no other item ids
    log, user_rows = merged_log(dataset, events, rows, dataset.behaviours, forgotten)
    ids = {row: user for user, row in user_rows.items()}
    # logged events keep their value (a forgotten user's logged events are gone from the log,
    # so a position of theirs that matches is a posted event); posted ones have none
    gone = [
        user_rows[u]
        for u in forgotten_among(forgotten, user_rows)
        if user_rows[u] <= dataset.n_users
    ]
    values = dataset.events.filter(~pl.col("user").is_in(gone)).select("user", "position", "value")
    log = log.join(values, on=["user", "position"], how="left")
    present = log["user"].unique().sort()  # users left without events are dropped
    dense = pl.DataFrame(
        {"user": present, "new": pl.int_range(1, present.len() + 1, eager=True)},
        schema_overrides={"new": pl.Int32},
    )
    log = (
        log.join(dense, on="user")
        .drop("user")
        .rename({"new": "user"})
        .sort(["user", "position"])
        .with_columns(pl.col("timestamp").diff().over("user").alias("gap"))
        .select([pl.col(c).cast(t) for c, t in EVENT_SCHEMA.items()])
    )
    users = pl.DataFrame(
        {
            "user": dense["new"],
            "user_id": [ids[int(u)] for u in dense["user"]],
        }
    )
    kept_logged = set(dataset.users["user_id"].to_list()) & set(users["user_id"].to_list())
    manifest = _manifest(dataset, log, catalogue, users)
    manifest["collected"] = {"at": at}
    seqs = np.array([e.seq for e in events], dtype=np.int64)
    return Collected(
        dataset=PreparedDataset(log, catalogue, users, manifest),
        events_added=len(events),
        items_added=len(posted),
        users_added=users.height - len(kept_logged),
        users_removed=dataset.n_users - len(kept_logged),
        fields_left_out=left_out,
        folded=Folded(np.union1d(before.seqs, seqs), at),
    )


def _catalogue(
    dataset: PreparedDataset, posted: Sequence[StoredItem]
) -> tuple[pl.DataFrame, list[str]]:
    """The dataset's catalogue with the posted items appended; their fields fill the columns of
    the same name (lists joined by " > ", as category paths), the others stay null."""
    base = dataset.items.sort("item")
    if not posted:
        return base, []
    columns = [c for c in base.columns if c not in ("item", "item_id")]
    new: dict[str, list[Any]] = {c: [] for c in columns}
    left_out: set[str] = set()
    for it in posted:
        left_out |= set(it.fields) - set(columns)
        for c in columns:
            value = it.fields.get(c)
            if isinstance(value, list):
                value = " > ".join(str(v) for v in value)
            new[c].append(value)
    n = dataset.n_items
    frame = pl.DataFrame(
        {
            "item": list(range(n + 1, n + 1 + len(posted))),
            "item_id": [it.item_id for it in posted],
            **new,
        }
    )
    frame = frame.select([pl.col(c).cast(base.schema[c]) for c in base.columns])
    return pl.concat([base, frame]), sorted(left_out)


def _manifest(
    dataset: PreparedDataset, events: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame
) -> dict[str, Any]:
    manifest = dict(dataset.manifest)
    manifest["chronorec_version"] = __version__
    manifest["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    manifest["counts"] = {"users": users.height, "items": items.height, "events": events.height}
    names = dataset.behaviours
    counts = events.group_by("behaviour").len().sort("behaviour")
    manifest["behaviour_counts"] = {
        names[b - 1] if 0 < b <= len(names) else str(b): int(n) for b, n in counts.iter_rows()
    }
    if dataset.has_timestamps and events.height:
        lo, hi = int(events["timestamp"].min()), int(events["timestamp"].max())  # type: ignore[arg-type]
        manifest["time_span"] = {
            "min": lo,
            "max": hi,
            "min_iso": datetime.fromtimestamp(lo, UTC).isoformat(),
            "max_iso": datetime.fromtimestamp(hi, UTC).isoformat(),
            "days": round((hi - lo) / 86400, 3),
        }
    return manifest
