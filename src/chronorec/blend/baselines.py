"""Non-learned baselines, each a :class:`~chronorec.evaluation.evaluator.Scorer`, blended into
the served ranking (:mod:`chronorec.blend`) and reported next to the models.

Every baseline is fitted on a split's ``train`` events only (``fit(train, n_items)`` returns the
baseline) and scores the whole catalogue from the history window it is given, so it runs through
the same evaluator as a model. Scores are built so that ties are broken on purpose (documented
per class) rather than left to the evaluator's pessimistic tie rule. The neighbour models
(user-KNN, ridge) are in :mod:`chronorec.blend.neighbours`.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
import torch

from chronorec.data.sequences import HistoryBatch


def _order_scores(*keys: np.ndarray) -> np.ndarray:
    """(N,) float scores giving the lexicographic order of ``keys`` (first key most significant,
    higher is better): the best item gets ``N``, the worst ``1``; no two items tie."""
    order = np.lexsort(tuple(reversed(keys)))  # ascending by keys[0], then keys[1], ...
    scores = np.empty(order.size, dtype=np.float64)
    scores[order] = np.arange(1, order.size + 1)
    return scores


def _popularity_order(events: pl.DataFrame, n_items: int) -> np.ndarray:
    """(n_items + 1,) popularity scores in ``[0, 1)``: count, then latest event, then lower index;
    column 0 gets the lowest."""
    items = events["item"].to_numpy().astype(np.int64)
    counts = np.bincount(items, minlength=n_items + 1).astype(np.float64)
    last = np.full(n_items + 1, -1, dtype=np.int64)
    np.maximum.at(last, items, np.arange(items.size))  # file order stands in for time
    if "timestamp" in events.columns and events["timestamp"].null_count() < events.height:
        ts = events["timestamp"].fill_null(-1).to_numpy().astype(np.int64)
        latest = np.full(n_items + 1, -1, dtype=np.int64)
        np.maximum.at(latest, items, ts)
    else:
        latest = last
    counts[0] = -1.0
    index = -np.arange(n_items + 1)
    return (_order_scores(counts, latest, index) - 1) / (n_items + 1)


class MostPopular:
    """Items by their number of training events: all of ``train`` or, with ``window_days``, only
    the last ``window_days`` before the latest training event (needs timestamps).

    Ties: global count (for the windowed variant), then the item's latest event, then lower index.
    Every user gets the same list.
    """

    def __init__(self, window_days: float | None = None, behaviour: int | None = None) -> None:
        self.window_days = window_days
        self.behaviour = behaviour
        self.name = "popular" if window_days is None else f"popular-{window_days:g}d"
        self.scores_: torch.Tensor | None = None

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        events = (
            train if self.behaviour is None else train.filter(pl.col("behaviour") == self.behaviour)
        )
        base = _popularity_order(events, n_items)  # [0, 1): tie-breaker
        if self.window_days is None:
            scores = base
        else:
            if "timestamp" not in events.columns or events["timestamp"].null_count() > 0:
                raise ValueError(
                    f"{self.name}: a time window needs a timestamp on every training event"
                )
            cut = int(events["timestamp"].max()) - int(self.window_days * 86400)  # type: ignore[arg-type]
            recent = events.filter(pl.col("timestamp") >= cut)["item"].to_numpy()
            scores = np.bincount(recent, minlength=n_items + 1) + base
        self.scores_ = torch.from_numpy(scores)
        return self

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        if self.scores_ is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        return self.scores_.expand(len(batch), -1)  # (B, n_items + 1), a view


class RepeatFrequency:
    """The user's own most frequent items in the history window (repeat behaviour).

    With ``half_life`` (``"repeat-recent"``) each event counts ``0.5 ** (visits back /
    half_life)`` instead of 1, visits counted back from the latest one as in :class:`UserKNN`
    (events sharing a timestamp are one visit; without timestamps every event is one): the
    personal term of TIFU-KNN, for items bought again at intervals. The default of 8 visits was
    picked on Online Retail's validation split (BENCHMARKS.md).

    Ties: the more recent last occurrence wins (``repeat-recent``: training popularity, as the
    items of one basket tie). Items outside the history follow, ordered by training popularity
    when ``fill_popular`` (otherwise they all tie at 0). ``behaviour`` counts
    only events of that behaviour (e.g. purchases). Give the evaluator a ``max_len`` that covers
    the histories you want counted.
    """

    def __init__(
        self,
        behaviour: int | None = None,
        fill_popular: bool = True,
        half_life: float | None = None,
        name: str | None = None,
    ) -> None:
        if half_life is not None and not half_life > 0:
            raise ValueError("repeat-recent: the half-life must be > 0")
        self.behaviour = behaviour
        self.fill_popular = fill_popular
        self.half_life = half_life
        self.name = name or ("repeat" if half_life is None else "repeat-recent")
        self.popularity_: torch.Tensor | None = None
        self.n_items: int | None = None
        self.by_visit_ = False

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        self.n_items = n_items
        self.popularity_ = torch.from_numpy(_popularity_order(train, n_items))
        self.by_visit_ = _timed(train)
        return self

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        if self.popularity_ is None or self.n_items is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        items = torch.from_numpy(batch.items)  # (B, L)
        b, length = items.shape
        keep = items > 0
        if self.behaviour is not None:
            keep &= torch.from_numpy(batch.behaviours) == self.behaviour
        ones = keep.double()
        scores = torch.zeros(b, self.n_items + 1, dtype=torch.float64)
        if self.half_life is not None:
            back = _steps_back(batch, self.by_visit_)
            w = torch.from_numpy(_decay(back, self.half_life)).double() * ones
            scores.scatter_add_(1, items, w)
            # Ties (equal weights, e.g. the items of one basket): training popularity, not the
            # order of lines within a basket (+0.008 Recall@20 on Online Retail).
            if self.fill_popular:
                scores = scores + 1e-9 * self.popularity_
        else:
            step = torch.arange(1, length + 1, dtype=torch.float64).expand(b, -1) * ones  # (B, L)
            latest = torch.zeros_like(scores).scatter_reduce_(1, items, step, reduce="amax")
            counts = scores.scatter_add_(1, items, ones)  # (B, n_items + 1)
            # Count first, recency breaks ties; both are integers, so the [0, 1) popularity only
            # orders items that are otherwise tied (those outside the history).
            scores = counts * (length + 1) + latest
            if self.fill_popular:
                scores = scores + self.popularity_
        scores[:, 0] = -1.0
        return scores


class ItemTransitions:
    """Counts of "item a is followed by item b" in training sequences; a history is scored by the
    row of its last item (first-order Markov chain).

    Ties (and histories whose last item has no successors): training popularity.
    """

    def __init__(self) -> None:
        self.name = "transitions"
        self.indptr_: np.ndarray | None = None
        self.successors_: np.ndarray | None = None
        self.counts_: np.ndarray | None = None
        self.popularity_: torch.Tensor | None = None

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        users = train["user"].to_numpy()
        items = train["item"].to_numpy().astype(np.int64)
        same_user = users[1:] == users[:-1]  # train is sorted by (user, position)
        pair = items[:-1][same_user] * (n_items + 1) + items[1:][same_user]
        keys, counts = np.unique(pair, return_counts=True)  # sorted by (a, b): a CSR matrix
        src = keys // (n_items + 1)
        self.indptr_ = np.searchsorted(src, np.arange(n_items + 2))  # (n_items + 2,)
        self.successors_ = keys % (n_items + 1)
        self.counts_ = counts.astype(np.float64)
        self.popularity_ = torch.from_numpy(_popularity_order(train, n_items))
        return self

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        if self.indptr_ is None or self.successors_ is None or self.counts_ is None:
            raise RuntimeError("transitions: call fit() before score()")
        assert self.popularity_ is not None
        last = batch.items[:, -1]  # (B,) left padding: the last column is the latest event
        starts, ends = self.indptr_[last], self.indptr_[last + 1]
        lens = ends - starts
        rows = np.repeat(np.arange(last.size), lens)
        idx = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(rows.size)
        scores = self.popularity_.expand(last.size, -1).clone()  # (B, n_items + 1)
        scores[torch.from_numpy(rows), torch.from_numpy(self.successors_[idx])] += torch.from_numpy(
            self.counts_[idx]
        )
        scores[:, 0] = -1.0
        return scores


class TextKNN:
    """Item-KNN on item text vectors: cosine similarity between each item and the mean of the
    normalised vectors of the last ``n_last`` history items.

    ``vectors`` is ``(n_items + 1, d)``, row ``i`` for item ``i`` (row 0 and items without text may
    be zero; they score 0). Needs no training events, so it scores cold items too. Ties: training
    popularity when fitted, else lower index (the evaluator's rule).
    """

    def __init__(self, vectors: np.ndarray | torch.Tensor, n_last: int = 1) -> None:
        v = torch.as_tensor(vectors, dtype=torch.float32)
        if v.ndim != 2:
            raise ValueError(f"text vectors must be (n_items + 1, d), got shape {tuple(v.shape)}")
        self.vectors = torch.nn.functional.normalize(v, dim=1)  # zero rows stay zero
        self.n_last = n_last
        self.name = "text-knn"
        self.popularity_: torch.Tensor | None = None

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        if n_items + 1 != self.vectors.shape[0]:
            raise ValueError(
                f"text vectors have {self.vectors.shape[0]} rows, "
                f"expected n_items + 1 = {n_items + 1}"
            )
        self.popularity_ = torch.from_numpy(_popularity_order(train, n_items))
        return self

    def extend(self, vectors: np.ndarray | torch.Tensor) -> None:
        """Append the text vectors ``(N, d)`` of new items (a service's posted items) as rows
        ``n_items + 1 …``: they score by their text at once, with the lowest popularity."""
        v = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
        self.vectors = torch.cat([self.vectors, v])  # one assignment: readers see old or new

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        vectors = self.vectors  # (V, d); may grow (extend) while this runs
        recent = torch.from_numpy(batch.items[:, -self.n_last :])  # (B, n_last)
        query = vectors[recent].sum(1)  # (B, d), padding rows are zero
        query = torch.nn.functional.normalize(query, dim=1)
        scores = (query @ vectors.T).double()  # (B, V) cosine in [-1, 1]
        if self.popularity_ is not None:  # below any real similarity difference
            n = min(scores.shape[1], self.popularity_.shape[0])  # appended rows: popularity 0
            scores[:, :n] += 1e-6 * self.popularity_[:n]
        scores[:, 0] = -2.0
        return scores


REPEAT_HALF_LIFE = 8.0  # "repeat-recent": visits (Online Retail validation, BENCHMARKS.md)


def _decay(steps_back: np.ndarray, half_life: float | None) -> np.ndarray:
    """Weight ``0.5 ** (steps_back / half_life)``; all ones without a half-life."""
    if half_life is None:
        return np.ones(steps_back.shape, dtype=np.float32)
    return np.exp2(-steps_back / half_life).astype(np.float32)


def _timed(events: pl.DataFrame) -> bool:
    """Whether steps back can be counted in visits: every event has a timestamp and they vary."""
    ts = events["timestamp"] if "timestamp" in events.columns else None
    return ts is not None and ts.null_count() == 0 and ts.n_unique() > 1


def _steps_back(batch: HistoryBatch, by_visit: bool) -> np.ndarray:
    """(B, L) steps back from each history's latest column: timestamp changes after each column
    when ``by_visit`` (a basket is one step), else columns (left padding: the last is 0)."""
    b, length = batch.items.shape
    if by_visit:
        ts = batch.timestamps
        change = np.zeros((b, length), dtype=np.int64)
        change[:, 1:] = ts[:, 1:] != ts[:, :-1]
        return (change[:, ::-1].cumsum(1)[:, ::-1] - change).astype(np.float64)
    return np.broadcast_to(np.arange(length - 1, -1, -1, dtype=np.float64), (b, length))
