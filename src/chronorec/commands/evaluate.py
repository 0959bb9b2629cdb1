"""``chronorec evaluate``: full-ranking metrics of a trained run on its validation or test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="full-ranking HR/NDCG/MRR/Recall@K of a trained run",
        description="Rank every target against the whole catalogue on the run's own split. "
        "History items are excluded or not as the run's config says (data.exclude_history); "
        "the output names which.",
    )
    p.add_argument("run", type=Path, help="run directory written by `chronorec train`")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--data", type=Path, help="prepared dataset (default: the one trained on)")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--exclude-history",
        dest="exclude",
        action="store_true",
        default=None,
        help="drop items already in the history from the ranking",
    )
    group.add_argument(
        "--keep-history",
        dest="exclude",
        action="store_false",
        help="rank history items too (repeat purchases)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.recommender import Recommender

    rec = Recommender.load(args.run, dataset=args.data)
    result = rec.evaluate(args.split, exclude_history=args.exclude)
    if args.json:
        out = result.to_dict()
        out.update(split=args.split, model=rec.config.model.name,
                   item_repr=rec.config.model.item_repr)  # fmt: skip
        print(json.dumps(out))
        return 0
    m = result.metrics
    print(
        f"{rec.config.model.name} ({rec.config.model.item_repr}) on {args.split}: "
        f"{result.n_queries:,} queries, {result.n_targets:,} targets, full ranking, "
        f"history {'excluded' if result.exclude_history else 'kept'}, "
        f"{result.seconds:.2f}s"
    )
    ks = sorted({int(k.split("@")[1]) for k in m if "@" in k})
    names = [n for n in ("hr", "ndcg", "mrr", "recall") if any(k.startswith(n + "@") for k in m)]
    print("K".rjust(4) + "".join(n.upper().rjust(10) for n in names))
    for k in ks:
        print(f"{k:>4}" + "".join(f"{m.get(f'{n}@{k}', float('nan')):>10.4f}" for n in names))
    for name, sm in result.slices.items():
        print(
            f"  {name:<16} n={sm.get('n_targets', 0):>7,.0f}  NDCG@10 {sm.get('ndcg@10', 0):.4f}"
            f"  HR@10 {sm.get('hr@10', 0):.4f}"
        )
    return 0
