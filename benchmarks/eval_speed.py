"""Full-ranking evaluation speed: seconds to rank every test target against the whole catalogue.

The scorer returns random scores (drawn once per batch, seeded), so the table measures the
evaluator itself — history lookup, ranking, metrics — not a model. Each dataset is ranked three
ways: the evaluator's own choice, every target compared with its row (``compare``), and every row
sorted once (``sort``, the target-set path); the choice between them is
``chronorec.evaluation.evaluator.SORT_COST``.

Usage:
  python benchmarks/eval_speed.py --data ml-1m=/tmp/cr_ml1m --data online-retail=/tmp/cr_retail \\
      [--run /tmp/runs/transformer-id-0] [--repeat 3] [--crossover] [--no-append]

``--run RUN`` (repeatable) also times ``Recommender.evaluate("test")`` of a saved run on its own
split: the model's forward pass included.

``--crossover`` adds a synthetic table: one batch of 256 random rows with 2-128 targets each,
ranked both ways, for a catalogue the size of Online Retail's and one the size of Taobao's.

Prints the tables; their rows are appended to ``benchmarks/results/eval_speed.jsonl`` unless
``--no-append`` (a ``kind`` field tells the three tables apart).

A dataset named ``online-retail`` or ``taobao`` is split by time (last 30 days; for taobao the
purchases of the last 2 days) with history items kept in the ranking, as in the quality runs;
any other leave-one-out with history excluded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.data import leave_one_out, load_prepared, temporal_split  # noqa: E402
from chronorec.data.sequences import EventArrays, HistoryBatch  # noqa: E402
from chronorec.evaluation import evaluate, evaluator  # noqa: E402
from chronorec.recommender import Recommender, make_split  # noqa: E402

TEMPORAL = {"online-retail": (30.0, None), "taobao": (2.0, "buy")}  # test days, behaviour


class RandomScores:
    """Seeded random scores over the catalogue; cheap next to ranking."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.generator = torch.Generator().manual_seed(0)

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        return torch.rand(len(batch), self.n_items + 1, generator=self.generator)


def crossover(repeat: int) -> tuple[str, list[dict[str, object]]]:
    """Milliseconds to rank one batch of 256 random rows by comparing and by sorting: the table
    and its rows as result dicts."""
    rng = np.random.default_rng(0)
    out: list[list[object]] = []
    results: list[dict[str, object]] = []
    for n_items in (3_659, 55_233):
        scores = torch.rand(256, n_items + 1, generator=torch.Generator().manual_seed(0))
        for per_row in (2, 8, 16, 32, 64, 128):
            rows = np.repeat(np.arange(256), per_row)
            items = rng.integers(1, n_items + 1, rows.size)
            ms = {}
            for label, cost in (("compare", 1e-9), ("sort", 1e9)):
                evaluator.SORT_COST = cost
                best = float("inf")
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    evaluator._rank_batch(
                        scores, rows, items, np.zeros(0, np.int64), False, "pessimistic"
                    )
                    best = min(best, time.perf_counter() - t0)
                ms[label] = best * 1000
            out.append([f"{n_items:,}", per_row, f"{np.log2(n_items):.1f}",
                        f"{ms['compare']:.0f}", f"{ms['sort']:.0f}"])  # fmt: skip
            results.append({"kind": "crossover", "items": n_items, "rows": 256,
                            "targets_per_row": per_row, "ms_compare": ms["compare"],
                            "ms_sort": ms["sort"]})  # fmt: skip
    header = ["items", "targets per row", "log2(items)", "ms (compare)", "ms (sort)"]
    return markdown_table(header, out), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--run", action="append", default=[], help="also time this saved run")
    parser.add_argument("--crossover", action="store_true", help="add the synthetic table")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    default_cost = evaluator.SORT_COST
    rows = []
    results: list[dict[str, object]] = []
    for spec in args.data:
        name, _, path = spec.partition("=")
        ds = load_prepared(path)
        if name in TEMPORAL:
            days, behaviour = TEMPORAL[name]
            code = ds.behaviours.index(behaviour) + 1 if behaviour else None
            split = temporal_split(ds.events, test_days=days, behaviour=code)
            exclude = False
        else:
            split = leave_one_out(ds.events)
            exclude = True
        arrays = EventArrays.from_events(ds.events, n_users=ds.n_users)
        targets = split.test
        timings = {}
        for label, cost in (("default", default_cost), ("compare", 1e-9), ("sort", 1e9)):
            evaluator.SORT_COST = cost
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                result = evaluate(
                    RandomScores(ds.n_items), arrays, targets, n_items=ds.n_items,
                    exclude_seen=exclude, max_len=200, train=split.train, slices=(),
                )  # fmt: skip
                best = min(best, time.perf_counter() - t0)
            timings[label] = best
        evaluator.SORT_COST = default_cost
        rows.append([
            name, split.protocol.split("(")[0], f"{ds.n_items:,}", f"{result.n_queries:,}",
            f"{result.n_targets:,}", f"{result.n_targets / result.n_queries:.1f}",
            "excluded" if exclude else "kept", f"{timings['default']:.2f}",
            f"{timings['compare']:.2f}", f"{timings['sort']:.2f}",
        ])  # fmt: skip
        results.append({
            "kind": "random scorer", "dataset": name, "data": path,
            "split": split.protocol.split("(")[0], "items": ds.n_items,
            "queries": result.n_queries, "targets": result.n_targets,
            "history": "excluded" if exclude else "kept", "seconds_default": timings["default"],
            "seconds_compare": timings["compare"], "seconds_sort": timings["sort"],
        })  # fmt: skip
    header = ["dataset", "split", "items", "queries", "targets", "targets per query", "history",
              "seconds (default)", "seconds (compare)", "seconds (sort)"]  # fmt: skip
    table = markdown_table(header, rows)
    if args.run:
        timed = []
        for run in args.run:
            rec = Recommender.load(run)
            if rec.dataset is None:
                sys.exit(f"{run}: the prepared dataset recorded in the run was not found")
            ds = rec.dataset
            split = make_split(ds, rec.config)
            events = EventArrays.from_events(ds.events, n_users=ds.n_users)
            fastest = {"capped": float("inf"), "uncapped": float("inf")}
            for _ in range(args.repeat):  # interleaved: both see the same machine
                for label, cap in (("uncapped", None), ("capped", evaluator.EVAL_TOKENS)):
                    t0 = time.perf_counter()
                    result = evaluate(
                        rec, events, split.test, n_items=ds.n_items,
                        exclude_seen=rec.config.data.exclude_seen,
                        max_len=rec.config.model.max_len,
                        batch_size=rec.config.train.eval_batch_size, max_tokens=cap,
                        train=split.train, slices=(),
                    )  # fmt: skip
                    fastest[label] = min(fastest[label], time.perf_counter() - t0)
            cfg = rec.config.model
            timed.append([run, f"{cfg.name}/{cfg.item_repr}", f"{result.n_targets:,}",
                          f"{result['ndcg@10']:.4f}", f"{fastest['uncapped']:.2f}",
                          f"{fastest['capped']:.2f}"])  # fmt: skip
            results.append({
                "kind": "model", "run": run, "model": f"{cfg.name}/{cfg.item_repr}",
                "test_targets": result.n_targets, "ndcg@10": result["ndcg@10"],
                "seconds_eval_batch_size": fastest["uncapped"],
                "seconds_capped": fastest["capped"], "eval_tokens_cap": evaluator.EVAL_TOKENS,
            })  # fmt: skip
        header = ["run", "model", "test targets", "NDCG@10", "seconds, eval_batch_size",
                  f"seconds, also <= {evaluator.EVAL_TOKENS:,} steps (default)"]  # fmt: skip
        table += (
            "\n\nWith a model (`evaluate` of the run on its test split, forward pass included):\n\n"
        )
        table += markdown_table(header, timed)
    if args.crossover:
        synthetic, more = crossover(args.repeat)
        table += "\n\nSynthetic, one batch of 256 rows:\n\n" + synthetic
        results += more
        evaluator.SORT_COST = default_cost
    notes = (
        f"Best of {args.repeat} timings of `chronorec.evaluation.evaluate` with a random scorer "
        f"(ranking, history lookup and metrics; no model), {torch.get_num_threads()} torch "
        f"threads, SORT_COST = {default_cost:g}. 'compare' ranks every target against its whole "
        "row; 'sort' sorts each row once (used for target sets)."
    )
    print(table + "\n\n" + notes)
    record_results(
        "eval_speed",
        results,
        append=not args.no_append,
        repeat=args.repeat,
        threads=torch.get_num_threads(),
        sort_cost=default_cost,
    )


if __name__ == "__main__":
    main()
