"""Training a learned blend (:func:`fit_learned`): LightGBM on the validation split's candidates
and on earlier validation windows, reported out of fold."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from chronorec.blend.learned import (
    LINEAR,
    OBJECTIVES,
    PARAMS,
    WINDOWS,
    LearnedBlend,
    candidate_features,
    feature_names,
    with_linear,
)
from chronorec.data.sequences import HistoryBatch
from chronorec.errors import ConfigError

log = logging.getLogger(__name__)


def fit_learned(
    ens: Any,
    names: Sequence[str],
    *,
    which: str = "valid",
    candidates: int = 50,
    rounds: int = 200,
    seed: int = 0,
    threads: int | None = None,
    folds: int = 2,
    metric: str | None = None,
    objective: str = "auto",
    windows: int = WINDOWS,
) -> tuple[LearnedBlend, dict[str, Any]]:
    """Train a learned blend of ``ens``'s runs and the baselines ``names`` on the ``which``
    split's targets (the validation split: report on test only). Also returns, when ``folds``
    > 1, ``metric`` on ``which`` out of fold (each user's queries ranked by a model trained on the
    other folds' users) next to the runs alone, an honest figure to compare blends by.

    ``windows`` > 1 adds the targets of ``windows - 1`` earlier validation windows
    (:meth:`Ensemble.earlier`: each user's earlier events under leave-one-out, earlier months
    under a temporal split), each with baselines and item statistics fitted on the events before
    it. The runs were trained on those targets, so there their features (and the linear blend's,
    which holds them) are missing, as LightGBM knows them; the trees learn the baselines', the
    history's and the items' features from every window.

    ``objective``: one of :data:`OBJECTIVES`, or "auto": each of them out of fold, the better
    one kept (lambdarank without folds). Lambdarank won on Amazon Scientific (one target per
    history), binary on Online Retail (a month's basket per history), BENCHMARKS.md."""
    import lightgbm as lgb

    if not names:
        raise ConfigError("a learned blend needs at least one baseline (--blend NAMES)")
    if objective not in OBJECTIVES + ("auto",):
        raise ConfigError(f"objective must be one of {OBJECTIVES} or 'auto', not {objective!r}")
    if windows < 1 or (windows > 1 and which != "valid"):
        raise ConfigError("windows must be >= 1, and more than 1 only on the valid split")
    metric = metric or ens.config.train.select_metric
    terms = ("runs", *names, LINEAR)
    weights = {n: w for n, w in ens.tune(names, which=which, metric=metric).items() if w > 0}
    linear = ens._evaluate(ens, which)[metric]  # tuned on it: optimistic
    collect = _Collect(ens, terms, weights, candidates)
    alone = ens._evaluate(collect, which)
    data = [collect.rows(ens.targets(which))]
    for back in range(1, windows):
        view = ens.earlier(back)
        if view.targets("valid").height == 0:
            log.warning("no targets %d validation windows back: %d windows used", back, back)
            break
        earlier = _Collect(view, terms, weights, candidates, in_sample=True)
        view._evaluate(earlier, "valid")
        data.append(earlier.rows(view.targets("valid")))
    users = np.concatenate([d[0] for d in data])
    window = np.repeat(np.arange(len(data)), [d[0].size for d in data])
    X = np.concatenate([d[1] for d in data])
    labels = np.concatenate([d[2] for d in data])
    first = data[0][0].size  # the rows of the ``which`` split itself
    if labels[:first].sum() == 0:
        raise ConfigError(f"no {which} target is among the candidates: nothing to learn from")
    n_threads = threads or torch.get_num_threads()
    cols = feature_names(terms, items=True)
    if objective == "auto":  # each one out of fold, the better one kept
        tried = OBJECTIVES if folds > 1 else OBJECTIVES[:1]
    else:
        tried = (objective,)

    def fit(mask: np.ndarray, objective: str) -> Any:
        params = {**PARAMS, "objective": objective, "seed": seed, "num_threads": n_threads}
        group = None
        if objective != "binary":  # rows of a query are contiguous: one per user and window
            u, w = users[mask], window[mask]
            starts = np.r_[True, (u[1:] != u[:-1]) | (w[1:] != w[:-1])]
            group = np.diff(np.flatnonzero(np.r_[starts, True]))
        dataset = lgb.Dataset(
            X[mask], labels[mask], feature_name=cols, group=group, free_raw_data=True
        )
        return lgb.train(params, dataset, num_boost_round=rounds)

    report: dict[str, Any] = {
        "candidates_per_query": first / max(1, np.unique(data[0][0]).size),
        "targets_covered": float(labels[:first].sum() / data[0][3]),
        "windows": len(data),
        "training rows": int(users.size),
        f"{which} {metric}, runs alone": float(alone[metric]),
        f"{which} {metric}, linear blend (tuned on it)": float(linear),
    }
    best, best_value = tried[0], float("-inf")
    for name in tried if folds > 1 else ():
        fold = users % folds  # a user's rows in every window go to the same fold
        blends = [
            LearnedBlend(fit(fold != f, name), terms, weights, candidates, n_threads)
            for f in range(folds)
        ]
        value = float(ens._evaluate(_OutOfFold(ens, blends), which)[metric])
        report[f"{which} {metric}, learned blend ({name}) out of fold"] = value
        if value > best_value:
            best, best_value = name, value
    report["objective"] = best
    full = fit(np.ones(users.size, dtype=bool), best)
    learned = LearnedBlend(full, terms, weights, candidates, n_threads)
    report["features by gain"] = learned.importance()
    ens.learned = learned
    log.info("learned blend: %s", report)
    return learned, report


class _Collect:
    """A scorer for :meth:`Ensemble._evaluate` that keeps each history's candidates and their
    features (:func:`candidate_features`). ``in_sample``: the runs were trained on these
    targets — they are not scored, their features and the linear blend's are missing (NaN), and
    their candidates are those of the baselines' mean."""

    def __init__(
        self,
        ens: Any,
        terms: Sequence[str],
        weights: Mapping[str, float],
        candidates: int,
        in_sample: bool = False,
    ) -> None:
        self.ens, self.terms, self.weights, self.candidates = ens, terms, weights, candidates
        self.in_sample = in_sample
        self.got: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        names = feature_names(terms)
        self.runs_columns = [
            names.index(f"{kind}_{t}") for kind in ("z", "rank") for t in ("runs", LINEAR)
        ]

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        if self.in_sample:
            parts = self.ens.baseline_parts(batch, users, every=True)
            parts["runs"] = torch.stack(list(parts.values())).mean(0)
        else:
            parts = self.ens.parts(batch, users, every=True)
        runs = parts["runs"]
        parts = with_linear(parts, self.weights)
        stats = self.ens.item_stats()
        b, v, X = candidate_features(parts, self.terms, batch, self.candidates, item_stats=stats)
        if self.in_sample:
            X[:, self.runs_columns] = np.nan
        self.got.append((np.asarray(users)[b], v, X))
        return runs

    def rows(self, targets: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``(users, X, labels, n_targets)``: label 1 where the candidate is one of the
        history's ``targets``."""
        users = np.concatenate([g[0] for g in self.got])
        items = np.concatenate([g[1] for g in self.got])
        X = np.concatenate([g[2] for g in self.got])
        wanted = targets.select(pl.col("user").cast(pl.Int64), pl.col("item").cast(pl.Int64))
        wanted = wanted.unique()
        labels = (
            pl.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64)})
            .join(wanted.with_columns(pl.lit(1).alias("y")), on=["user", "item"], how="left")["y"]
            .fill_null(0)
            .to_numpy()
        )  # a left join keeps the left frame's order
        return users, X, labels, wanted.height


class _OutOfFold:
    """A scorer that ranks user ``u``'s histories with ``blends[u % len(blends)]``, the blend
    trained without that fold's users."""

    def __init__(self, ens: Any, blends: list[LearnedBlend]) -> None:
        self.ens = ens
        self.blends = blends

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        parts = self.ens.parts(batch, users, every=True)
        out = torch.empty_like(parts["runs"])
        fold = np.asarray(users) % len(self.blends)
        for f, blend in enumerate(self.blends):
            rows = np.flatnonzero(fold == f)
            if rows.size:
                index = torch.as_tensor(rows)
                sub = {t: z[index] for t, z in parts.items()}
                out[index] = blend.scores(sub, _rows(batch, rows), self.ens.item_stats())
        return out


def _rows(batch: HistoryBatch, rows: np.ndarray) -> HistoryBatch:
    return HistoryBatch(
        items=batch.items[rows],
        behaviours=batch.behaviours[rows],
        timestamps=batch.timestamps[rows],
        lengths=batch.lengths[rows],
    )
