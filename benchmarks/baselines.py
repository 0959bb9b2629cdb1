"""Non-learned baselines on a prepared dataset, full ranking, printed as a markdown table.

Usage:
    python benchmarks/baselines.py DIR [--split loo|temporal] [--test-days 30] [--behaviour buy]
        [--exclude-history no|yes|both] [--max-len 2000] [--recent-days 30] [--vectors V.npy]
        [--which valid|test] [--slices] [--repeat-half-lives 2 4 8] [--no-append]

``DIR`` is a directory written by ``chronorec prepare``. ``--vectors`` is an
``(n_items + 1, d)`` NumPy file of item text vectors for the text-KNN baseline.
``--repeat-half-lives`` adds one recency-weighted repeat baseline per half-life (in visits), to
choose ``repeat-recent``'s half-life on the valid split. The tables are printed; one result row
per (baseline, exclude_seen) is appended to ``benchmarks/results/baselines.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record_results  # noqa: E402

from chronorec.blend import fit_baselines  # noqa: E402
from chronorec.blend.baselines import RepeatFrequency  # noqa: E402
from chronorec.data import leave_one_out, load_prepared, temporal_split  # noqa: E402
from chronorec.data.sequences import EventArrays  # noqa: E402
from chronorec.evaluation import evaluate_many, results_table, slices_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--split", choices=["loo", "temporal"], default="loo")
    parser.add_argument("--test-days", type=float, default=30.0)
    parser.add_argument("--behaviour", default=None, help="target behaviour name (temporal)")
    parser.add_argument("--exclude-history", choices=["no", "yes", "both"], default="both")
    parser.add_argument("--max-len", type=int, default=2000)
    parser.add_argument("--recent-days", type=float, default=None)
    parser.add_argument("--vectors", default=None)
    parser.add_argument("--which", choices=["valid", "test"], default="test")
    parser.add_argument("--slices", action="store_true", help="also print each baseline's slices")
    parser.add_argument("--repeat-half-lives", type=float, nargs="*", default=[], metavar="H")
    parser.add_argument(
        "--no-append", action="store_true", help="print only, do not append the results"
    )
    args = parser.parse_args()
    if any(not h > 0 for h in args.repeat_half_lives):
        parser.error("--repeat-half-lives: every half-life must be > 0")

    ds = load_prepared(args.data)
    behaviour = ds.behaviours.index(args.behaviour) + 1 if args.behaviour else None
    if args.split == "loo":
        split = leave_one_out(ds.events)
    else:
        split = temporal_split(ds.events, test_days=args.test_days, behaviour=behaviour)
    targets = split.targets(args.which)
    vectors = np.load(args.vectors) if args.vectors else None
    t0 = time.perf_counter()
    known = split.known(args.which)  # test: fitted on every event before the test cut
    models = fit_baselines(
        known,
        ds.n_items,
        recent_days=args.recent_days,
        item_vectors=vectors,
        behaviour=behaviour,
        behaviour_name=args.behaviour,
    )
    for h in args.repeat_half_lives:
        extra = RepeatFrequency(half_life=h, name=f"repeat-recent-{h:g}v")
        models[extra.name] = extra.fit(known, ds.n_items)
    fit_s = time.perf_counter() - t0
    arrays = EventArrays.from_events(ds.events, n_users=ds.n_users)
    head = (
        f"{args.data}: {split.protocol}, {args.which} targets {targets.height:,}, "
        f"{ds.n_items:,} items, baselines fitted in {fit_s:.2f}s, history window {args.max_len}"
    )
    parts = []
    results_rows: list[dict[str, object]] = []
    for exclude in {"no": [False], "yes": [True], "both": [False, True]}[args.exclude_history]:
        results = evaluate_many(
            models,
            arrays,
            targets,
            n_items=ds.n_items,
            behaviour_names=ds.behaviours,
            exclude_seen=exclude,
            max_len=args.max_len,
            train=known,
        )
        table = results_table(results, ("ndcg@10", "hr@10", "mrr@10", "recall@10", "recall@20"))
        seconds = ", ".join(f"{n} {r.seconds:.2f}s" for n, r in results.items())
        repeat = next(iter(results.values())).repeat_share
        for scorer, result in results.items():
            results_rows.append({"scorer": scorer, **result.to_dict()})
        parts.append(
            f"exclude_seen={exclude}:\n\n{table}\n\n"
            f"repeat targets {repeat:.1%}; evaluation time: {seconds}"
        )
        if args.slices:
            for name, result in results.items():
                parts.append(f"### {name} (exclude_seen={exclude})\n\n{slices_table(result)}")
    text = "\n\n".join(parts)
    print(f"{head}\n\n{text}")
    record_results(
        "baselines",
        results_rows,
        append=not args.no_append,
        data=args.data,
        protocol=split.protocol,
        which=args.which,
        items=ds.n_items,
        fit_seconds=fit_s,
    )


if __name__ == "__main__":
    main()
