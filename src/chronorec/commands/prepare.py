"""``chronorec prepare``: read an event log (+ catalogue) and write a prepared dataset."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from chronorec.data.bundled import bundled_path
from chronorec.data.prepare import PrepareOptions, prepare
from chronorec.data.readers import FORMATS, ColumnMap, read
from chronorec.errors import DataError


def _csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else ()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="read an event log and item catalogue into a prepared dataset directory",
        description="Read an event log (+ item catalogue) with a named adapter, sort it stably "
        "by time per user (ties keep file order), map ids and write Parquet + manifest.json.",
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="input adapter")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, help="event log file (or directory for movielens)")
    src.add_argument(
        "--bundled",
        action="store_true",
        help="use the Online Retail data shipped with chronorec (CC BY 4.0)",
    )
    p.add_argument("--items", type=Path, help="item catalogue file")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--encoding", help="input text encoding (default utf-8; latin-1 for movielens)")
    g = p.add_argument_group("columns (csv / parquet / jsonl)")
    g.add_argument("--user-col", default="user_id")
    g.add_argument("--item-col", default="item_id")
    g.add_argument("--time-col", default="timestamp", help="'' for a log without timestamps")
    g.add_argument(
        "--time-format",
        help="strptime format of the time column (default: unix seconds or ISO 8601)",
    )
    g.add_argument("--behaviour-col")
    g.add_argument("--value-col")
    g.add_argument("--item-id-col", help="id column of the items file (default: --item-col)")
    g.add_argument("--text-cols", help="comma-separated item text columns (default: all strings)")
    g.add_argument("--price-col")
    g.add_argument("--vector-cols", help="comma-separated precomputed embedding columns")
    f = p.add_argument_group("filters")
    f.add_argument(
        "--dedupe",
        action="store_true",
        help="drop repeated (user, item, timestamp, behaviour) rows",
    )
    f.add_argument("--min-user-events", type=int, default=0, help="k-core: events per user")
    f.add_argument("--min-item-events", type=int, default=0, help="k-core: events per item")
    f.add_argument("--last-days", type=float, help="keep only the last N days of the log")
    f.add_argument("--max-events-per-user", type=int, help="keep each user's last L events")
    f.add_argument("--behaviours", help="fixed behaviour vocabulary, comma-separated, in order")
    f.add_argument(
        "--keep-catalogue-items",
        action="store_true",
        help="keep catalogue items that have no events (cold items)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest counts as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise DataError(
            "output directory already exists (use --force to replace it)", path=args.out
        )
    columns = ColumnMap(
        user=args.user_col,
        item=args.item_col,
        time=args.time_col or None,
        behaviour=args.behaviour_col,
        value=args.value_col,
        item_id=args.item_id_col,
        text=_csv_list(args.text_cols),
        price=args.price_col,
        vectors=_csv_list(args.vector_cols),
        time_format=args.time_format,
    )
    options = PrepareOptions(
        dedupe=args.dedupe,
        min_user_events=args.min_user_events,
        min_item_events=args.min_item_events,
        last_days=args.last_days,
        max_events_per_user=args.max_events_per_user,
        behaviours=_csv_list(args.behaviours) or None,
        keep_catalogue_items=args.keep_catalogue_items,
    )
    if args.bundled:
        if args.format != "online-retail":
            raise DataError("--bundled holds Online Retail data: use --format online-retail")
        args.events = bundled_path("online-retail")
    t0 = time.perf_counter()
    raw = read(args.format, args.events, args.items, columns=columns, encoding=args.encoding)
    ds = prepare(raw, options)
    ds.save(args.out, overwrite=args.force)
    secs = time.perf_counter() - t0
    counts = ds.manifest["counts"]
    if args.json:
        print(json.dumps({"out": str(args.out), "seconds": round(secs, 3), **counts}))
    else:
        print(
            f"prepared {counts['users']:,} users, {counts['items']:,} items, "
            f"{counts['events']:,} events in {secs:.2f} s → {args.out}"
        )
    return 0
