"""Probe: does a learned re-ranker over the blend's terms beat the linear blend?

For every query the candidates are the union of each term's top ``--candidates`` (the runs'
z-scores and every baseline's) plus the history's items. Each candidate gets features: every
term's z-score and rank, how often and how recently the history holds it, the history's length.
A gradient-boosted classifier (scikit-learn's HistGradientBoostingClassifier) is trained on the
validation split's queries (label: the candidate is a target) and ranks the test split's
candidates; items outside the candidates rank after them by the runs' scores. Reported next to
the runs alone and the linear blend with weights tuned on validation (``Ensemble.tune``).

Usage:
  python benchmarks/rerank_probe.py RUN [RUN ...] [--data DIR] [--blend NAMES] [--no-append]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_report, markdown_table  # noqa: E402

from chronorec.data.sequences import HistoryBatch  # noqa: E402
from chronorec.ensemble import Ensemble  # noqa: E402

METRICS = ("ndcg@10", "hr@10", "recall@10", "recall@20")


class Reranker:
    """A scorer for the evaluator: collects candidate features (``model`` None) or ranks the
    candidates with a fitted classifier."""

    def __init__(self, ens: Ensemble, names: list[str], n_cand: int, models=None) -> None:
        self.ens = ens
        self.names = names
        self.n_cand = n_cand
        self.models = models  # one per fold: user % len(models)
        self.rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # users, items, X
        self.item_stats: dict[str, tuple[torch.Tensor, float]] = {}

    def stats(self) -> tuple[torch.Tensor, float]:
        """Per item, the share of its users with it twice or more in the known events; and the
        known events' last timestamp (the cut)."""
        stage = self.ens._stage
        if stage not in self.item_stats:
            known = self.ens._get_split().known(stage)
            per = known.group_by("user", "item").agg(pl.len().alias("n"))
            item = per.group_by("item").agg(
                (pl.col("n") >= 2).mean().alias("rep"), pl.len().alias("users")
            )
            rep = torch.zeros(self.ens._n_rows)
            rep[torch.as_tensor(item["item"].to_numpy().astype(np.int64))] = torch.as_tensor(
                item["rep"].to_numpy(), dtype=torch.float32
            )
            cut = float(known["timestamp"].max() or 0) if "timestamp" in known.columns else 0.0
            self.item_stats[stage] = (rep, cut)
        return self.item_stats[stage]

    def features(self, batch: HistoryBatch, users: np.ndarray):
        parts = self.ens.parts(batch, users, every=True)
        terms = ["runs", *self.names]
        z = torch.stack([parts[t] for t in terms])  # (T, B, V)
        z[:, :, 0] = float("-inf")
        T, B, V = z.shape
        cand = torch.zeros(B, V, dtype=torch.bool)
        k = min(self.n_cand, V - 1)
        for t in range(T):
            cand.scatter_(1, z[t].topk(k, 1).indices, True)
        items = torch.as_tensor(batch.items)
        hist = torch.zeros(B, V)
        hist.scatter_add_(1, items, (items > 0).float())
        cand |= hist > 0
        cand[:, 0] = False
        # ranks of every item under each term (0 = best)
        order = z.argsort(2, descending=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(2, order, torch.arange(V).expand(T, B, V).contiguous())
        # events back to the item's last occurrence in the window (width if absent)
        L = items.shape[1]
        back = torch.full((B, V), float(L + 1))
        steps = (L - 1 - torch.arange(L)).float().expand(B, L).contiguous()
        back.scatter_reduce_(1, items, steps, reduce="amin")
        ts = torch.as_tensor(batch.timestamps).float()
        last_ts = ts.max(1).values
        age = torch.full((B, V), -1.0)
        age.scatter_reduce_(1, items, ts, reduce="amax", include_self=True)
        days = torch.where(age >= 0, (last_ts[:, None] - age) / 86_400, torch.tensor(-1.0))
        first = torch.full((B, V), float("inf"))
        first.scatter_reduce_(1, items, torch.where(items > 0, ts, float("inf")), reduce="amin")
        span = torch.where(hist > 1, (age - first) / 86_400 / (hist - 1).clamp(min=1), -1.0)
        due = torch.where(span > 0, days / span.clamp(min=1e-3), -1.0)
        rep, cut = self.stats()
        gap = ((cut - last_ts) / 86_400).clamp(min=0)
        ts_sorted = torch.as_tensor(batch.timestamps)
        visits = ((ts_sorted[:, 1:] != ts_sorted[:, :-1]) & (items[:, 1:] > 0)).sum(1).float() + 1
        b, v = cand.nonzero(as_tuple=True)
        lengths = torch.as_tensor(batch.lengths).float()
        distinct = (hist > 0).sum(1).float()
        X = torch.stack(
            [
                *(z[t, b, v] for t in range(T)),
                *(ranks[t, b, v].float().log1p() for t in range(T)),
                hist[b, v],
                back[b, v],
                days[b, v],
                lengths[b].log1p(),
                distinct[b] / lengths[b].clamp(min=1),
                span[b, v],
                due[b, v],
                rep[v],
                gap[b],
                visits[b].log1p(),
            ],
            1,
        )
        X = torch.nan_to_num(X, neginf=-50.0, posinf=50.0)
        return b.numpy(), v.numpy(), X.numpy(), parts["runs"]

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        b, v, X, runs = self.features(batch, users)
        if self.models is None:
            self.rows.append((np.asarray(users)[b], v, X))
            return runs
        out = runs.clamp(-50, 50) - 1000.0
        out[:, 0] = float("-inf")
        fold = np.asarray(users)[b] % len(self.models)
        p = np.zeros(b.size)
        for f, model in enumerate(self.models):
            if (fold == f).any():
                p[fold == f] = model.predict(X[fold == f])
        out[torch.as_tensor(b), torch.as_tensor(v)] = torch.as_tensor(p, dtype=out.dtype)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--blend", default="popular,popular-recent,repeat,repeat-recent,transitions,user-knn"
    )
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--objective", default="binary", help="binary | lambdarank")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--select", default="recall@20", help="the metric shown for validation")
    parser.add_argument("--skip-linear", action="store_true")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    import lightgbm as lgb

    names = [n for n in args.blend.split(",") if n]
    ens = Ensemble.load(args.runs, dataset=args.data)
    t0 = time.perf_counter()
    rows = []
    ens.blend({n: 0.0 for n in names})
    alone = ens.evaluate("test")
    rows.append(["runs alone", *(f"{alone[m]:.4f}" for m in METRICS)])
    if not args.skip_linear:
        weights = ens.tune(names, metric=args.select)
        linear = ens.evaluate("test")
        rows.append([f"linear blend {weights}", *(f"{linear[m]:.4f}" for m in METRICS)])
    ens.blend({n: 0.0 for n in names})
    collect = Reranker(ens, names, args.candidates)
    ens._evaluate(collect, "valid")
    users = np.concatenate([r[0] for r in collect.rows])
    items = np.concatenate([r[1] for r in collect.rows])
    X = np.concatenate([r[2] for r in collect.rows])
    targets = ens.targets("valid").select("user", "item").unique()
    hit = (
        pl.DataFrame({"user": users, "item": items})
        .with_row_index()
        .join(
            targets.with_columns(
                pl.col("user").cast(pl.Int64), pl.col("item").cast(pl.Int64), pl.lit(1).alias("y")
            ),
            on=["user", "item"],
            how="left",
        )
        .sort("index")["y"]
        .fill_null(0)
        .to_numpy()
    )
    covered = hit.sum() / targets.height
    order = np.lexsort((items, users))
    users, items, X, hit = users[order], items[order], X[order], hit[order]

    def fit(mask: np.ndarray) -> lgb.Booster:
        _, groups = np.unique(users[mask], return_counts=True)
        params = {
            "objective": args.objective,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": 0,
            "verbose": -1,
            "num_threads": 2,
        }
        data = lgb.Dataset(X[mask], hit[mask], group=groups if args.objective != "binary" else None)
        return lgb.train(params, data, num_boost_round=args.rounds)

    folds = users % 2
    cv = ens._evaluate(
        Reranker(ens, names, args.candidates, [fit(folds == 1), fit(folds == 0)]), "valid"
    )
    final = fit(np.ones(users.size, dtype=bool))
    learned = ens._evaluate(Reranker(ens, names, args.candidates, [final]), "test")
    label = (
        f"learned re-ranker, {args.objective}, {args.rounds} rounds, top-{args.candidates} "
        f"per term ({X.shape[0]:,} valid candidates, {covered:.1%} of valid targets); "
        f"valid 2-fold {args.select} {cv[args.select]:.4f}"
    )
    rows.append([label, *(f"{learned[m]:.4f}" for m in METRICS)])
    table = markdown_table(["scorer", *METRICS], rows)
    print(table)
    print(f"{time.perf_counter() - t0:.0f} s")
    if not args.no_append:
        append_report("rerank probe (test split, benchmarks/rerank_probe.py)", table)


if __name__ == "__main__":
    main()
