"""The learned blend against the linear one, run by run, on the test split.

For each run (and, with ``--ensemble``, for all of them as one ensemble): the runs alone, the
linear blend with weights tuned on the validation split (``Ensemble.tune``) and the learned
blend trained on the validation split (``chronorec.blend.fit_learned``, which tunes the same
linear weights first and uses that blend as one of its terms). The validation columns are the
linear blend in-sample (its weights were tuned there) and the learned blend out of fold (each
user ranked by a model trained on the other users), the honest comparison before the test split.

Usage:
  python benchmarks/learned_blend.py RUN [RUN ...] --blend NAMES [--metric recall@20]
      [--ensemble] [--data DIR] [--objective lambdarank|binary] [--windows N] [--threads N]
      [--no-append]

``--windows N`` trains the learned blend on the validation window and N - 1 earlier ones
(``fit_learned(windows=N)``; default ``chronorec.blend.WINDOWS``). ``--threads N``: LightGBM's
threads (default: torch's); 1 when another job shares the cores, whose threads LightGBM's
would wait on.

Prints the table; its rows are appended to ``benchmarks/results/learned_blend.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.blend import WINDOWS, Ensemble, fit_learned  # noqa: E402

METRICS = ("ndcg@10", "hr@10", "recall@10", "recall@20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--blend", required=True, help="comma-separated baseline names")
    parser.add_argument("--metric", default=None, help="default: the runs' train.select_metric")
    parser.add_argument("--data", default=None)
    parser.add_argument("--ensemble", action="store_true", help="also all runs as one ensemble")
    parser.add_argument("--objective", default="auto", help="lambdarank | binary | auto")
    parser.add_argument(
        "--windows", type=int, default=WINDOWS, help="validation windows to train on"
    )
    parser.add_argument("--threads", type=int, default=None, help="LightGBM threads")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()
    names = [n for n in args.blend.split(",") if n]
    groups = [[r] for r in args.runs]
    if args.ensemble and len(args.runs) > 1:
        groups.append(list(args.runs))
    rows = []
    results: list[dict[str, object]] = []
    metric = args.metric
    for group in groups:
        t0 = time.perf_counter()
        ens = Ensemble.load(group, dataset=args.data)
        metric = metric or ens.config.train.select_metric
        label = group[0] if len(group) == 1 else f"ensemble of {len(group)}"
        alone = ens.evaluate("test")
        learned, report = fit_learned(
            ens,
            names,
            metric=metric,
            objective=args.objective,
            windows=args.windows,
            threads=args.threads,
        )
        chosen = report["objective"]
        got = ens.evaluate("test")
        ens.learned = None  # the linear blend fit_learned tuned (its weights are still set)
        linear = ens.evaluate("test")
        weights = ", ".join(f"{n} {w:g}" for n, w in learned.weights.items()) or "none"
        for scorer, result, valid in (
            ("runs alone", alone, report[f"valid {metric}, runs alone"]),
            (f"linear blend ({weights})", linear,
             report[f"valid {metric}, linear blend (tuned on it)"]),
            (f"learned blend ({chosen})", got,
             report[f"valid {metric}, learned blend ({chosen}) out of fold"]),
        ):  # fmt: skip
            rows.append([label, scorer, f"{valid:.4f}", *(f"{result[m]:.4f}" for m in METRICS)])
            results.append({"run": label, "runs": list(group), "scorer": scorer,
                            f"valid {metric}": valid,
                            **{f"test {m}": result[m] for m in METRICS}})  # fmt: skip
        seconds = time.perf_counter() - t0
        for entry in results[-3:]:
            entry.update(seconds=seconds, objective=chosen, weights=dict(learned.weights))
        print(f"{label}: {seconds:.0f} s, {report}", file=sys.stderr)
    header = ["run", "scorer", f"valid {metric}", *(f"test {m}" for m in METRICS)]
    table = markdown_table(header, rows)
    notes = (
        f"Baselines: {', '.join(names)}; objective {args.objective}; {args.windows} "
        "validation window(s) to train on. Valid column: the "
        "runs alone, the linear blend in-sample (tuned there), the learned blend out of "
        "fold (2 folds of users)."
    )
    print(table + "\n\n" + notes)
    record_results(
        "learned_blend",
        results,
        append=not args.no_append,
        blend=names,
        metric=metric,
        objective_asked=args.objective,
        windows=args.windows,
    )


if __name__ == "__main__":
    main()
