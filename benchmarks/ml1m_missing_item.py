"""What the shared ML-1M file's missing items cost: exact histories with the same item removed.

The shared `ml-1m.txt` lacks the second-to-last item of 2,023 users (listed in
`users_missing_penultimate_item.txt`); their test histories end one item early. This scores a
trained ML-1M run's test targets for three groups: the users with exact histories as they
are, the users missing the item as they are, and the exact users with their second-to-last
item (the validation target) taken out of the test history — the defect made on purpose. When
the last row falls to the second, the gap between the groups is the missing item, not the users.

Usage:
  python benchmarks/ml1m_missing_item.py RUN [--datasets DIR] [--no-append]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_report, markdown_table  # noqa: E402

from chronorec.data.sequences import EventArrays  # noqa: E402
from chronorec.evaluation import evaluate  # noqa: E402
from chronorec.recommender import Recommender, make_split  # noqa: E402

METRICS = ("ndcg@10", "hr@10")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run trained on the prepared ML-1M (sasrec-txt) dataset")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    listed = args.datasets / "ml-1m" / "users_missing_penultimate_item.txt"
    if not listed.is_file():
        sys.exit(f"{listed}: not found (give the shared datasets folder with --datasets)")
    missing = [
        line.split()[0]
        for line in listed.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    rec = Recommender.load(args.run)
    ds = rec.dataset
    if ds is None:
        sys.exit(f"{args.run}: its dataset is gone")
    flags = ds.users.select("user", pl.col("user_id").cast(pl.Utf8).is_in(missing).alias("missing"))
    test = make_split(ds, rec.config).test.join(flags, on="user")
    exact, short = test.filter(~pl.col("missing")), test.filter(pl.col("missing"))
    # the exact users' second-to-last events out, their later positions moved up by one
    last = exact.select("user", pl.col("history_len").alias("_hl"))
    events = ds.events.join(last, on="user", how="left")
    hl = pl.col("_hl")
    cut = (
        events.filter(hl.is_null() | (pl.col("position") != hl - 1))
        .with_columns(
            pl.when(hl.is_not_null() & (pl.col("position") >= hl))
            .then(pl.col("position") - 1)
            .otherwise(pl.col("position"))
            .alias("position")
        )
        .drop("_hl")
        .sort(["user", "position"])
    )
    rows = [
        ["exact histories", exact.height, *_score(rec, ds.events, exact)],
        ["second-to-last item missing (as shared)", short.height, *_score(rec, ds.events, short)],
        [
            "exact histories, second-to-last item removed",
            exact.height,
            *_score(rec, cut, exact.with_columns(pl.col("history_len") - 1)),
        ],
    ]
    table = markdown_table(["test users", "users", *(f"test {m}" for m in METRICS)], rows)
    print(table)
    if not args.no_append:
        append_report(
            "ML-1M: what the shared file's missing items cost (benchmarks/ml1m_missing_item.py)",
            table,
            f"run: {args.run} ({rec.config.model.name}, {rec.config.model.item_repr})",
        )


def _score(rec: Recommender, events: pl.DataFrame, targets: pl.DataFrame) -> list[str]:
    assert rec.dataset is not None
    cfg = rec.config
    result = evaluate(
        rec, EventArrays.from_events(events, n_users=rec.dataset.n_users),
        targets.drop("missing"), n_items=rec.dataset.n_items,
        exclude_history=cfg.data.exclude_history, max_len=cfg.model.max_len,
        batch_size=cfg.train.eval_batch_size, slices=(),
    )  # fmt: skip
    return [f"{float(result.metrics[m]):.4f}" for m in METRICS]


if __name__ == "__main__":
    main()
