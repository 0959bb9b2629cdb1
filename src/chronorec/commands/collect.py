"""``chronorec collect``: a run's dataset plus what its service stored, for the next training."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from chronorec.commands import (
    add_store_argument,
    check_out_dir,
    load_with_dataset,
    store_url,
    write_dir,
)
from chronorec.errors import ChronorecError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="write a prepared dataset: the run's plus the events and items its service stored",
        description="Fold what the service stored into a new prepared dataset for a full "
        "training: the run's event log and catalogue, then the events posted to the service "
        "(each user's after their logged ones) and the items posted to it (new catalogue rows, "
        "their fields in the columns of the same name), without the users forgotten with "
        "DELETE /users/ID (neither their logged events nor their ids). Items keep their "
        "indices, new ones after them; the dataset's text cache is copied, so encoding the "
        "items again only encodes the new ones. The dataset records which stored events it "
        "holds: a run trained on it and served on the same store reads only the others. "
        "`chronorec finetune` learns new events in seconds; training on a collected dataset "
        "also learns the ids of the items posted since.",
    )
    p.add_argument("run", type=Path, help="run directory being served")
    p.add_argument("--out", type=Path, required=True, help="prepared dataset directory to write")
    add_store_argument(p)
    p.add_argument("--data", type=Path, help="the run's prepared dataset (default: recorded)")
    p.add_argument("--force", action="store_true", help="overwrite an existing directory")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from chronorec.data.collect import collect, folded
    from chronorec.service.store import open_store

    out: Path = args.out
    check_out_dir(out, args.force, what="dataset directory")
    url = store_url(args.db)
    source = load_with_dataset(args.run, args.data).dataset
    assert source is not None
    if source.path is not None and out.resolve() == source.path.resolve():
        raise ChronorecError(f"{out}: --out must be a new directory, not the run's dataset")
    since = folded(source).at  # forgetting before it is in the source already
    store = open_store(url)
    try:
        at = time.time()  # first: a user forgotten from now on is forgotten after the read
        forgotten = store.forgotten_users(since=since)
        got = collect(source, list(store.iter_events()), store.items(), forgotten, at=at)
    finally:
        store.close()
    cache = None if source.path is None else source.path / "text_cache"

    def write(tmp: Path) -> None:
        got.write(tmp)
        if cache is not None and cache.is_dir():  # texts already encoded are reused
            shutil.copytree(cache, tmp / "text_cache")

    write_dir(out, write)  # the dataset appears whole or not at all
    counts = got.dataset.manifest["counts"]
    summary = {
        "dataset": str(out),
        "events": counts["events"],
        "items": counts["items"],
        "users": counts["users"],
        "events_added": got.events_added,
        "items_added": got.items_added,
        "users_added": got.users_added,
        "users_removed": got.users_removed,
        "fields_left_out": got.fields_left_out,
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"collected {got.events_added:,} stored events, {got.items_added:,} posted items and "
        f"{got.users_added:,} new users; {got.users_removed:,} forgotten users left out"
    )
    if got.fields_left_out:
        print(f"posted item fields without a catalogue column: {', '.join(got.fields_left_out)}")
    print(
        f"dataset → {out} ({counts['events']:,} events, {counts['items']:,} items, "
        f"{counts['users']:,} users); train on it: chronorec train {out} ..."
    )
    return 0
