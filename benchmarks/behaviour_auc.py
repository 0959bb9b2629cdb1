"""Will this user buy this item? ROC AUC of a run's pointwise behaviour head,
``P(behaviour = b | history, item)`` (``model.behaviour_head``), on the targets of its split,
next to feature baselines scored on the same targets.

A target is an event of the split (the user, the item it was on, its behaviour); the question is
whether its behaviour is ``b`` (default: the log's last behaviour, e.g. "buy"), given the user's
history before it and the item. Baselines, each one feature or a logistic regression over all of
them (fitted on the valid split's targets, scored on ``--split``):
- item rate: the share of the item's events before the split that have behaviour b (smoothed
  towards the log's overall share);
- user rate: the same share over the user's events;
- the user's own earlier events on this item, per behaviour (log counts): a cart before a
  purchase is the classic signal.

With ``--rerank`` also the ranking question the service answers with ``?behaviour=buy``: each
run's next-``b`` targets of the split (Recall@20, NDCG@10, full ranking, history kept) ranked by
the model's scores alone and by score + log P(b | history, item) over its top 100, as the service
re-ranks them.

Usage:
  python benchmarks/behaviour_auc.py RUN [RUN ...] [--data DIR] [--split test] [--behaviour buy]
      [--rerank] [--no-append]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.data.dataset import PreparedDataset  # noqa: E402
from chronorec.data.sequences import HistoryBatch  # noqa: E402
from chronorec.data.splits import Split  # noqa: E402
from chronorec.evaluation import evaluate  # noqa: E402
from chronorec.recommender import Recommender, _roc_auc, make_split  # noqa: E402

SMOOTHING = 10.0  # pseudo-events at the overall share in the item and user rates
RERANK = 100  # candidates the service re-ranks by behaviour (at k <= 20)
RANK_METRICS = ("recall@20", "ndcg@10")


class Reranked:
    """A run's scores with its top ``RERANK`` items re-scored by + log P(b | history, item) and
    every other item below them (as the service's ``?behaviour=`` list)."""

    def __init__(self, rec: Recommender, b: int) -> None:
        self.rec, self.b = rec, b

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        scores = self.rec.score(batch, users)  # (B, V + 1), column 0 -inf
        top = scores.topk(RERANK, dim=1).indices  # (B, RERANK)
        p = self.rec.behaviour_probabilities(batch, top.numpy())[:, :, self.b - 1]
        out = scores - 1e6  # below every candidate, in the same order
        out.scatter_(1, top, scores.gather(1, top) + torch.from_numpy(np.log(p)).float())
        return out


def _rate(known: pl.DataFrame, key: str, b: int, prior: float) -> pl.DataFrame:
    return known.group_by(key).agg(
        ((pl.col("behaviour") == b).sum() + SMOOTHING * prior).truediv(pl.len() + SMOOTHING)
        .alias(f"{key}_rate")
    )  # fmt: skip


def features(ds: PreparedDataset, split: Split, which: str, b: int) -> tuple[np.ndarray, ...]:
    """(labels, feature matrix, feature names) for the targets of ``which``: rates from the
    events known before it, the user's earlier events on the target item from the history the
    model sees (positions before the target's)."""
    kinds = range(1, len(ds.behaviours) + 1)
    targets = split.targets(which).with_row_index("row")  # type: ignore[arg-type]
    known = split.known(which)  # type: ignore[arg-type]
    prior = float((known["behaviour"] == b).mean())  # type: ignore[arg-type]
    x = (
        targets.join(_rate(known, "item", b, prior), on="item", how="left")
        .join(_rate(known, "user", b, prior), on="user", how="left")
        .with_columns(pl.col("item_rate", "user_rate").fill_null(prior))
    )
    earlier = (
        targets.select("row", "user", "item", "history_len")
        .join(ds.events.select("user", "item", "position", "behaviour"), on=["user", "item"])
        .filter(pl.col("position") < pl.col("history_len"))
        .group_by("row")
        .agg([(pl.col("behaviour") == k).sum().alias(f"n{k}") for k in kinds])
    )  # fmt: skip
    counts = [f"n{k}" for k in kinds]
    x = x.join(earlier, on="row", how="left").with_columns(pl.col(counts).fill_null(0)).sort("row")
    names = ["item rate", "user rate"] + [
        f"earlier {ds.behaviours[k - 1]} on the item" for k in kinds
    ]
    cols = [np.log(x["item_rate"].to_numpy()), np.log(x["user_rate"].to_numpy())]
    cols += [np.log1p(x[c].to_numpy().astype(np.float64)) for c in counts]
    labels = x["behaviour"].to_numpy() == b
    return labels, np.stack(cols, axis=1), names  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="runs trained with model.behaviour_head=true")
    parser.add_argument("--data", default=None, help="prepared dataset (default: the runs')")
    parser.add_argument("--split", choices=["valid", "test"], default="test")
    parser.add_argument("--behaviour", help="behaviour name (default: the log's last)")
    parser.add_argument("--rerank", action="store_true", help="also rank next-b targets")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression

    first = Recommender.load(args.runs[0], dataset=args.data)
    if first.dataset is None:
        sys.exit(f"{args.runs[0]}: its prepared dataset was not found; pass --data DIR")
    ds = first.dataset
    name = args.behaviour or ds.behaviours[-1]
    if name not in ds.behaviours:
        sys.exit(f"--behaviour {name!r}: the log has {', '.join(ds.behaviours)}")
    b = ds.behaviours.index(name) + 1
    split = make_split(ds, first.config)
    labels, x, names = features(ds, split, args.split, b)
    n_pos = int(labels.sum())
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    recs = [first] + [Recommender.load(run, dataset=ds) for run in args.runs[1:]]
    for run, rec in zip(args.runs, recs, strict=True):
        if rec.model is None or rec.model.behaviour_head is None:
            sys.exit(f"{run}: trained without model.behaviour_head; nothing to evaluate")
        if rec.config.data != first.config.data:
            sys.exit(f"{run}: another split than {args.runs[0]}")
        auc = rec.behaviour_auc(args.split, b)
        rows.append([f"{run} (behaviour head)", f"{auc:.4f}"])
        results.append({"kind": "auc", "scorer": "behaviour head", "run": run, "auc": auc})
    for j, feature in enumerate(names):
        auc = _roc_auc(x[:, j], labels)
        rows.append([feature, f"{auc:.4f}"])
        results.append({"kind": "auc", "scorer": feature, "auc": auc})
    fit_labels, fit_x, _ = features(ds, split, "valid", b)
    fitted = LogisticRegression(max_iter=1000).fit(fit_x, fit_labels)
    auc = _roc_auc(fitted.decision_function(x), labels)
    rows.append(["logistic regression on the features above (fitted on valid)", f"{auc:.4f}"])
    results.append({"kind": "auc", "scorer": "logistic regression (fitted on valid)", "auc": auc})
    table = markdown_table(["scorer", f"AUC ({name} vs other behaviours)"], rows)
    notes = (
        f"{labels.size:,} targets of the {args.split} split, {n_pos:,} of them {name} "
        f"({n_pos / max(labels.size, 1):.1%}); the logistic regression was fitted on the "
        f"{fit_labels.size:,} valid targets ({int(fit_labels.sum()):,} {name})."
    )
    if args.rerank:
        ranked = []
        targets = split.targets(args.split).filter(pl.col("behaviour") == b)  # type: ignore[arg-type]
        for run, rec in zip(args.runs, recs, strict=True):
            for label, scorer in (("scores", rec), (f"scores + log P({name})", Reranked(rec, b))):
                with rec.at(args.split):
                    got = evaluate(
                        scorer, ds, targets, n_items=ds.n_items, exclude_seen=False,
                        max_len=rec.config.model.max_len, slices=(),
                    )  # fmt: skip
                ranked.append([run, label] + [f"{got[m]:.4f}" for m in RANK_METRICS])
                results.append({"kind": "ranking", "run": run, "ranked by": label,
                                **{m: got[m] for m in RANK_METRICS}})  # fmt: skip
        table += "\n\n" + markdown_table(["run", "ranked by", *RANK_METRICS], ranked)
        notes += (
            f" Ranking: the {targets.height:,} {name} targets of the {args.split} split "
            f"({targets['user'].n_unique():,} users), full ranking, history kept; the re-rank "
            f"re-scores each run's top {RERANK}."
        )
    print(table + "\n\n" + notes)
    record_results(
        "behaviour_auc",
        results,
        append=not args.no_append,
        split=args.split,
        behaviour=name,
        targets=int(labels.size),
        positives=n_pos,
    )


if __name__ == "__main__":
    main()
