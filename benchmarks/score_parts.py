"""Which term of a run's score ranks? Each run evaluated three ways on one split: the whole
score, the hidden state's scores alone, and the repeat term alone (ties among items with the
same bonus, and items without one, ordered by the hidden state's scores).

A model with ``model.repeat`` scores ``hidden · item + repeat bonus``; when the bonus alone ranks
better than the sum, the hidden state's scores add noise to the order of the history's items.

Usage:
  python benchmarks/score_parts.py RUN [RUN ...] [--data DIR] [--split test] [--no-append]

Prints the table; its rows are appended to ``benchmarks/results/score_parts.jsonl`` unless
``--no-append``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.data.sequences import HistoryBatch  # noqa: E402
from chronorec.evaluation import evaluate  # noqa: E402
from chronorec.recommender import Recommender, make_split  # noqa: E402

TIE_BREAK = 1e-6  # the hidden state's (clamped) scores under any difference of repeat bonus
METRICS = ("ndcg@10", "hr@10", "recall@10", "recall@20")


class Part:
    """One term of a run's score as a scorer for the evaluator."""

    def __init__(self, rec: Recommender, which: str) -> None:
        self.rec = rec
        self.which = which

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        parts = self.rec.score_parts(batch)
        hidden, repeat = parts["hidden"], parts["repeat"]
        if self.which == "whole":
            return hidden + repeat
        if self.which == "hidden":
            return hidden
        return repeat + TIE_BREAK * hidden.clamp(-1e3, 1e3)  # -inf column 0 stays -inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data", default=None, help="prepared dataset (default: the runs')")
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()

    rows = []
    results: list[dict[str, object]] = []
    for run in args.runs:
        rec = Recommender.load(run, dataset=args.data)
        if rec.dataset is None:
            sys.exit(f"{run}: its prepared dataset was not found; pass --data DIR")
        ds = rec.dataset
        cfg = rec.config
        targets = make_split(ds, cfg).targets(args.split)
        with rec.at(args.split):
            for which in ("whole", "hidden", "repeat"):
                result = evaluate(
                    Part(rec, which), ds, targets, n_items=ds.n_items,
                    exclude_seen=cfg.data.exclude_seen, max_len=cfg.model.max_len,
                    slices=(),
                )  # fmt: skip
                rows.append([run, which] + [f"{result[m]:.4f}" for m in METRICS])
                results.append({"run": run, "score": which, **{m: result[m] for m in METRICS}})
    table = markdown_table(["run", "score", *METRICS], rows)
    print(table)
    record_results("score_parts", results, append=not args.no_append, split=args.split)


if __name__ == "__main__":
    main()
