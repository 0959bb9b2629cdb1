"""``chronorec stats``: summary statistics of a prepared dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chronorec.data.dataset import load_prepared
from chronorec.data.stats import dataset_stats


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="summary statistics of a prepared dataset",
        description="Users, items, events, density, history lengths, time span, "
        "behaviour counts and items without text.",
    )
    p.add_argument("dir", type=Path, help="prepared dataset directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stats = dataset_stats(load_prepared(args.dir))
    if args.json:
        print(json.dumps(stats))
        return 0
    h = stats["history_length"]
    print(f"users   {stats['users']:>12,}")
    print(f"items   {stats['items']:>12,}")
    print(f"events  {stats['events']:>12,}")
    print(f"density {stats['density']:>12.5f}")
    print(f"history mean {h['mean']:.1f}, median {h['median']:.0f}, min {h['min']}, max {h['max']}")
    span = stats["time_span"]
    print(
        "time    "
        + (
            f"{span['min_iso']} → {span['max_iso']} ({span['days']} days)"
            if span
            else "order only (no timestamps)"
        )
    )
    for name, n in stats["behaviour_counts"].items():
        print(f"  {name:<10} {n:>12,}")
    print(f"items without text {stats['items_without_text']:,}")
    return 0
