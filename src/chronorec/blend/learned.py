"""A learned blend: a gradient-boosted re-ranker over an ensemble's terms.

The linear blend (:class:`~chronorec.blend.Ensemble` with weights) adds each baseline's
z-scores with one weight for every history and item. A learned blend ranks each history's
*candidates* — the union of every term's top ``candidates`` items and the history's own items —
by a LightGBM model over per-candidate features: each term's z-score and rank (the linear
blend, its weights tuned first, is one of the terms), how often the history holds the item, how
many events and days ago it last did, the mean interval between its occurrences, and the
history's length, number of visits and share of distinct items — and the item's own statistics
in the log (:class:`ItemStats`: how often its buyers buy it again and at what interval, how many
buyers it has, how recently it sold). So the model can learn what one weight cannot: trust the
customer's own items more for a customer who repeats, an item bought at a steady interval once
that interval has passed, a baseline only in its top ranks. Items outside the candidates rank
after them, by the runs' scores.

It is trained on the validation split (label: the candidate is one of the history's targets)
with the baselines fitted on the training split, as the linear blend's weights are tuned, and on
:data:`WINDOWS` - 1 earlier validation windows with the runs' features missing (the runs were
trained on those targets); it is reported on the test split only (``chronorec evaluate RUN
--blend NAMES --learned``). On Online Retail it lifts test Recall@20 from 0.2657 (linear blend)
to 0.2820, on Amazon Scientific NDCG@10 from 0.0964 to 0.0998, means of three runs
(BENCHMARKS.md, "learned blend trained on earlier validation windows too"). Blends saved
before the item statistics and the capped ranks (``blend.json`` without ``item_features`` /
``rank_cap``) load and rank as they did.

The model is saved as LightGBM's text format next to the run's ``blend.json``
(:data:`LEARNED_FILE`), never pickled. Training it is :func:`chronorec.blend.fit_learned`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from chronorec.blend.linear import LINEAR, with_linear
from chronorec.data.sequences import HistoryBatch
from chronorec.errors import ConfigError

log = logging.getLogger(__name__)

LEARNED_FILE = "blend.lgb.txt"  # the learned blend's LightGBM model, next to blend.json
HISTORY_FEATURES = (
    "count", "events_back", "days_back", "interval_days", "intervals_due",
    "log_length", "distinct_share", "log_visits",
)  # fmt: skip
PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
}
# LightGBM objectives: NDCG of each query's candidates, or each candidate's log-loss
OBJECTIVES = ("lambdarank", "binary")
ITEM_FEATURES = (
    "item_rebuy", "item_log_buyers", "item_interval_days", "item_days_since_sale",
    "item_age_days", "item_recent_share", "item_intervals_due",
)  # fmt: skip
# validation windows a learned blend trains on by default: on Online Retail and Amazon Scientific
# the out-of-fold validation figure rose up to 6-8 windows (BENCHMARKS.md, "earlier windows")
WINDOWS = 6
RANK_CAP = 1000  # a term's rank is counted up to here (a top-k, not a sort of the catalogue)
RECENT_DAYS = 30.0  # item_recent_share: the share of an item's sales in the log's last 30 days
OUTSIDE = -1000.0  # added to the runs' scores of items that are not candidates
TIE_BREAK = 1e-4  # times the linear blend squashed to (-1, 1): orders the trees' ties


def feature_names(terms: Sequence[str], items: bool = True) -> list[str]:
    """The model's columns for the blend terms ``terms`` ("runs" first); ``items``: with the
    item-side features (blends saved before they existed have none)."""
    names = [f"z_{t}" for t in terms] + [f"rank_{t}" for t in terms] + list(HISTORY_FEATURES)
    return names + list(ITEM_FEATURES) if items else names


@dataclass(frozen=True)
class ItemStats:
    """Per-item statistics of an event log, the learned blend's item-side features (every
    column -1 where unknown: an item the log does not hold, or a time on an untimed log).

    Columns (:data:`ITEM_FEATURES` but the last, which :func:`candidate_features` derives):
    the share of the item's buyers who bought it on two visits or more (smoothed: (repeat + 1) /
    (buyers + 10)); log(1 + buyers); the median over its repeat buyers of their mean days between
    visits; days from its last sale and from its first to the log's last event; the share of its
    sales in the log's last :data:`RECENT_DAYS` days. A visit is a distinct timestamp (an
    event on untimed logs); with ``behaviour`` only the events of that behaviour count."""

    table: torch.Tensor  # (n_items + 1, 6) float64

    @classmethod
    def fit(cls, events: pl.DataFrame, n_items: int, behaviour: int | None = None) -> ItemStats:
        table = torch.full((n_items + 1, len(ITEM_FEATURES) - 1), -1.0, dtype=torch.float64)
        if behaviour is not None:
            events = events.filter(pl.col("behaviour") == behaviour)
        timed = events.height > 0 and events["timestamp"].null_count() == 0
        if not timed:  # counts only; each event is a visit
            events = events.with_columns(pl.col("position").cast(pl.Int64).alias("timestamp"))
        events = events.filter(pl.col("item") <= n_items)
        if events.height == 0:
            return cls(table)
        end = int(events["timestamp"].max())  # type: ignore[arg-type]
        day = pl.lit(86_400.0)
        per_buyer = events.group_by("user", "item").agg(
            pl.col("timestamp").n_unique().alias("visits"),
            ((pl.col("timestamp").max() - pl.col("timestamp").min()) / day).alias("span"),
        )
        stats = (
            per_buyer.group_by("item")
            .agg(
                pl.len().alias("buyers"),
                (pl.col("visits") >= 2).sum().alias("repeat"),
                (pl.col("span") / (pl.col("visits") - 1))
                .filter(pl.col("visits") >= 2)
                .median()
                .alias("interval"),
            )
            .join(
                events.group_by("item").agg(
                    ((end - pl.col("timestamp").max()) / day).alias("since"),
                    ((end - pl.col("timestamp").min()) / day).alias("age"),
                    ((pl.col("timestamp") >= end - RECENT_DAYS * 86_400).mean()).alias("recent"),
                ),
                on="item",
            )
            .sort("item")
        )
        rows = torch.as_tensor(stats["item"].to_numpy().astype(np.int64))
        buyers = stats["buyers"].to_numpy().astype(np.float64)
        cols = [
            (stats["repeat"].to_numpy() + 1.0) / (buyers + 10.0),
            np.log1p(buyers),
        ]
        if timed:
            cols += [
                stats["interval"].fill_null(-1.0).to_numpy(),
                stats["since"].to_numpy(),
                stats["age"].to_numpy(),
                stats["recent"].to_numpy(),
            ]
        table[rows, : len(cols)] = torch.as_tensor(np.stack(cols, 1), dtype=torch.float64)
        return cls(table)

    def rows(self, items: torch.Tensor) -> torch.Tensor:
        """``(N, 6)`` statistics of ``items``; an item beyond the table (posted to a service
        after the statistics were computed) is unknown."""
        known = items < self.table.shape[0]
        out = self.table[torch.where(known, items, 0)]
        out[~known] = -1.0
        return out


@torch.no_grad()
def candidate_features(
    parts: Mapping[str, torch.Tensor],
    terms: Sequence[str],
    batch: HistoryBatch,
    candidates: int,
    *,
    item_stats: ItemStats | None = None,
    rank_cap: int | None = RANK_CAP,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates and their features for a batch: ``(b, v, X)`` — the candidate's row in the
    batch, its item and its features (:func:`feature_names` order; the item-side ones with
    ``item_stats``). ``parts`` maps each term to its ``(B, V)`` z-scores (column 0 at -inf), as
    :meth:`Ensemble.parts` returns them. A term's rank of an item is the number of items it
    scores higher, up to ``rank_cap`` (``None``: the position in a stable sort of the whole
    catalogue, as blends saved before the cap have it)."""
    z = torch.stack([parts[t] for t in terms]).float()  # (T, B, V)
    z[:, :, 0] = float("-inf")
    n_terms, n_rows, n_cols = z.shape
    items = torch.as_tensor(batch.items)
    width = items.shape[1]
    items = torch.where(items < n_cols, items, 0)  # an item the scores do not know: padding
    real = items > 0
    count = torch.zeros(n_rows, n_cols)
    count.scatter_add_(1, items, real.float())
    count[:, 0] = 0.0
    cand = count > 0
    ranks, best = _ranks(z, rank_cap, min(candidates, n_cols - 1))
    for t in range(n_terms):
        cand.scatter_(1, best[t], True)
    cand[:, 0] = False
    # events back to the item's last occurrence (width + 1 when absent)
    back = torch.full((n_rows, n_cols), float(width + 1))
    steps = (width - 1 - torch.arange(width)).float().expand(n_rows, width).contiguous()
    back.scatter_reduce_(1, items, torch.where(real, steps, float(width + 1)), reduce="amin")
    ts = torch.as_tensor(batch.timestamps).double()
    last_ts = ts.max(1).values
    latest = torch.full((n_rows, n_cols), -1.0, dtype=torch.float64)
    latest.scatter_reduce_(1, items, torch.where(real, ts, -1.0), reduce="amax")
    first = torch.full((n_rows, n_cols), float("inf"), dtype=torch.float64)
    first.scatter_reduce_(1, items, torch.where(real, ts, float("inf")), reduce="amin")
    seen = count > 0
    days = torch.where(seen, (last_ts[:, None] - latest) / 86_400, -1.0)
    interval = torch.where(
        count > 1, (latest - first) / 86_400 / (count - 1).clamp(min=1).double(), -1.0
    )
    due = torch.where(interval > 0, days / interval.clamp(min=1e-3), -1.0)
    # events in the window (batch.lengths may count a longer history than the window holds)
    lengths = real.sum(1).double().clamp(min=1)
    distinct = seen.sum(1).double() / lengths
    stamps = torch.as_tensor(batch.timestamps)
    new_visit = (stamps[:, 1:] != stamps[:, :-1]) & real[:, 1:] & real[:, :-1]
    visits = new_visit.sum(1).double() + 1
    b, v = cand.nonzero(as_tuple=True)
    X = torch.cat(
        [
            z[:, b, v].T.double(),
            ranks[:, b, v].T.double().log1p(),
            torch.stack(
                [
                    count[b, v].double(),
                    back[b, v].double(),
                    days[b, v],
                    interval[b, v],
                    due[b, v],
                    lengths[b].log1p(),
                    distinct[b],
                    visits[b].log1p(),
                ],
                1,
            ),
        ],
        1,
    )
    if item_stats is not None:
        stats = item_stats.rows(v)
        usual = stats[:, 2]  # the item's usual days between a buyer's visits
        item_due = torch.where(
            (usual > 0) & (days[b, v] >= 0), days[b, v] / usual.clamp(min=1e-3), -1.0
        )
        X = torch.cat([X, stats, item_due[:, None]], 1)
    X = torch.nan_to_num(X, nan=0.0, neginf=-50.0, posinf=50.0).clamp(-1e6, 1e6)
    return b.numpy(), v.numpy(), X.numpy()


def _ranks(z: torch.Tensor, cap: int | None, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T, B, V)`` ranks of every item in each term's ``(T, B, V)`` scores — the number of
    items scored higher, at most ``cap``, from each row's top scores, so ties share a rank and a
    100k-item catalogue is not sorted (``None``: the positions in a stable sort) — and the
    ``(T, B, keep)`` items of each term's top ``keep``."""
    n_terms, n_rows, n_cols = z.shape
    if cap is None:
        order = torch.argsort(z, dim=2, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(2, order, torch.arange(n_cols).expand(n_terms, n_rows, n_cols).contiguous())
        return ranks, z.topk(keep, dim=2).indices
    width = min(max(cap, keep), n_cols)
    top, where = z.topk(width, dim=2)  # descending
    ascending = top.flip(2).contiguous()
    above = width - torch.searchsorted(ascending, top.contiguous(), right=True, out_int32=True)
    above = above.clamp(max=cap)
    # int32 and in place: (T, B, V) is large for a big catalogue and an evaluation batch
    ranks = torch.full((n_terms, n_rows, n_cols), cap, dtype=torch.int32)
    ranks.scatter_(2, where, above)
    # an item tied with the last of the top but left out of it has that one's rank
    tied = (z >= top[:, :, -1:]) & (ranks == cap)
    ranks[tied] = above[:, :, -1:].expand_as(ranks)[tied]
    return ranks, where[:, :, :keep]


@dataclass
class LearnedBlend:
    """A fitted re-ranker: ``terms`` are "runs", the baseline names and :data:`LINEAR`, in
    feature order."""

    booster: Any  # lightgbm.Booster
    terms: tuple[str, ...]
    weights: dict[str, float]  # the linear blend's weights: its sum is the term "linear"
    candidates: int = 50
    threads: int = 1
    rank_cap: int | None = RANK_CAP  # None: ranks by a sort of the catalogue (older blends)
    item_features: bool = True  # False: without ITEM_FEATURES (older blends)

    @property
    def baselines(self) -> list[str]:
        return [t for t in self.terms if t not in ("runs", LINEAR)]

    def scores(
        self,
        parts: Mapping[str, torch.Tensor],
        batch: HistoryBatch,
        item_stats: ItemStats | None = None,
    ) -> torch.Tensor:
        """``(B, V)`` scores: the trees' score for the candidates, the runs' z-scores plus
        :data:`OUTSIDE` for the other items, -inf where the runs have -inf. ``item_stats``: of
        the log the baselines were fitted on (needed with ``item_features``)."""
        if self.item_features and item_stats is None:
            raise ValueError("this learned blend reads item statistics: pass item_stats")
        parts = with_linear(parts, self.weights)
        b, v, X = candidate_features(
            parts,
            self.terms,
            batch,
            self.candidates,
            item_stats=item_stats if self.item_features else None,
            rank_cap=self.rank_cap,
        )
        runs = parts["runs"]
        out = torch.where(torch.isfinite(runs), runs.clamp(-50, 50) + OUTSIDE, float("-inf"))
        if b.size:
            p = torch.as_tensor(self.booster.predict(X, num_threads=self.threads))
            # the trees' scores tie often: the linear blend orders the ties
            lin = parts[LINEAR][torch.as_tensor(b), torch.as_tensor(v)].double()
            p = p + TIE_BREAK * lin / (1 + lin.abs())
            out[torch.as_tensor(b), torch.as_tensor(v)] = p.to(out.dtype)
        out[:, 0] = float("-inf")
        return out

    def importance(self, top: int = 8) -> dict[str, float]:
        """The ``top`` features by their share of the trees' total gain, largest first."""
        gain = np.asarray(self.booster.feature_importance("gain"), dtype=np.float64)
        share = gain / max(float(gain.sum()), 1e-12)
        order = np.argsort(-share, kind="stable")[:top]
        names = self.booster.feature_name()
        return {names[i]: round(float(share[i]), 3) for i in order}

    def save(self, run_dir: str | Path) -> Path:
        """Write the model as ``RUN/blend.lgb.txt`` (temp file + rename)."""
        path = Path(run_dir) / LEARNED_FILE
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            self.booster.save_model(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def describe(self) -> dict[str, Any]:
        """What ``blend.json`` records of it."""
        return {
            "file": LEARNED_FILE,
            "terms": list(self.terms),
            "weights": self.weights,
            "candidates": self.candidates,
            "rank_cap": self.rank_cap,
            "item_features": self.item_features,
        }

    @classmethod
    def load(cls, run_dir: str | Path, meta: Mapping[str, Any]) -> LearnedBlend:
        """The learned blend ``blend.json`` describes (``meta``: its ``"learned"`` entry)."""
        import lightgbm as lgb

        path = Path(run_dir) / str(meta.get("file", LEARNED_FILE))
        terms, weights = meta.get("terms"), meta.get("weights", {})
        where = Path(run_dir) / "blend.json"
        if not isinstance(terms, list) or len(terms) < 3 or terms[0] != "runs":
            raise ConfigError(f"{where}: 'learned.terms' must list 'runs', the baselines and "
                              "'linear'")  # fmt: skip
        if not isinstance(weights, dict) or not all(
            isinstance(w, int | float) for w in weights.values()
        ):
            raise ConfigError(f"{where}: 'learned.weights' must map baselines to numbers")
        if set(weights) - set(terms):
            raise ConfigError(f"{where}: 'learned.weights' names baselines not in its terms")
        rank_cap, item_features = meta.get("rank_cap"), meta.get("item_features", False)
        if rank_cap is not None and (type(rank_cap) is not int or rank_cap < 1):
            raise ConfigError(f"{where}: 'learned.rank_cap' must be a positive integer or null")
        if not isinstance(item_features, bool):
            raise ConfigError(f"{where}: 'learned.item_features' must be true or false")
        if not path.is_file():
            raise ConfigError(f"{path}: the learned blend's model is missing")
        try:
            booster = lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError as exc:
            raise ConfigError(f"{path}: not a LightGBM model: {exc}") from None
        want = feature_names(terms, item_features)
        if booster.feature_name() != want:
            raise ConfigError(f"{path}: its features {booster.feature_name()} are not {want}")
        return cls(
            booster,
            tuple(terms),
            {str(k): float(w) for k, w in weights.items()},
            int(meta.get("candidates", 50)),
            rank_cap=rank_cap,
            item_features=item_features,
        )
