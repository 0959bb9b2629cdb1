"""``chronorec report``: a self-contained HTML report (plots embedded) for a saved run."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html for a run: learning curves, metrics vs baselines, slices, "
        "item map, examples",
        description="Evaluate a saved run and the baselines on its test split and write a "
        "self-contained HTML report (plots embedded).",
    )
    p.add_argument("run", type=Path, help="run directory written by `chronorec train`")
    p.add_argument("--out", type=Path, help="output file (default: RUN/report.html)")
    p.add_argument("--dataset", type=Path, help="prepared dataset (default: the run's own)")
    p.add_argument(
        "--blend",
        help="comma-separated baselines to blend with the model in one more row (weights tuned "
        "on the valid split, as `chronorec evaluate --blend` does): popular, popular-recent, "
        "repeat, repeat-recent, transitions, user-knn, ridge, text-knn. Default: the run's saved "
        "blend (RUN/blend.json) if it has one; 'none' for no blended row",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.blend import blend_names
    from chronorec.report import report_for_run  # torch: only when the command runs

    blend, off = blend_names(args.blend)
    print(f"report: {report_for_run(args.run, args.out, args.dataset, blend, saved=not off)}")
    return 0
