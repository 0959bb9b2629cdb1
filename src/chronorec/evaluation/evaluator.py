"""Full-ranking evaluation: every target is ranked against the whole catalogue, never a sample.

The protocol is spelled out in the arguments of :func:`evaluate` and repeated in its result:

* **Ranking** — full: a target's rank is ``1 +`` the number of real items (``1..n_items``) that
  score strictly higher, plus tied items according to ``ties``:

  - ``"pessimistic"`` (default): every other item with the same score counts as ranked above the
    target, so a constant scorer ranks every target last — ties never flatter a model;
  - ``"index"``: tied items with a lower item index rank above it (what a stable descending sort
    returns).

  Column 0 (padding) is never ranked.
* **History exclusion** (``exclude_seen``, default ``False``): when ``True`` every item in the
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
from chronorec.evaluation.metrics import DEFAULT_KS, METRIC_NAMES, METRICS, compute_metrics
from chronorec.progress import bars

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
    exclude_seen: bool
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
            exclude_seen=self.exclude_seen,
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


def _expand(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[i], starts[i] + lens[i])``: (owner i, index) of every element."""
    owner = np.repeat(np.arange(lens.size), lens)
    index = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(owner.size)
    return owner, index


def _history_keys(
    arrays: EventArrays, users: np.ndarray, history_lens: np.ndarray, n_cols: int
) -> np.ndarray:
    """Sorted distinct ``row * n_cols + item`` of every item in each query's *full* history."""
    rows, index = _expand(arrays.offsets[users], history_lens.astype(np.int64))
    keys = np.sort(rows * n_cols + arrays.items[index])  # sort + diff beats np.unique's hashing
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys


def _as_scores(raw: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    scores = torch.as_tensor(raw)
    if tuple(scores.shape) != shape:
        raise ValueError(
            f"scorer returned scores of shape {tuple(scores.shape)}, expected {shape} "
            "(batch, n_items + 1)"
        )
    scores = scores.detach().cpu().contiguous()  # (B, n_items + 1); copies only expanded views
    if not scores.is_floating_point():
        scores = scores.double()
    # max propagates NaN: one fast pass over the whole (contiguous) tensor, no temporary.
    if torch.isnan(scores.max()) and torch.isnan(scores[:, 1:]).any():
        raise ValueError("scorer returned NaN scores")
    return scores


def _above(
    candidate: torch.Tensor,
    cand_item: torch.Tensor,
    target: torch.Tensor,
    item: torch.Tensor,
    ties: Ties,
) -> torch.Tensor:
    """Whether each candidate ranks above its target (broadcasting), given the tie rule."""
    if ties == "pessimistic":
        return candidate >= target
    return (candidate > target) | ((candidate == target) & (cand_item < item))


# Ranking R targets by comparing each with its whole row costs R N; sorting the B rows once
# costs B N log2 N with a larger constant: compare while R <= B log2(N) / SORT_COST. Measured
# (benchmarks/eval_speed.py --crossover): comparing wins up to ~3.8 log2(N) targets per row.
SORT_COST = 0.3
COMPARE_CHUNK = 1 << 22  # scores compared at once (R_chunk x N)


def _rank_batch(
    scores: torch.Tensor,  # (B, n_items + 1)
    local_query: np.ndarray,  # (R,) row of `scores` of each target, non-decreasing
    items: np.ndarray,  # (R,)
    history: np.ndarray,  # sorted row * (n_items + 1) + item of the queries' history items
    exclude_seen: bool,
    ties: Ties,
) -> tuple[np.ndarray, np.ndarray]:
    """(R,) 1-based ranks among items 1..n_items, and (R,) whether the target is in the history.

    Few targets per row (leave-one-out: one): compare each target with its row, O(R N). Many
    (target sets): sort each row once and look the targets up, O(B N log N + R log N)."""
    b, n_cols = scores.shape
    n_items = n_cols - 1
    key = local_query * n_cols + items
    if history.size:
        in_history = history[np.minimum(np.searchsorted(history, key), history.size - 1)] == key
    else:
        in_history = np.zeros(key.size, dtype=bool)
    h_rows = history // n_cols
    h_counts = np.bincount(h_rows, minlength=b)  # (B,) distinct history items per row
    h_starts = np.cumsum(h_counts) - h_counts
    rows_t, items_t = torch.from_numpy(local_query), torch.from_numpy(items)
    target = scores[rows_t, items_t]  # (R,)

    if local_query.size <= b * max(1.0, math.log2(max(n_items, 2)) / SORT_COST):
        one_each = local_query.size == b and np.array_equal(local_query, np.arange(b))
        columns = torch.arange(1, n_cols)[None, :]  # (1, N)
        ranks = np.empty(local_query.size, dtype=np.int64)
        step = max(1, COMPARE_CHUNK // n_items)
        for s in range(0, local_query.size, step):
            part = slice(s, s + step)
            rows = scores[part, 1:] if one_each else scores[rows_t[part], 1:]  # (r, N)
            above = _above(rows, columns, target[part, None], items_t[part, None], ties)
            ranks[part] = above.sum(1, dtype=torch.int32).numpy()
        ranks += 0 if ties == "pessimistic" else 1  # ">=" already counted the target itself
        if exclude_seen:  # subtract the few history items that were counted above the target
            owner, index = _expand(h_starts[local_query], h_counts[local_query])  # (H,)
            h_items = torch.from_numpy(history[index] % n_cols)
            h_scores = scores.view(-1)[torch.from_numpy(history[index])]
            owner_t = torch.from_numpy(owner)
            counted = _above(h_scores, h_items, target[owner_t], items_t[owner_t], ties)
            ranks -= np.bincount(owner, weights=counted.numpy(), minlength=local_query.size).astype(
                np.int64
            )
    else:
        real = scores[:, 1:].clone()  # (B, N)
        if exclude_seen:
            # History items go to -inf, below every target except one scored -inf (fixed below).
            real.view(-1)[torch.from_numpy(history - h_rows - 1)] = -math.inf
        if ties == "pessimistic":
            ascending = torch.sort(real, dim=1).values  # (B, N)
            slot = np.arange(local_query.size) - np.searchsorted(local_query, local_query)
            values = torch.full((b, int(slot.max()) + 1), math.inf, dtype=real.dtype)  # (B, M)
            slot_t = torch.from_numpy(slot)
            values[rows_t, slot_t] = target
            below = torch.searchsorted(ascending, values)[rows_t, slot_t]  # (R,) items < target
            ranks = (n_items - below).numpy().astype(np.int64)  # items >= target, itself included
        else:
            order = torch.sort(real, dim=1, descending=True, stable=True).indices  # (B, N)
            position = torch.empty_like(order)
            position.scatter_(1, order, torch.arange(n_items).expand(b, -1))
            ranks = position[rows_t, items_t - 1].numpy().astype(np.int64) + 1
        if exclude_seen:
            # A target scored -inf itself ties with the -inf history items: take those back out.
            tied = (target == -math.inf).numpy() & ~in_history
            if tied.any():
                if ties == "pessimistic":
                    ranks -= np.where(tied, h_counts[local_query], 0)
                else:
                    before = np.searchsorted(history, key) - h_starts[local_query]
                    ranks -= np.where(tied, before, 0)
    if exclude_seen:
        ranks = np.where(in_history, n_items, ranks)  # a masked repeat target ranks last
    return ranks, in_history


def _dedupe(query: np.ndarray, items: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The subset of ``rows`` keeping the first row of each (query, item) pair."""
    key = query[rows] * (int(items.max(initial=0)) + 1) + items[rows]
    _, first = np.unique(key, return_index=True)
    return rows[np.sort(first)]


# History steps per evaluation batch: the ML-1M transformer (windows of 200) evaluates fastest
# with 128 histories a batch, while short windows (Amazon, ~10 events) gain from more histories
# than batch_size allows; the cap only bounds long windows (BENCHMARKS.md, eval_speed.py).
EVAL_TOKENS = 128 * 200


def _batch_starts(widths: np.ndarray, batch_size: int, max_tokens: int | None) -> np.ndarray:
    """Batch boundaries over queries sorted by window width (non-decreasing ``widths``): each
    batch takes as many queries as fit ``batch_size`` and, past the first, ``max_tokens`` (its
    count times its widest window). Returns ``[0, ..., len(widths)]``."""
    starts, s, n = [0], 0, widths.size
    while s < n:
        end = min(s + batch_size, n)
        if max_tokens is not None:
            cost = np.arange(1, end - s + 1) * widths[s:end]  # (end - s,) increasing
            end = s + max(1, int(np.searchsorted(cost, max_tokens, side="right")))
        starts.append(end)
        s = end
    return np.asarray(starts, dtype=np.int64)


def _queries(users: np.ndarray, history_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries are the distinct (user, history_len) pairs of the targets, in that order:
    (Q,) first target row of each query and (R,) query of each target row."""
    key = users * (int(history_lens.max(initial=0)) + 1) + history_lens
    _, first, query = np.unique(key, return_index=True, return_inverse=True)
    return first, query


def per_query(result: EvalResult, targets: pl.DataFrame, metric: str) -> np.ndarray:
    """(Q,) one metric (e.g. ``"ndcg@10"``) of every query of an evaluation of ``targets``,
    whose mean is ``result[metric]``: for paired comparisons of two scorers query by query."""
    name, _, k = metric.partition("@")
    if name not in METRICS or not k.isdigit():
        raise ValueError(f"unknown metric {metric!r}; e.g. ndcg@10, recall@20")
    users = targets["user"].to_numpy().astype(np.int64)
    items = targets["item"].to_numpy().astype(np.int64)
    _, query = _queries(users, targets["history_len"].to_numpy().astype(np.int64))
    rows, dense = _distinct_targets(query, items, np.arange(items.size))
    return METRICS[name](result.ranks[rows], int(k), dense)


def _distinct_targets(
    query: np.ndarray, items: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` without repeated (query, item) pairs, and their queries renumbered 0..Q-1."""
    rows = _dedupe(query, items, rows)
    _, dense = np.unique(query[rows], return_inverse=True)
    return rows, dense


def _metrics_on(
    rows: np.ndarray,
    query: np.ndarray,
    items: np.ndarray,
    ranks: np.ndarray,
    ks: Sequence[int],
    names: Sequence[str],
) -> dict[str, float]:
    rows, dense_query = _distinct_targets(query, items, rows)
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
    exclude_seen: bool = False,
    max_len: int = 200,
    batch_size: int = 512,
    max_tokens: int | None = EVAL_TOKENS,
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
    dataset's. ``max_len`` is the history window handed to the scorer. A batch holds at most
    ``batch_size`` histories and, past one history, at most ``max_tokens`` history steps
    (histories x window width; None: no cap).

    Cold vs warm slices need ``cold_items`` (item indices) or ``train`` (then cold = items never
    seen in it). See the module docstring for ``exclude_seen`` and ``ties``.
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
    q_first, query = _queries(t_users, t_hlens)
    q_users, q_hlens = t_users[q_first], t_hlens[q_first]
    # Batches of queries with similar window lengths, each window only as wide as its longest
    # history: a transformer's cost grows with the width, and left padding changes no score.
    slot = np.empty(q_users.size, dtype=np.int64)  # position of each query in batch order
    slot[np.argsort(np.minimum(q_hlens, max_len), kind="stable")] = np.arange(q_users.size)
    by_slot = np.argsort(slot)  # (Q,) query at each position
    order = np.argsort(slot[query], kind="stable")  # target rows grouped by query, in batch order
    widths = np.clip(q_hlens[by_slot], 1, max_len)  # (Q,) window of each query, non-decreasing
    starts = _batch_starts(widths, batch_size, max_tokens)  # (n_batches + 1,)
    bounds = np.searchsorted(slot[query][order], starts)

    ranks = np.zeros(t_items.size, dtype=np.int64)
    in_history = np.zeros(t_items.size, dtype=bool)
    n_batches = starts.size - 1
    for b in tqdm(range(n_batches), desc="evaluate", unit="batch", disable=not bars(progress)):
        q0, q1 = int(starts[b]), int(starts[b + 1])
        qs = by_slot[q0:q1]  # (B,) the queries of this batch
        users, hlens = q_users[qs], q_hlens[qs]
        rows = order[bounds[b] : bounds[b + 1]]  # (R,) target rows of these queries
        width = int(min(max_len, max(int(hlens.max()), 1)))
        batch = arrays.histories(users, hlens, width)
        with torch.no_grad():
            scores = _as_scores(scorer.score(batch, users), (q1 - q0, n_items + 1))
        history = _history_keys(arrays, users, hlens, n_items + 1)
        ranks[rows], in_history[rows] = _rank_batch(
            scores, slot[query[rows]] - q0, t_items[rows], history, exclude_seen, ties
        )

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
        exclude_seen=exclude_seen,
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
