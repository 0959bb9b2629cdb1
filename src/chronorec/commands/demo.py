"""``chronorec demo``: train and recommend on the bundled Online Retail data; write a report."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train and recommend on bundled real shop data and write report.html",
        description="Prepare the bundled UCI Online Retail data (CC BY 4.0), encode product "
        "descriptions with the packaged MiniLM encoder, train the default model, evaluate it "
        "next to the baselines, print example recommendations and write a self-contained "
        "report.html.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("chronorec-demo"),
        help="output directory (default: ./chronorec-demo)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast setting (last 120 days, a few epochs): for CI",
    )
    p.add_argument("--max-minutes", type=float, help="training time budget")
    p.add_argument("--model", choices=["lstm", "gru", "transformer", "hstu"])
    p.add_argument("--item-repr", choices=["id", "text", "id+text"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.demo import run_demo, settings_for  # torch: only when the command runs

    settings = settings_for(
        args.quick, max_minutes=args.max_minutes, model=args.model, item_repr=args.item_repr
    )
    run_demo(args.out, settings, progress=args.verbose > 0 or not args.quick)
    return 0
