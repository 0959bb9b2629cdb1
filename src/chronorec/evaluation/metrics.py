"""Ranking metrics as pure functions of target ranks.

A *rank* is 1-based: rank 1 is the top of the list. A *query* is one recommendation request
(one user at one point in time). It has one target (leave-one-out) or a set of targets (a temporal
split: every item the user bought in the test window). Each function takes

* ``ranks`` — ``(N,)`` the rank of every target in its query's full ranked list (other targets of
  the same query count as ordinary items in that list), and
* ``query`` — ``(N,)`` the query index ``0..Q-1`` of every target, or ``None`` when every target is
  its own query,

and returns ``(Q,)`` per-query values; :func:`compute_metrics` averages them over queries. Targets
of one query must be distinct items (the evaluator removes duplicates first).

Definitions for a query with target set ``T`` and cut-off ``K``:

* ``hr@K``      1 if any target has rank ≤ K, else 0;
* ``recall@K``  ``|{t in T : rank_t ≤ K}| / |T|`` (equals ``hr@K`` for a single target);
* ``mrr@K``     ``1 / min_t rank_t`` if that rank ≤ K, else 0;
* ``ndcg@K``    ``sum_{t: rank_t ≤ K} 1 / log2(rank_t + 1)`` divided by the ideal
  ``sum_{i=1}^{min(|T|, K)} 1 / log2(i + 1)`` (for a single target: ``1 / log2(rank + 1)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50)
METRIC_NAMES: tuple[str, ...] = ("hr", "ndcg", "mrr", "recall")


def _prepare(ranks: np.ndarray, query: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < 1:
        raise ValueError(f"cut-off k must be >= 1, not {k}")
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be 1-D, got shape {ranks.shape}")
    if ranks.size and ranks.min() < 1:
        raise ValueError("ranks are 1-based: every rank must be >= 1")
    if query is None:
        return ranks, np.arange(ranks.size, dtype=np.int64)
    query = np.asarray(query, dtype=np.int64)
    if query.shape != ranks.shape:
        raise ValueError(f"query shape {query.shape} does not match ranks shape {ranks.shape}")
    return ranks, query


def _n_queries(query: np.ndarray) -> int:
    return int(query.max()) + 1 if query.size else 0


def hit_rate(ranks: np.ndarray, k: int, query: np.ndarray | None = None) -> np.ndarray:
    """(Q,) 1.0 where at least one target of the query is in the top ``k``."""
    ranks, query = _prepare(ranks, query, k)
    hits = np.bincount(query, weights=(ranks <= k), minlength=_n_queries(query))
    return (hits > 0).astype(np.float64)


def recall(ranks: np.ndarray, k: int, query: np.ndarray | None = None) -> np.ndarray:
    """(Q,) share of the query's targets that are in the top ``k``."""
    ranks, query = _prepare(ranks, query, k)
    q = _n_queries(query)
    hits = np.bincount(query, weights=(ranks <= k), minlength=q)
    sizes = np.bincount(query, minlength=q)
    return hits / np.maximum(sizes, 1)


def mrr(ranks: np.ndarray, k: int, query: np.ndarray | None = None) -> np.ndarray:
    """(Q,) reciprocal rank of the query's best-ranked target, 0 when it is below ``k``."""
    ranks, query = _prepare(ranks, query, k)
    best = np.full(_n_queries(query), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, query, ranks)
    return np.where(best <= k, 1.0 / best, 0.0)


def ndcg(ranks: np.ndarray, k: int, query: np.ndarray | None = None) -> np.ndarray:
    """(Q,) normalised discounted cumulative gain with binary relevance."""
    ranks, query = _prepare(ranks, query, k)
    q = _n_queries(query)
    gains = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
    dcg = np.bincount(query, weights=gains, minlength=q)
    sizes = np.minimum(np.bincount(query, minlength=q), k)  # (Q,) relevant items the top k can hold
    ideal_prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])  # (k+1,)
    return dcg / np.maximum(ideal_prefix[sizes], 1e-12)


METRICS: dict[str, Callable[[np.ndarray, int, np.ndarray | None], np.ndarray]] = {
    "hr": hit_rate,
    "ndcg": ndcg,
    "mrr": mrr,
    "recall": recall,
}


def compute_metrics(
    ranks: np.ndarray,
    query: np.ndarray | None = None,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    names: Iterable[str] = METRIC_NAMES,
) -> dict[str, float]:
    """Mean over queries of every metric at every cut-off, keyed ``"ndcg@10"``, ``"hr@10"``, ...

    With no targets every value is ``nan`` (there is nothing to average).
    """
    out: dict[str, float] = {}
    ks = tuple(ks)
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        for k in ks:
            values = METRICS[name](ranks, k, query)
            out[f"{name}@{k}"] = float(values.mean()) if values.size else float("nan")
    return out
