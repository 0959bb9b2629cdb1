"""Top-K retrieval over the item table: exact scoring, or a FAISS inner-product index.

Scores are inner products ``q · e`` between a query (the user's last hidden state, prepared by the
model's score head) and the prepared item table, so one index serves dot and cosine heads alike.
Row 0 of the table is padding and never returned. Items can be appended while serving (new items
from ``POST /items``); the index learns them at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


class SharedExclusiveLock:
    """Many holders of the shared side at once, or one holder of the exclusive side.

    FAISS searches may run concurrently (they release the GIL) but not during an ``add``; one
    plain lock around every search serialised the request threads (measured with py-spy under
    load: 5% of the server's samples waiting on it)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._writing = True  # new readers wait from here on
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class ExactRetriever:
    """Every item scored; the same arithmetic as offline ``Recommender.recommend``."""

    kind = "exact"

    def search(
        self,
        q: torch.Tensor,
        table: torch.Tensor,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``q`` (B, D), ``table`` (V, D) -> (indices (B, k'), scores (B, k')) best first;
        ``k' = min(k, V - 1)``, and a row with fewer allowed items ends in -inf scores."""
        scores = q @ table.T  # (B, V)
        scores[:, 0] = float("-inf")
        if exclude is not None:
            for b, rows in enumerate(exclude):
                if len(rows):
                    scores[b, torch.from_numpy(rows)] = float("-inf")
        # k is cut to the catalogue, not to the row with most exclusions: in a batch of
        # queries, a row that excludes more ends in -inf entries, which callers drop.
        k = min(k, table.shape[0] - 1)
        s = scores.numpy()
        if k == 0:
            return np.zeros((len(s), 0), np.int64), np.zeros((len(s), 0), np.float32)
        # argpartition + a sort of k is several times faster than torch.topk over 100k columns
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]  # (B, k) unordered
        vals = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)

    def add(self, rows: np.ndarray) -> None:
        """Nothing to do: the exact path reads the table itself."""


class FaissRetriever:
    """An inner-product IVF-Flat or HNSW index over rows ``1..V-1`` (index id = row - 1)."""

    def __init__(self, table: np.ndarray, kind: str = "ivf", nprobe: int = 64, ef: int = 128):
        import faiss

        faiss.omp_set_num_threads(1)  # concurrent requests already use the cores
        d = table.shape[1]
        items = np.ascontiguousarray(table[1:], dtype=np.float32)
        self.kind = f"faiss-{kind}"
        index: Any
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = ef
        else:
            # sqrt(n) lists trained on 64 points each: a 100k catalogue trains in about a second
            nlist = max(1, min(int(math.sqrt(len(items))), len(items) // 39 or 1))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = items[rng.choice(len(items), min(len(items), 64 * nlist), replace=False)]
            index.train(sample)
            index.nprobe = min(nprobe, nlist)
        index.add(items)
        self.index = index
        self._lock = SharedExclusiveLock()  # concurrent searches; an add waits for them

    def search(
        self,
        q: torch.Tensor,
        table: torch.Tensor,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(q.numpy(), dtype=np.float32)  # (B, D)
        n_items = table.shape[0] - 1
        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        want = min(k + extra, n_items)
        with self._lock.shared():
            scores, ids = self.index.search(queries, want)  # (B, want)
        out_i = np.zeros((len(queries), k), dtype=np.int64)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        short = 0
        for b in range(len(queries)):
            rows = ids[b][ids[b] >= 0] + 1
            vals = scores[b][ids[b] >= 0]
            if exclude is not None and len(exclude[b]):
                keep = ~np.isin(rows, exclude[b])
                rows, vals = rows[keep], vals[keep]
            n = min(k, len(rows))
            short = max(short, k - n)
            out_i[b, :n], out_s[b, :n] = rows[:n], vals[:n]
        if short:  # the index found too few candidates (a tiny IVF list): fall back to exact
            return ExactRetriever().search(q, table, k, exclude)
        return out_i, out_s

    def add(self, rows: np.ndarray) -> None:
        with self._lock.exclusive():
            self.index.add(np.ascontiguousarray(rows, dtype=np.float32))


Retriever = ExactRetriever | FaissRetriever


def build_retriever(
    table: torch.Tensor, exact_max_items: int, kind: str = "ivf", nprobe: int = 64, ef: int = 128
) -> Retriever:
    """Exact scoring up to ``exact_max_items`` items, else a FAISS index."""
    n_items = table.shape[0] - 1
    if n_items <= exact_max_items:
        return ExactRetriever()
    log.info("building a FAISS %s index over %d items", kind, n_items)
    return FaissRetriever(table.numpy(), kind, nprobe, ef)


def recall_at_k(retriever: Retriever, queries: torch.Tensor, table: torch.Tensor, k: int) -> float:
    """Mean overlap of the retriever's top-k with the exact top-k (1.0 for the exact path)."""
    if retriever.kind == "exact" or len(queries) == 0:
        return 1.0
    exact, _ = ExactRetriever().search(queries, table, k)
    approx, _ = retriever.search(queries, table, k)
    hits = [
        len(set(a.tolist()) & set(e.tolist())) / max(len(e), 1)
        for a, e in zip(approx, exact, strict=True)
    ]
    return float(np.mean(hits))
