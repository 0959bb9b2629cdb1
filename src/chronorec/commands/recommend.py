"""``chronorec recommend``: top-K items for a known user or an ad-hoc history."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chronorec.errors import ChronorecError


def _ids(text: str | None) -> list[str] | None:
    return None if text is None else [t for t in text.split(",") if t]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        help="top-K items for a user (or an ad-hoc history) from a trained run",
        description="Scores the whole catalogue after the user's logged history (or --history) "
        "and prints the top K in the dataset's own item ids. Items already in the history are "
        "left out or not as the run's data.exclude_seen says (as it was evaluated), unless "
        "--include-seen or --exclude-seen.",
    )
    p.add_argument(
        "run",
        type=Path,
        nargs="+",
        help="run directory written by `chronorec train`; several runs (same catalogue and "
        "split) recommend as one ensemble",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the dataset")
    who.add_argument("--history", help="comma-separated item ids, oldest first")
    p.add_argument("--timestamps", help="with --history: comma-separated unix seconds")
    p.add_argument("--behaviours", help="with --history: comma-separated behaviour names")
    p.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument(
        "--include-seen",
        dest="exclude_seen",
        action="store_false",
        default=None,
        help="allow items from the history (default: as the run's data.exclude_seen says)",
    )
    seen.add_argument(
        "--exclude-seen",
        dest="exclude_seen",
        action="store_true",
        help="leave items from the history out",
    )
    p.add_argument("--allow", help="comma-separated item ids: recommend only among these")
    p.add_argument("--block", help="comma-separated item ids never to recommend")
    p.add_argument("--data", type=Path, help="prepared dataset (default: the one trained on)")
    p.add_argument(
        "--weights",
        metavar="NAME=W,...",
        help="blend with baselines at these weights (as `chronorec evaluate --blend` tunes "
        "them), e.g. transitions=0.3,text-knn=0.5; the baselines count every logged event. "
        "Default for one run: its saved blend (RUN/blend.json) if it has one; 'none' for the "
        "model alone",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec import blend

    if args.k < 1:
        raise ChronorecError(f"-k must be at least 1, not {args.k}")
    # recommendations read every logged event, so the blended counts do too
    rec = blend.load(args.run, dataset=args.data, blend=args.weights, fit_on="all",
                     where="--weights")  # fmt: skip
    if rec.choice.source == "saved":
        print(f"ranked by {rec.choice.describe()}; --weights none for the model alone",
              file=sys.stderr)  # fmt: skip
    opts = dict(
        k=args.k, exclude_seen=args.exclude_seen, allow=_ids(args.allow),
        block=_ids(args.block),
    )  # fmt: skip
    if args.user is not None:
        ids, scores = rec.recommend([args.user], **opts)  # type: ignore[arg-type]
    else:
        history = _ids(args.history) or []
        ts = _ids(args.timestamps)
        try:
            times = None if ts is None else [[int(t) for t in ts]]
        except ValueError as exc:
            raise ChronorecError(f"--timestamps: {exc}") from exc
        behs = _ids(args.behaviours)
        ids, scores = rec.recommend_histories(
            [history], timestamps=times, behaviours=None if behs is None else [behs],
            **opts,  # type: ignore[arg-type]
        )  # fmt: skip
    first = rec.members[0]
    names = dict(zip(first.item_ids(), first.item_names(), strict=True))
    rows = [
        {"rank": r + 1, "item_id": i, "name": names.get(i, ""), "score": float(s)}
        for r, (i, s) in enumerate(zip(ids[0], scores[0], strict=True))
    ]
    if args.json:
        who = {"user": args.user} if args.user is not None else {"history": _ids(args.history)}
        print(json.dumps({**who, "items": rows}))
        return 0
    for row in rows:
        print(f"{row['rank']:>3}  {row['item_id']:<16} {row['score']:>9.4f}  {row['name']}")
    return 0
