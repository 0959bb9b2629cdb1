"""The prepared dataset: what every other part of chronorec reads.

A prepared dataset is a directory::

    events.parquet   user:i32, item:i32, timestamp:i64?, behaviour:i8, value:f32?,
                     position:i32, gap:i64?
    items.parquet    item:i32, item_id:str, <text columns>:str, price:f64?,
                     <vector columns>:list[f32]
    users.parquet    user:i32, user_id:str
    manifest.json    format, sources (+ sha256), counts, behaviours, time span, columns, options

Users and items are dense indices starting at 1 (0 is padding). ``events`` is sorted by
``(user, position)``; ``position`` is the 0-based rank of the event in the user's history after a
stable chronological sort (ties keep file order). ``gap`` is the number of seconds since the user's
previous event (null for a first event or when the log has no timestamps). ``behaviour`` indexes
``manifest["behaviours"]`` starting at 1.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from chronorec.errors import DataError

FORMAT_VERSION = 1
EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
MANIFEST_FILE = "manifest.json"

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Int32(),
    "item": pl.Int32(),
    "timestamp": pl.Int64(),
    "behaviour": pl.Int8(),
    "value": pl.Float32(),
    "position": pl.Int32(),
    "gap": pl.Int64(),
}


@dataclass(frozen=True)
class PreparedDataset:
    """Events, catalogue and users of one prepared dataset (all Polars frames)."""

    events: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)  # the directory it was loaded from

    @property
    def n_users(self) -> int:
        return self.users.height

    @property
    def n_items(self) -> int:
        """Number of real items; valid item indices are ``1..n_items``."""
        return self.items.height

    @property
    def behaviours(self) -> list[str]:
        """Behaviour names; ``behaviour == i`` in ``events`` means ``behaviours[i - 1]``."""
        return list(self.manifest.get("behaviours", []))

    @property
    def text_columns(self) -> list[str]:
        return list(self.manifest.get("text_columns", []))

    @property
    def vector_columns(self) -> list[str]:
        return list(self.manifest.get("vector_columns", []))

    @property
    def has_timestamps(self) -> bool:
        return bool(self.manifest.get("has_timestamps", False))

    def item_ids(self) -> list[str]:
        """External item ids in index order (``item_ids()[i - 1]`` is item ``i``)."""
        return self.items.sort("item")["item_id"].to_list()

    def user_ids(self) -> list[str]:
        return self.users.sort("user")["user_id"].to_list()

    def save(self, out_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write the dataset atomically: a temp dir next to ``out_dir``, renamed when complete."""
        out = Path(out_dir)
        if out.exists() and not overwrite:
            raise DataError(
                "output directory already exists (pass overwrite=True / --force)", path=out
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            self.events.write_parquet(tmp / EVENTS_FILE)
            self.items.write_parquet(tmp / ITEMS_FILE)
            self.users.write_parquet(tmp / USERS_FILE)
            (tmp / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2, sort_keys=False))
            if out.exists():
                backup = out.with_name(f".{out.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(out, backup)
                os.replace(tmp, out)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def load_prepared(path: str | Path) -> PreparedDataset:
    """Load a directory written by ``chronorec prepare`` (or :meth:`PreparedDataset.save`)."""
    root = Path(path)
    manifest_path = root / MANIFEST_FILE
    if not root.is_dir():
        raise DataError(
            "not a prepared dataset directory (run `chronorec prepare` first)", path=root
        )
    if not manifest_path.is_file():
        raise DataError(f"missing {MANIFEST_FILE}: not a prepared dataset", path=root)
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg})", path=manifest_path, line=exc.lineno) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}; "
            "prepare the dataset again with this version of chronorec",
            path=manifest_path,
        )
    frames = {}
    for name in (EVENTS_FILE, ITEMS_FILE, USERS_FILE):
        file = root / name
        if not file.is_file():
            raise DataError(f"missing {name}", path=root)
        frames[name] = pl.read_parquet(file)
    return PreparedDataset(
        events=frames[EVENTS_FILE],
        items=frames[ITEMS_FILE],
        users=frames[USERS_FILE],
        manifest=manifest,
        path=root,
    )
