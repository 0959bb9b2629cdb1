"""Full-ranking evaluation: every target is ranked against the whole catalogue, never a sample.

The protocol is spelled out in the arguments of :func:`evaluate` and repeated in its result:

* **Ranking** — full: a target's rank is ``1 +`` the number of real items (``1..n_items``) that
  score strictly higher, plus tied items according to ``ties``:

  - ``"pessimistic"`` (default): every other item with the same score counts as ranked above the
    target, so a constant scorer ranks every target last — ties never flatter a model;
  - ``"index"``: tied items with a lower item index rank above it (what a stable descending sort
    returns).

  Column 0 (padding) is never ranked.
* **History exclusion** (``exclude_history``, default ``False``): when ``True`` every item in the
  query's *whole* history (all behaviours, all events before the target, not only the ``max_len``
  window given to the scorer) is removed from the ranking. A target that is itself in the history
  (a repeat) is then masked with it and ranks last (rank ``n_items``) — this is what makes
  exclusion wrong for repeat-heavy retail logs, so it is off by default and must be asked for
  (typical for ML-1M leave-one-out, where an item is rated once). ``EvalResult.repeat_share``
  reports how many targets were repeats either way.
* **Targets** — one row per target (``user, item, history_len`` and optionally ``behaviour``); rows
  sharing ``(user, history_len)`` form one query with a target set; a repeated item within a query
  counts once.
* **Slices** — the same metrics on subsets of the targets: cold vs warm target items,
  history-length buckets, target behaviour. Within a slice a query keeps only its targets that
  belong to the slice; queries with none are left out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from chronorec.data.dataset import PreparedDataset
from chronorec.data.sequences import EventArrays, HistoryBatch
from chronorec.evaluation.metrics import DEFAULT_KS, METRIC_NAMES, compute_metrics

log = logging.getLogger(__name__)

Ties = Literal["pessimistic", "index"]
SliceFamily = Literal["cold", "history", "behaviour"]
DEFAULT_SLICES: tuple[SliceFamily, ...] = ("cold", "history", "behaviour")
DEFAULT_HISTORY_BUCKETS: tuple[int, ...] = (5, 10, 20, 50, 100)


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores the whole catalogue for a batch of histories.

    ``score`` returns ``(B, n_items + 1)`` scores (a torch tensor or NumPy array); higher is
    better. Column 0 is padding and is ignored. ``users`` are the ``(B,)`` user indices, for
    scorers that keep per-user state.
    """

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor | np.ndarray: ...


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one evaluation run, with the protocol that produced them."""

    metrics: dict[str, float]  # "ndcg@10", "hr@10", "mrr@10", "recall@20", ...
    slices: dict[str, dict[str, float]]  # "cold", "warm", "history:5-9", "behaviour:buy", ...
    n_queries: int
    n_targets: int  # distinct (query, item) targets
    exclude_history: bool
    ties: str
    max_len: int
    repeat_share: float  # share of targets whose item is already in the query's history
    seconds: float
    ranks: np.ndarray = field(repr=False)  # (rows,) rank of each row of the targets frame

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def to_dict(self) -> dict[str, Any]:
        """One JSON-ready object: metrics at top level, then the protocol and the slices."""
        out: dict[str, Any] = dict(self.metrics)
        out.update(
            ranking="full",
            exclude_history=self.exclude_history,
            ties=self.ties,
            max_len=self.max_len,
            n_queries=self.n_queries,
            n_targets=self.n_targets,
            repeat_share=self.repeat_share,
            seconds=round(self.seconds, 3),
            slices=self.slices,
        )
        return out


def unseen_items(train: pl.DataFrame, n_items: int) -> np.ndarray:
    """Sorted indices of the items ``1..n_items`` that never occur in ``train``."""
    seen = np.zeros(n_items + 1, dtype=bool)
    seen[train["item"].to_numpy()] = True
    return np.flatnonzero(~seen[1:]) + 1


def _history_mask(
    arrays: EventArrays, users: np.ndarray, history_lens: np.ndarray, n_cols: int
) -> torch.Tensor:
    """(B, n_cols) True where the item occurs anywhere in the query's full history."""
    lens = history_lens.astype(np.int64)
    rows = np.repeat(np.arange(users.size), lens)  # (H,)
    starts = np.repeat(arrays.offsets[users] - (np.cumsum(lens) - lens), lens)  # (H,)
    cols = arrays.items[starts + np.arange(rows.size)]  # (H,) history items, in order
    mask = torch.zeros(users.size, n_cols, dtype=torch.bool)
    mask[torch.from_numpy(rows), torch.from_numpy(cols)] = True
    return mask


def _as_scores(raw: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    scores = torch.as_tensor(raw)
    if tuple(scores.shape) != shape:
        raise ValueError(
            f"scorer returned scores of shape {tuple(scores.shape)}, expected {shape} "
            "(batch, n_items + 1)"
        )
    if not scores.is_floating_point():
        scores = scores.double()
    if torch.isnan(scores).any():
        raise ValueError("scorer returned NaN scores")
    return scores.detach().cpu()


def _rank_batch(
    scores: torch.Tensor,  # (B, n_items + 1)
    local_query: torch.Tensor,  # (R,) row of `scores` of each target
    items: torch.Tensor,  # (R,)
    mask: torch.Tensor | None,  # (B, n_items + 1) history items to exclude
    ties: Ties,
) -> torch.Tensor:
    n_items = scores.shape[1] - 1
    real = scores[:, 1:]  # (B, N)
    if mask is not None:
        real = real.masked_fill(mask[:, 1:], -math.inf)
    target = real[local_query, items - 1]  # (R,)
    candidates = real[local_query]  # (R, N)
    if ties == "pessimistic":
        # Counting the target itself gives 1 + higher + other tied items.
        ranks = (candidates >= target[:, None]).sum(1)
    else:
        higher = (candidates > target[:, None]).sum(1)
        columns = torch.arange(1, n_items + 1)
        tied_before = ((candidates == target[:, None]) & (columns[None, :] < items[:, None])).sum(1)
        ranks = 1 + higher + tied_before
    if mask is not None:
        ranks = torch.where(mask[local_query, items], torch.full_like(ranks, n_items), ranks)
    return ranks


def _dedupe(query: np.ndarray, items: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The subset of ``rows`` keeping the first row of each (query, item) pair."""
    key = query[rows] * (int(items.max(initial=0)) + 1) + items[rows]
    _, first = np.unique(key, return_index=True)
    return rows[np.sort(first)]


def _metrics_on(
    rows: np.ndarray,
    query: np.ndarray,
    items: np.ndarray,
    ranks: np.ndarray,
    ks: Sequence[int],
    names: Sequence[str],
) -> dict[str, float]:
    rows = _dedupe(query, items, rows)
    _, dense_query = np.unique(query[rows], return_inverse=True)
    out = compute_metrics(ranks[rows], dense_query, ks=ks, names=names)
    out["n_queries"] = int(dense_query.max(initial=-1)) + 1
    out["n_targets"] = int(rows.size)
    return out


def _bucket_labels(edges: Sequence[int]) -> list[str]:
    labels = [f"history:<{edges[0]}"]
    labels += [f"history:{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f"history:>={edges[-1]}")
    return labels


def evaluate(
    scorer: Scorer,
    data: PreparedDataset | EventArrays,
    targets: pl.DataFrame,
    *,
    n_items: int | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    exclude_history: bool = False,
    max_len: int = 200,
    batch_size: int = 512,
    ties: Ties = "pessimistic",
    metrics: Iterable[str] = METRIC_NAMES,
    slices: Iterable[SliceFamily] = DEFAULT_SLICES,
    cold_items: np.ndarray | Iterable[int] | None = None,
    train: pl.DataFrame | None = None,
    history_buckets: Sequence[int] = DEFAULT_HISTORY_BUCKETS,
    behaviour_names: Sequence[str] | None = None,
    progress: bool = False,
) -> EvalResult:
    """Rank every target of ``targets`` against all ``n_items`` items and average the metrics.

    ``data`` supplies the histories: a :class:`PreparedDataset` (its full event log) or
    :class:`EventArrays` built from the *full* log — a split's ``train`` alone lacks the events
    between the training cut and a test target. ``n_items`` and ``behaviour_names`` default to the
    dataset's. ``max_len`` is the history window handed to the scorer.

    Cold vs warm slices need ``cold_items`` (item indices) or ``train`` (then cold = items never
    seen in it). See the module docstring for ``exclude_history`` and ``ties``.
    """
    started = time.perf_counter()
    if ties not in ("pessimistic", "index"):
        raise ValueError(f"ties must be 'pessimistic' or 'index', not {ties!r}")
    if isinstance(data, PreparedDataset):
        arrays = EventArrays.from_events(data.events, n_users=data.n_users)
        n_items = data.n_items if n_items is None else n_items
        behaviour_names = data.behaviours if behaviour_names is None else behaviour_names
    else:
        arrays = data
    if n_items is None:
        raise ValueError("n_items is required when data is EventArrays")
    missing = {"user", "item", "history_len"} - set(targets.columns)
    if missing:
        raise ValueError(f"targets lack column(s) {sorted(missing)}")
    ks, names, families = tuple(ks), tuple(metrics), tuple(slices)

    t_users = targets["user"].to_numpy().astype(np.int64)
    t_items = targets["item"].to_numpy().astype(np.int64)
    t_hlens = targets["history_len"].to_numpy().astype(np.int64)
    if t_items.size and (t_items.min() < 1 or t_items.max() > n_items):
        raise ValueError(f"target items must be in 1..{n_items}")
    # Queries are the distinct (user, history_len) pairs, in (user, history_len) order.
    q_key = t_users * (int(t_hlens.max(initial=0)) + 1) + t_hlens
    _, q_first, query = np.unique(q_key, return_index=True, return_inverse=True)
    q_users, q_hlens = t_users[q_first], t_hlens[q_first]
    order = np.argsort(query, kind="stable")  # target rows grouped by query
    bounds = np.searchsorted(query[order], np.arange(0, q_users.size + batch_size, batch_size))

    ranks = np.zeros(t_items.size, dtype=np.int64)
    in_history = np.zeros(t_items.size, dtype=bool)
    n_batches = math.ceil(q_users.size / batch_size)
    for b in tqdm(range(n_batches), desc="evaluate", unit="batch", disable=not progress):
        q0, q1 = b * batch_size, min((b + 1) * batch_size, q_users.size)
        users, hlens = q_users[q0:q1], q_hlens[q0:q1]
        rows = order[bounds[b] : bounds[b + 1]]  # (R,) target rows of these queries
        batch = arrays.histories(users, hlens, max_len)
        with torch.no_grad():
            scores = _as_scores(scorer.score(batch, users), (q1 - q0, n_items + 1))
        mask = _history_mask(arrays, users, hlens, n_items + 1)  # (B, n_items + 1)
        local = torch.from_numpy(query[rows] - q0)
        items = torch.from_numpy(t_items[rows])
        in_history[rows] = mask[local, items].numpy()
        batch_ranks = _rank_batch(scores, local, items, mask if exclude_history else None, ties)
        ranks[rows] = batch_ranks.numpy()

    all_rows = np.arange(t_items.size)
    overall = _metrics_on(all_rows, query, t_items, ranks, ks, names)
    n_q, n_t = int(overall.pop("n_queries")), int(overall.pop("n_targets"))
    kept = _dedupe(query, t_items, all_rows)
    repeat_share = float(in_history[kept].mean()) if kept.size else float("nan")

    subsets: dict[str, np.ndarray] = {}
    if "cold" in families and (cold_items is not None or train is not None):
        if cold_items is None:
            assert train is not None
            cold_items = unseen_items(train, n_items)
        is_cold = np.zeros(n_items + 1, dtype=bool)
        is_cold[np.fromiter(cold_items, dtype=np.int64)] = True
        subsets["cold"] = is_cold[t_items]
        subsets["warm"] = ~is_cold[t_items]
    if "history" in families and history_buckets:
        edges = sorted(history_buckets)
        bucket = np.digitize(t_hlens, edges)
        for i, label in enumerate(_bucket_labels(edges)):
            subsets[label] = bucket == i
    if "behaviour" in families and "behaviour" in targets.columns:
        t_beh = targets["behaviour"].to_numpy().astype(np.int64)
        values = np.unique(t_beh)
        if values.size > 1:
            for v in values:
                has_name = behaviour_names is not None and 1 <= v <= len(behaviour_names)
                name = behaviour_names[v - 1] if has_name else str(v)  # type: ignore[index]
                subsets[f"behaviour:{name.lower()}"] = t_beh == v
    slice_metrics = {
        name: _metrics_on(np.flatnonzero(sel), query, t_items, ranks, ks, names)
        for name, sel in subsets.items()
        if sel.any()
    }

    seconds = time.perf_counter() - started
    log.info("evaluated %d queries / %d targets in %.2fs", n_q, n_t, seconds)
    return EvalResult(
        metrics=overall,
        slices=slice_metrics,
        n_queries=n_q,
        n_targets=n_t,
        exclude_history=exclude_history,
        ties=ties,
        max_len=max_len,
        repeat_share=repeat_share,
        seconds=seconds,
        ranks=ranks,
    )


def evaluate_many(
    scorers: Mapping[str, Scorer],
    data: PreparedDataset | EventArrays,
    targets: pl.DataFrame,
    **options: Any,
) -> dict[str, EvalResult]:
    """:func:`evaluate` each scorer under the same options, for a side-by-side table."""
    if isinstance(data, PreparedDataset):
        options.setdefault("n_items", data.n_items)
        options.setdefault("behaviour_names", data.behaviours)
        data = EventArrays.from_events(data.events, n_users=data.n_users)
    return {name: evaluate(s, data, targets, **options) for name, s in scorers.items()}
