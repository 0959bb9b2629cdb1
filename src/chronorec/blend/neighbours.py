"""Neighbour baselines: users with similar recent items (:class:`UserKNN`) and a ridge
regression from a history's recent items to the next (:class:`SequentialRidge`)."""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
import torch
from scipy import sparse

from chronorec.blend.baselines import _decay, _popularity_order, _steps_back, _timed
from chronorec.data.sequences import HistoryBatch

SIMILARITY_ELEMENTS = 1 << 24  # user-KNN: history-user similarities held at once (64 MB)
FEW_HISTORIES = 4  # user-KNN scores this many histories or fewer one by one (service requests)


def _unit_rows(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay empty), float32."""
    norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())  # (rows,)
    return sparse.diags(1.0 / np.maximum(norm, 1e-12)).astype(np.float32) @ m


class UserKNN:
    """Users whose recent items overlap this user's recent items, and what else they have.

    A user is a vector over the catalogue: each event adds ``0.5 ** (steps back / half-life)``,
    then the vector is L2-normalised. Steps count back from the user's latest event in *visits*:
    events that share a timestamp (one basket, one invoice) are one step, so a half-life means
    the same on a shop log with baskets of thirty items as on a log of single views; a log
    without timestamps counts every event as a step. A history's score for item
    ``i`` is ``Σ_n sim(history, n) · user_n[i]`` over its ``k`` most similar training users
    (cosine; the user's own training row is left out). The query decays fast (``half_life``:
    the last few items decide who the neighbours are), the neighbours slowly
    (``neighbour_half_life``). Close to session-KNN with recency weights (V-SKNN) and to the
    neighbour term of TIFU-KNN. On Amazon Scientific it is the strongest single baseline
    (BENCHMARKS.md).

    Both matrices are sparse (nnz = training events); similarities are computed densely for a
    few histories at a time (:data:`SIMILARITY_ELEMENTS`), and up to :data:`FEW_HISTORIES`
    histories one by one straight from the CSR arrays (the same sums, 2-3x faster for a single
    service request; float32 rounding may settle a tie at the k-th neighbour the other way).
    Ties: training popularity.
    """

    def __init__(
        self, k: int = 500, half_life: float = 2.0, neighbour_half_life: float | None = 8.0
    ) -> None:
        slow = neighbour_half_life
        if k < 1 or half_life <= 0 or (slow is not None and slow <= 0):
            raise ValueError("user-knn: k >= 1 and positive half-lives")
        self.k = k
        self.half_life = half_life
        self.neighbour_half_life = neighbour_half_life
        self.name = "user-knn"
        self.users_: sparse.csr_matrix | None = None  # (n_users + 1, V), rows L2-normalised
        self.items_: sparse.csr_matrix | None = None  # its transpose (V, n_users + 1)
        self.popularity_: torch.Tensor | None = None
        self.by_visit_ = False  # steps are visits (timestamps), not events

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        users = train["user"].to_numpy().astype(np.int64)
        items = train["item"].to_numpy().astype(np.int64)
        n_rows = int(users.max()) + 1 if users.size else 1
        self.by_visit_ = _timed(train)
        # train is sorted by (user, position): steps back = the user's last step - this step
        new = np.ones(users.size, dtype=bool)
        if self.by_visit_:
            t = train["timestamp"].to_numpy()
            new[1:] = (users[1:] != users[:-1]) | (t[1:] != t[:-1])
        step = np.cumsum(new)
        last_step = np.zeros(n_rows, dtype=np.int64)
        np.maximum.at(last_step, users, step)
        back = (last_step[users] - step).astype(np.float64)
        w = _decay(back, self.neighbour_half_life)
        m = sparse.csr_matrix((w, (users, items)), shape=(n_rows, n_items + 1))  # sums repeats
        self.users_ = _unit_rows(m)
        self.items_ = self.users_.T.tocsr()  # (V, n_rows)
        self.popularity_ = torch.from_numpy(_popularity_order(train, n_items))
        return self

    def score(self, batch: HistoryBatch, users: np.ndarray | None) -> torch.Tensor:
        if self.users_ is None or self.items_ is None or self.popularity_ is None:
            raise RuntimeError("user-knn: call fit() before score()")
        b, length = batch.items.shape
        w = _decay(_steps_back(batch, self.by_visit_), self.half_life) * (batch.items > 0)
        if b <= FEW_HISTORIES:
            return torch.cat([self._score_one(batch.items[r], w[r], users, r) for r in range(b)])
        n_cols = self.popularity_.shape[0]
        rows = np.repeat(np.arange(b), length)
        query = sparse.csr_matrix(
            (w.reshape(-1), (rows, batch.items.reshape(-1))), shape=(b, n_cols)
        )  # (B, V), padding (column 0) has weight 0
        query = _unit_rows(query)
        n_users = self.items_.shape[1]
        k = min(self.k, n_users)
        own = None if users is None else np.asarray(users, dtype=np.int64)
        top = torch.empty(b, k)
        idx = torch.empty(b, k, dtype=torch.long)
        step = max(1, SIMILARITY_ELEMENTS // n_users)  # rows of the dense (B, n_users) at once
        for s in range(0, b, step):
            sim = torch.from_numpy((query[s : s + step] @ self.items_).toarray())  # cosine
            if own is not None:  # not one's own training row
                mine = torch.from_numpy(own[s : s + step])
                inside = mine < n_users
                sim[torch.arange(sim.shape[0])[inside], mine[inside]] = 0.0
            top[s : s + step], idx[s : s + step] = sim.topk(k, dim=1)
        weights = sparse.csr_matrix(
            (top.clamp(min=0.0).numpy().ravel(), (np.repeat(np.arange(b), k), idx.numpy().ravel())),
            shape=(b, n_users),
        )  # (B, n_users), k neighbours per row
        scores = torch.from_numpy((weights @ self.users_).toarray()).double()  # (B, V)
        scores += 1e-6 * self.popularity_  # below any real similarity difference
        scores[:, 0] = -1.0
        return scores

    def forget(self, user: int) -> None:
        """Leave a training user out of every neighbourhood from now on (a service's
        ``DELETE /users/{id}``): their row scores 0 against any history. In place."""
        if self.users_ is None or self.items_ is None:
            raise RuntimeError("user-knn: call fit() before forget()")
        if not 0 <= user < self.users_.shape[0]:
            return
        lo, hi = self.users_.indptr[user], self.users_.indptr[user + 1]
        self.users_.data[lo:hi] = 0.0
        self.items_.data[self.items_.indices == user] = 0.0

    def _score_one(
        self, items: np.ndarray, w: np.ndarray, users: np.ndarray | None, r: int
    ) -> torch.Tensor:
        """:meth:`score` of one history (L,) with its weights (L,) -> (1, V), through the CSR
        arrays directly: the same sums as the sparse products, without their per-call set-up
        (a service scores one history per request)."""
        assert self.users_ is not None and self.items_ is not None
        assert self.popularity_ is not None
        keep = w > 0
        uniq, inverse = np.unique(items[keep], return_inverse=True)
        q = np.bincount(inverse, weights=w[keep], minlength=uniq.size).astype(np.float32)
        q /= max(float(np.sqrt(np.dot(q, q))), 1e-12)
        n_users = self.items_.shape[1]
        sim = _gather_rows(self.items_, uniq, q, n_users)  # (n_users,) cosine
        if users is not None and users[r] < n_users:
            sim[users[r]] = 0.0  # not one's own training row
        top, idx = torch.from_numpy(sim)[None].topk(min(self.k, n_users), dim=1)
        n_cols = self.popularity_.shape[0]
        scores = _gather_rows(self.users_, idx[0].numpy(), top[0].clamp(min=0.0).numpy(), n_cols)
        out = torch.from_numpy(scores).double()[None] + 1e-6 * self.popularity_
        out[:, 0] = -1.0
        return out


def _gather_rows(m: sparse.csr_matrix, rows: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """``weights @ m[rows]`` as a dense (n,) float32 vector, from the CSR arrays."""
    starts, ends = m.indptr[rows], m.indptr[rows + 1]
    lens = ends - starts
    idx = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    vals = m.data[idx] * np.repeat(weights.astype(np.float32), lens)
    return np.bincount(m.indices[idx], weights=vals, minlength=n).astype(np.float32)


# ridge: a dense (V, V) solve; at 15k items the fit holds >= 3.6 GB (Gram matrix and right-hand
# side in float64, by arithmetic, not measured) and keeps 0.9 GB of float32 weights
RIDGE_MAX_ITEMS = 15_000


class SequentialRidge:
    """Ridge regression from a history's recent items to the next item: a closed-form
    item-to-item linear model (SLIT, the sequential half of SLIST, Choi et al., WWW 2021).

    Each training step ``t`` (an event, or a visit on a timed log: the events of one timestamp
    are one step, their items one multi-hot target) is a row: its input is the user's ``n_last``
    steps before it, the step ``b`` back weighted ``0.5 ** ((b - 1) / half_life)``; its target
    the step's items. ``B = (XᵀX + λI)⁻¹ XᵀY`` is solved densely, so the catalogue is capped
    at :data:`RIDGE_MAX_ITEMS`. A history scores ``q B``, ``q`` its last ``n_last`` steps weighted
    the same way. Unlike transitions it reads several recent items, unlike user-KNN it learns
    which of them predict what; on Amazon Scientific and ML-1M it is the strongest baseline
    (BENCHMARKS.md). Ties: training popularity.
    """

    def __init__(self, lam: float = 500.0, half_life: float = 2.0, n_last: int = 20) -> None:
        if not lam > 0 or not half_life > 0 or n_last < 1:
            raise ValueError("ridge: lam > 0, half_life > 0 and n_last >= 1")
        self.lam, self.half_life, self.n_last = lam, half_life, n_last
        self.name = "ridge"
        self.weights_: torch.Tensor | None = None  # (V, V) float32: row = input item
        self.popularity_: torch.Tensor | None = None
        self.by_visit_ = False

    def fit(self, train: pl.DataFrame, n_items: int) -> Self:
        if n_items > RIDGE_MAX_ITEMS:
            raise ValueError(
                f"ridge: {n_items:,} items; its dense solve takes at most {RIDGE_MAX_ITEMS:,}"
            )
        users = train["user"].to_numpy().astype(np.int64)
        items = train["item"].to_numpy().astype(np.int64)
        n_cols = n_items + 1
        self.by_visit_ = _timed(train)
        # train is sorted by (user, position): a global step id per event
        new = np.ones(users.size, dtype=bool)  # each event a step, or each visit:
        if self.by_visit_:
            t = train["timestamp"].to_numpy()
            new[1:] = (users[1:] != users[:-1]) | (t[1:] != t[:-1])
        step = np.cumsum(new) - 1
        n_steps = int(step[-1]) + 1 if step.size else 0
        step_user = np.zeros(max(n_steps, 1), dtype=np.int64)
        step_user[step] = users
        rows, cols, vals = [], [], []
        for back in range(1, self.n_last + 1):  # event i is an input of the step `back` later
            later = step + back
            ok = later < n_steps
            ok[ok] = step_user[later[ok]] == users[ok]
            rows.append(later[ok])
            cols.append(items[ok])
            vals.append(np.full(int(ok.sum()), 0.5 ** ((back - 1) / self.half_life), np.float32))
        shape = (max(n_steps, 1), n_cols)
        x = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape
        )  # sums an item's repeats within a step
        y = sparse.csr_matrix((np.ones(users.size, np.float32), (step, items)), shape=shape)
        y.data[:] = 1.0  # a step's items, once each
        gram = (x.T @ x).toarray().astype(np.float64)  # (V, V)
        gram[np.diag_indices_from(gram)] += self.lam
        rhs = (x.T @ y).toarray().astype(np.float64)
        self.weights_ = torch.from_numpy(np.linalg.solve(gram, rhs).astype(np.float32))
        self.popularity_ = torch.from_numpy(_popularity_order(train, n_items))
        return self

    def score(self, batch: HistoryBatch, users: np.ndarray | None) -> torch.Tensor:
        if self.weights_ is None or self.popularity_ is None:
            raise RuntimeError("ridge: call fit() before score()")
        back = _steps_back(batch, self.by_visit_)  # (B, L), 0 for the latest step
        w = _decay(back, self.half_life) * ((batch.items > 0) & (back < self.n_last))
        query = torch.zeros(len(batch), self.weights_.shape[0])  # (B, V)
        query.scatter_add_(1, torch.from_numpy(batch.items), torch.from_numpy(w).float())
        query[:, 0] = 0.0
        scores = (query @ self.weights_).double() + 1e-7 * self.popularity_  # (B, V)
        scores[:, 0] = -1e9
        return scores
