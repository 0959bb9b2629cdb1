"""Blend weight search: test metric of saved runs blended at several noise thresholds.

``Ensemble.tune`` keeps a baseline's best grid weight only when it beats the current weight by
``min_z`` standard errors of the per-query differences on the validation split. This script
tunes the same ensemble at each threshold and reports the test metric, to see what the guard
costs on large validation splits and saves on small ones.

Usage:
  python benchmarks/blend_threshold.py --runs /tmp/runs/gru-id-{0,1,2} \\
      --blend repeat popular transitions user-knn --metric recall@20 [--z 0 1.5 2] [--no-append]

Prints the table; its rows are appended to ``benchmarks/results/blend_threshold.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.blend import Ensemble  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="saved runs, one ensemble")
    parser.add_argument("--data", default=None, help="prepared dataset (default: the runs')")
    parser.add_argument("--blend", nargs="+", required=True, metavar="BASELINE")
    parser.add_argument("--metric", default=None, help="tuned and reported (default: the runs')")
    parser.add_argument("--z", nargs="+", type=float, default=[0.0, 1.5, 2.0])
    parser.add_argument("--label", default=None, help="name of the row (default: first run)")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()

    base = Ensemble.load(args.runs, dataset=args.data)
    metric = args.metric or base.config.train.select_metric
    label = args.label or args.runs[0]
    alone = base.evaluate("test", slices=())[metric]
    rows = [[label, len(args.runs), metric, "runs alone", "-", f"{alone:.4f}"]]
    results: list[dict[str, object]] = [
        {"label": label, "n_runs": len(args.runs), "metric": metric, "min_z": None,
         "weights": {}, "test": alone}
    ]  # fmt: skip
    for z in args.z:
        ens = Ensemble(base.members)
        weights = ens.tune(args.blend, metric=metric, min_z=z)
        chosen = ", ".join(f"{k} {v:g}" for k, v in weights.items() if v) or "none"
        test = ens.evaluate("test", slices=())[metric]
        rows.append([label, len(args.runs), metric, f"min_z {z:g}", chosen, f"{test:.4f}"])
        results.append({"label": label, "n_runs": len(args.runs), "metric": metric,
                        "min_z": z, "weights": dict(weights), "test": test})  # fmt: skip
    header = ["runs", "n", "metric", "blend", "weights tuned on valid", "test"]
    table = markdown_table(header, rows)
    notes = (
        f"Ensemble of the runs blended with {', '.join(args.blend)}; weights tuned on the "
        f"validation split by `Ensemble.tune(metric={metric!r}, min_z=z)`, reported on test."
    )
    print(table + "\n\n" + notes)
    record_results(
        "blend_threshold",
        results,
        append=not args.no_append,
        runs=args.runs,
        blend=args.blend,
    )


if __name__ == "__main__":
    main()
