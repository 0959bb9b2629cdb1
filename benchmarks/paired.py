"""Is group B of saved runs better than group A? A paired test, query by query, on one split.

Seeds of small test sets overlap, so comparing means of seeds says little. Here every run of both
groups is evaluated on the same targets; each query's metric is averaged over the seeds of its
group, and the query-by-query differences B - A give a mean, its standard error and z = mean / SE
(|z| >= 2: the groups differ beyond the noise of which queries happen to be in the test set).
The same is done for the two groups' ensembles (mean standardised scores of their runs).

Usage:
  python benchmarks/paired.py --a /tmp/blind/gru-id-{0,1,2} --b /tmp/aware/gru-id-{0,1,2} \\
      --label-a behaviour-blind --label-b behaviour-aware --metric recall@20 [--split test] \\
      [--title T] [--no-append]

Prints the table and the paired figures; one row per group and one per comparison (mean of runs,
ensemble, between runs) are appended to ``benchmarks/results/paired.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.blend import Ensemble  # noqa: E402
from chronorec.evaluation.evaluator import per_query  # noqa: E402


def query_values(ensemble: Ensemble, which: str, metric: str) -> tuple[np.ndarray, pl.DataFrame]:
    """(Q,) the metric of every query of ``which`` for the ensemble, and the targets frame."""
    targets = ensemble.targets(which)
    result = ensemble.evaluate(which, slices=())
    return per_query(result, targets, metric), targets


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of b - a, its standard error, and z."""
    diff = b - a
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
    mean = float(diff.mean())
    return mean, se, mean / se if se > 0 else float("nan")


def between_runs(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of b's run means - a's, its Welch standard error from the runs' spread, and z."""
    mean = float(b.mean() - a.mean())
    se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    return mean, se, mean / se if se > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", required=True, help="runs of group A (the reference)")
    parser.add_argument("--b", nargs="+", required=True, help="runs of group B")
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    parser.add_argument("--data", default=None, help="prepared dataset (default: the runs')")
    parser.add_argument("--metric", default=None, help="default: the runs' select_metric")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--title", default=None, help="a name kept with the results")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()

    groups = {args.label_a: args.a, args.label_b: args.b}
    seeds: dict[str, np.ndarray] = {}  # label -> (Q,) mean over the group's runs
    ensembles: dict[str, np.ndarray] = {}
    per_run: dict[str, list[float]] = {}
    reference: pl.DataFrame | None = None
    metric = args.metric
    for label, runs in groups.items():
        whole = Ensemble.load(runs, dataset=args.data)
        metric = metric or whole.config.train.select_metric
        values = []
        for member in whole.members:
            got, targets = query_values(Ensemble([member]), args.split, metric)
            if reference is None:
                reference = targets
            elif not targets.equals(reference):
                sys.exit(
                    f"paired.py: {label}'s runs have other {args.split} targets than the first "
                    "run's (another dataset or data settings); nothing to pair"
                )
            values.append(got)
        per_run[label] = [float(v.mean()) for v in values]
        seeds[label] = np.mean(values, axis=0)
        ensembles[label] = query_values(whole, args.split, metric)[0]

    la, lb = args.label_a, args.label_b
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    for label in (la, lb):
        runs = ", ".join(f"{v:.4f}" for v in per_run[label])
        rows.append([label, len(groups[label]), runs, f"{seeds[label].mean():.4f}",
                     f"{ensembles[label].mean():.4f}"])  # fmt: skip
        results.append({"kind": "group", "group": label, "runs": groups[label],
                        "each_run": per_run[label], "mean_of_runs": seeds[label].mean(),
                        "ensemble": ensembles[label].mean()})  # fmt: skip
    header = ["group", "runs", f"{metric} of each run", "mean of runs", "ensemble"]
    table = markdown_table(header, rows)
    q = seeds[la].size
    lines = []
    for what, by_group in (("mean of runs", seeds), ("ensemble", ensembles)):
        mean, se, z = paired(by_group[la], by_group[lb])
        differ = int(np.count_nonzero(by_group[lb] != by_group[la]))
        lines.append(
            f"{what}: {lb} - {la} = {mean:+.4f} ± {se:.4f} (SE), z = {z:.2f}; "
            f"{differ} of {q} queries differ"
        )
        results.append({"kind": "paired", "what": what, "a": la, "b": lb, "b_minus_a": mean,
                        "se": se, "z": z, "queries": q, "queries_differ": differ})  # fmt: skip
    notes = (
        f"Paired over the {q} queries of the {args.split} split ({metric} per query, full "
        "ranking). " + " ".join(f"{line}." for line in lines) + " |z| ≥ 2 is a difference "
        "beyond the noise of which queries are in the split; smaller is not."
    )
    a, b = np.array(per_run[la]), np.array(per_run[lb])
    if a.size > 1 and b.size > 1:
        mean, se, z = between_runs(a, b)
        notes += (
            f" Between runs (the spread of each group's run means, Welch): {lb} - {la} = "
            f"{mean:+.4f} ± {se:.4f} (SE), z = {z:.2f} — the noise of training seeds, which the "
            "paired figures above do not include."
        )
        results.append({"kind": "between runs (Welch)", "what": "mean of runs", "a": la,
                        "b": lb, "b_minus_a": mean, "se": se, "z": z})  # fmt: skip
    print(table + "\n\n" + notes)
    record_results(
        "paired",
        results,
        append=not args.no_append,
        title=args.title or f"paired comparison: {lb} vs {la}",
        metric=metric,
        split=args.split,
    )


if __name__ == "__main__":
    main()
