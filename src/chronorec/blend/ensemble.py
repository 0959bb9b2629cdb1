"""Several trained runs on one dataset and split, ranked together — optionally blended with the
non-learned baselines.

Each run scores the whole catalogue after a history; the scores are standardised per history
(z-scores over the catalogue, so runs with different score scales — dot products, cosine with a
temperature, LSTM or transformer — weigh the same) and averaged. On ML-1M the mean of three LSTM
seeds ranks better than any one of them (BENCHMARKS.md).

A *blend* adds baselines (:data:`~chronorec.blend.registry.BLEND_BASELINES`), each with a
weight: ``score = mean of the runs' z-scores + sum of weight * baseline z-scores``. A baseline
is fitted on what is known before the targets it scores: the training split for validation,
every event before the test cut for the test split (:meth:`Split.known`), every event for
recommendations with ``fit_on="all"``.
Count-based baselines (popularity, repeat counts, transitions) are put on a log scale first. The
weights are tuned on the validation split (:meth:`Ensemble.tune`, a coordinate search over a
grid), never on the split they are reported on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from chronorec.blend.files import check_weights
from chronorec.blend.learned import ItemStats, LearnedBlend
from chronorec.blend.linear import (
    LINEAR,
    _baseline_z,
    _known_only,
    _window,
    standardise,
    with_linear,
)
from chronorec.blend.registry import make_baseline
from chronorec.data.sequences import EventArrays, HistoryBatch
from chronorec.data.splits import Split
from chronorec.errors import ConfigError
from chronorec.recommender import Recommender, build_text_vectors, cold_items, make_split

log = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
MIN_Z = 2.0  # a blend weight moves for a validation gain of at least 2 standard errors


class _Cached:
    """Scores of every member for the batches of one evaluation, computed once; ``score`` then
    combines them with the current weights (what makes the weight search cheap)."""

    def __init__(self, ensemble: Ensemble) -> None:
        self.ensemble = ensemble
        self.parts: dict[bytes, dict[str, torch.Tensor]] = {}

    def score(self, batch: HistoryBatch, users: np.ndarray) -> torch.Tensor:
        key = np.asarray(users).tobytes() + bytes(str(batch.items.shape), "ascii")
        if key not in self.parts:
            self.parts[key] = self.ensemble.parts(batch, users, every=True)
        return self.ensemble.combine(self.parts[key])


class Ensemble:
    """Runs fitted on the same catalogue and split (``data`` config), scored as one model, and
    optionally blended with baselines (``weights``: baseline name -> weight; the runs' mean has
    weight 1)."""

    def __init__(
        self,
        members: Sequence[Recommender],
        weights: Mapping[str, float] | None = None,
        *,
        fit_on: str = "train",
        events: pl.DataFrame | None = None,
    ) -> None:
        """``events`` (with ``fit_on="all"``): the log to fit the baselines on instead of the
        dataset's — e.g. a service's, with the events posted to it (columns ``user``, ``item``,
        ``timestamp``, ``behaviour``, ``position``, sorted by user and position)."""
        if not members:
            raise ConfigError("an ensemble needs at least one run")
        if events is not None and fit_on != "all":
            raise ConfigError("an event log for the baselines goes with fit_on='all'")
        self._events = events
        first = members[0]
        first._require_dataset()
        items = first.item_ids()
        for i, rec in enumerate(members[1:], start=2):
            rec._require_dataset()
            if rec.item_ids() != items:
                raise ConfigError(f"run {i} was trained on another catalogue than run 1")
            if rec.config.data != first.config.data:
                diff = [
                    f.name
                    for f in dataclasses.fields(first.config.data)
                    if getattr(rec.config.data, f.name) != getattr(first.config.data, f.name)
                ]
                raise ConfigError(
                    f"run {i} has another split or evaluation setting than run 1: "
                    + ", ".join(f"data.{name}" for name in diff)
                )
        self.members = list(members)
        self._n_rows = len(items) + 1  # the catalogue's rows (0 is padding)
        self.config = first.config
        self.max_len = max(rec.config.model.max_len for rec in members)
        self.weights: dict[str, float] = {}
        # fitted baselines by the events they know: "valid" (the training split), "test" (every
        # event before the test cut) or "all" (every event)
        self._fitted: dict[str, dict[str, Any]] = {}
        self._item_stats: dict[str, ItemStats] = {}  # by stage too: a learned blend's features
        self._stage = "all" if fit_on == "all" else "test"
        self._split: Split | None = None
        self._arrays: EventArrays | None = None
        self._text: np.ndarray | None = None  # item text vectors, shared by every stage's text-knn
        # a learned blend (chronorec.blend.learned) ranks instead of the weighted sum when set
        self.learned: LearnedBlend | None = None
        self.choice: Any = None  # the BlendChoice that chronorec.blend.load applied, if any
        if fit_on not in ("train", "all"):
            raise ConfigError(f"fit_on must be 'train' or 'all', not {fit_on!r}")
        self.fit_on = fit_on
        if weights:
            self.blend(weights)

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path],
        dataset: str | Path | None = None,
        weights: Mapping[str, float] | None = None,
        *,
        fit_on: str = "train",
    ) -> Ensemble:
        """Load every run directory; ``dataset`` (default: each run's recorded dataset)."""
        first = Recommender.load(paths[0], dataset=dataset)
        data = first._require_dataset()
        members = [first] + [Recommender.load(p, dataset=data) for p in paths[1:]]
        return cls(members, weights, fit_on=fit_on)

    def blend(self, weights: Mapping[str, float]) -> Ensemble:
        """Add (or re-weight) baselines; returns ``self``. With ``fit_on="train"`` they are fitted
        on what is known before the split they score (what evaluation needs); with
        ``fit_on="all"`` on every logged event (up-to-date counts for recommendations)."""
        self.weights.update(check_weights(weights, "blend"))
        self._fit_baselines()  # now, so that a baseline the data cannot support fails here
        return self

    @property
    def baselines(self) -> dict[str, Any]:
        """The blended baselines of the current stage (see :meth:`at`), fitted when first asked."""
        return self._fit_baselines()

    def _fit_baselines(self) -> dict[str, Any]:
        fitted = self._fitted.setdefault(self._stage, {})
        missing = [name for name in self.weights if name not in fitted]
        if missing:
            dataset = self.members[0]._require_dataset()
            train = self._known_events()
            for name in missing:
                if name == "text-knn" and self._text is None and dataset.text_columns:
                    self._text = build_text_vectors(dataset, self.config)
                model = make_baseline(
                    name, train, dataset.n_items, has_text=bool(dataset.text_columns),
                    behaviour=self.config.data.target_behaviour, text=self._text,
                )  # fmt: skip
                fitted[name] = model.fit(train, dataset.n_items)
        return fitted

    def _known_events(self) -> pl.DataFrame:
        """The events the current stage's baselines are fitted on."""
        if self._stage == "all":
            return (
                self.members[0]._require_dataset().events if self._events is None else self._events
            )
        # "valid" or "test", set by at(); Split.known checks the name
        return self._get_split().known(self._stage)  # type: ignore[arg-type]

    def item_stats(self) -> ItemStats:
        """The item statistics of the current stage's known events (a learned blend's item-side
        features), computed when first asked."""
        stats = self._item_stats.get(self._stage)
        if stats is None:
            stats = ItemStats.fit(
                self._known_events(), self._n_rows - 1, self.config.data.target_behaviour
            )
            self._item_stats[self._stage] = stats
        return stats

    @contextlib.contextmanager
    def at(self, which: str) -> Iterator[Ensemble]:
        """Score as known before ``which`` ("valid" or "test"): baselines fitted on
        :meth:`Split.known` and each run's weights for that split (:meth:`Recommender.at`)."""
        before = self._stage
        if self.fit_on == "train":  # with "all" every event is known already
            self._stage = which
        try:
            with contextlib.ExitStack() as stack:
                for rec in self.members:
                    stack.enter_context(rec.at(which))
                yield self
        finally:
            self._stage = before

    @torch.no_grad()
    def parts(
        self, batch: HistoryBatch, users: np.ndarray | None = None, *, every: bool = False
    ) -> dict[str, torch.Tensor]:
        """The blend's terms for a batch: ``"runs"`` (mean z-scores of the runs) and the z-scores
        of each baseline with a weight above 0 (``every``: of each blended baseline, as the
        weight search needs), all ``(B, n_items + 1)`` with column 0 at -inf."""
        total = torch.zeros(0)
        for rec in self.members:
            z = standardise(rec.score(_window(batch, rec.config.model.max_len), users))
            total = z if total.numel() == 0 else total + z
        return {"runs": total / len(self.members), **self.baseline_parts(batch, users, every=every)}

    @torch.no_grad()
    def baseline_parts(
        self,
        batch: HistoryBatch,
        users: np.ndarray | None = None,
        *,
        every: bool = False,
        n_cols: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The z-scores of each baseline with a weight above 0 (``every``: of each blended one)
        for a batch, ``(B, n_cols)`` with column 0 at -inf. ``n_cols`` (default: the fitted
        catalogue's ``n_items + 1``) may be larger — a service's catalogue grows: the items a
        baseline was not fitted on are padding in the history and get each row's lowest raw
        score (nothing known), except in text-knn once given their text (``TextKNN.extend``)."""
        out = {}
        baselines = self._fit_baselines()
        every = every or self.learned is not None
        for name, w in self.weights.items():
            if w <= 0 and not every:
                continue
            model = baselines[name]
            known = model.vectors.shape[0] if name == "text-knn" else self._n_rows
            raw = torch.as_tensor(model.score(_known_only(batch, known), users))
            if n_cols is not None and n_cols > raw.shape[1]:
                low = raw[:, 1:].min(1, keepdim=True).values  # (B, 1)
                raw = torch.cat([raw, low.expand(-1, n_cols - raw.shape[1])], 1)
            elif n_cols is not None:  # text-knn may know an item the caller's table does not yet
                raw = raw[:, :n_cols]
            out[name] = _baseline_z(name, raw, batch.items.shape[1])
        return out

    def combine(
        self, parts: Mapping[str, torch.Tensor], batch: HistoryBatch | None = None
    ) -> torch.Tensor:
        """Weighted sum of :meth:`parts`; baselines at weight 0 are skipped. With a learned
        blend, its scores for the candidates of ``batch`` (the histories ``parts`` scored)."""
        if self.learned is not None:
            if batch is None:
                raise ValueError("a learned blend ranks from the histories: pass the batch")
            stats = self.item_stats() if self.learned.item_features else None
            return self.learned.scores(parts, batch, stats)
        return with_linear(parts, self.weights)[LINEAR]

    @torch.no_grad()
    def score(self, batch: HistoryBatch, users: np.ndarray | None = None) -> torch.Tensor:
        """Blended scores ``(B, n_items + 1)``: the mean standardised scores of the runs plus the
        weighted baselines; column 0 is -inf. One run with no blend scores as the run itself
        (its own scale, as the service serves it)."""
        if len(self.members) == 1 and self.learned is None and not any(self.weights.values()):
            rec = self.members[0]
            return rec.score(_window(batch, rec.config.model.max_len), users)
        return self.combine(self.parts(batch, users), batch)

    def use_learned(self, learned: LearnedBlend) -> Ensemble:
        """Rank with a learned blend (:mod:`chronorec.blend.learned`) over its baselines; returns
        ``self``."""
        self.blend({name: self.weights.get(name, 0.0) for name in learned.baselines})
        self.learned = learned
        if learned.item_features:  # now, as blend() fits the baselines: not on a first request
            self.item_stats()
        return self

    def recommend(
        self,
        users: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        allow: Sequence[str] | None = None,
        block: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` items for known users by the blended scores, as
        :meth:`Recommender.recommend` returns them for one run."""
        first = self.members[0]
        batch, rows = first.user_batch(users, self.max_len)
        return first.top_k(
            self.score(batch), k, rows if first._exclude(exclude_seen) else None, allow, block
        )

    def recommend_histories(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        *,
        timestamps: Sequence[Sequence[int]] | None = None,
        behaviours: Sequence[Sequence[str]] | None = None,
        exclude_seen: bool | None = None,
        allow: Sequence[str] | None = None,
        block: Sequence[str] | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-``k`` for ad-hoc histories by the blended scores, as
        :meth:`Recommender.recommend_histories` returns them for one run."""
        first = self.members[0]
        batch, rows = first.history_batch(
            histories, self.max_len, timestamps=timestamps, behaviours=behaviours
        )
        return first.top_k(
            self.score(batch), k, rows if first._exclude(exclude_seen) else None, allow, block
        )

    def tune(
        self,
        names: Sequence[str],
        *,
        which: str = "valid",
        metric: str | None = None,
        grid: Sequence[float] = WEIGHT_GRID,
        rounds: int = 2,
        min_z: float = MIN_Z,
        memory_gb: float = 4.0,
        seed: int = 0,
    ) -> dict[str, float]:
        """Pick the weight of each baseline in ``names`` from ``grid`` by coordinate search on
        ``which`` (the validation split: report metrics on the test split only), maximising
        ``metric`` (default: the runs' ``train.select_metric``). Sets and returns the weights.

        For each baseline in turn every grid weight is tried and the best one is kept if its
        gain over the current weight is at least ``min_z`` standard errors of the query-by-query
        differences (a paired test), so that a small validation split does not pick weights for
        its noise; ``min_z=0`` takes any gain.

        Every term's scores for the queries are kept in memory during the search; when they
        would take more than ``memory_gb``, the search runs on a random subset of the users
        (``seed``) that fits."""
        from chronorec.evaluation.evaluator import per_query

        self._check_fit_on()
        metric = metric or self.config.train.select_metric
        self.learned = None
        self.blend({name: 0.0 for name in names})
        dataset = self.members[0]._require_dataset()
        targets = self.targets(which)
        users = targets["user"].unique().sort().to_numpy()
        row_bytes = 4 * (dataset.n_items + 1) * (1 + len(names))
        fits = max(1, int(memory_gb * 2**30 // row_bytes))
        if users.size > fits:  # leave-one-out: one query per user; more under temporal splits
            keep = np.random.default_rng(seed).choice(users, fits, replace=False)
            targets = targets.filter(pl.col("user").is_in(keep))
            log.info("blend: tuning on %d of %d users (memory_gb=%g)", fits, users.size, memory_gb)
        cached = _Cached(self)

        def values() -> np.ndarray:  # (Q,) the metric of every query
            result = self._evaluate(cached, which, slices=(), targets=targets)
            return per_query(result, targets, metric)

        best = values()
        log.info("blend: runs alone %s %.4f on %s", metric, best.mean(), which)
        for _ in range(rounds):
            changed = False
            for name in names:  # the grid's best weight for this term, if it beats the noise
                current = self.weights[name]
                top, top_values = current, best
                for w in grid:
                    if w == current:
                        continue
                    self.weights[name] = w
                    got = values()
                    if got.mean() > top_values.mean():
                        top, top_values = w, got
                diff = top_values - best
                se = float(diff.std(ddof=1)) / np.sqrt(diff.size) if diff.size > 1 else 0.0
                if diff.mean() > max(min_z * se, 1e-9):
                    best, current, changed = top_values, top, True
                self.weights[name] = current
            log.info("blend: %s -> %s %.4f on %s", self.weights, metric, best.mean(), which)
            if not changed:
                break
        return dict(self.weights)

    def evaluate(
        self, which: str = "test", *, exclude_seen: bool | None = None, **options: Any
    ) -> Any:
        """Full-ranking metrics of the ensemble on the runs' split, as
        :meth:`Recommender.evaluate` computes them for one run."""
        self._check_fit_on()
        return self._evaluate(self, which, exclude_seen=exclude_seen, **options)

    def _check_fit_on(self) -> None:
        if self.fit_on != "train" and self.weights:
            raise ConfigError(
                "baselines fitted on every event have seen the validation and test targets; "
                "evaluate and tune with fit_on='train'"
            )

    def targets(self, which: str) -> pl.DataFrame:
        """The targets of ``which`` ("valid" or "test") on the members' split, in the order of
        :meth:`evaluate`'s ranks."""
        return self._get_split().targets(which)  # type: ignore[arg-type]  # checked by Split

    def _get_split(self) -> Split:
        if self._split is None:  # the weight search evaluates many times
            dataset = self.members[0]._require_dataset()
            self._split = make_split(dataset, self.config)
            self._arrays = EventArrays.from_events(dataset.events, n_users=dataset.n_users)
        return self._split

    def earlier(self, windows: int) -> Ensemble:
        """The same runs and baselines on the split ``windows`` validation windows earlier
        (:func:`~chronorec.recommender.make_split`): its own validation targets, baselines fitted
        on the events before them, and item statistics — a learned blend's extra training data.
        The runs were trained on those targets: their scores there are in-sample."""
        self._get_split()
        view = Ensemble(self.members, fit_on="train")
        view.weights = dict(self.weights)
        view._text = self._text
        view._split = make_split(self.members[0]._require_dataset(), self.config, earlier=windows)
        view._arrays = self._arrays
        return view

    def _evaluate(
        self,
        scorer: Any,
        which: str,
        *,
        exclude_seen: bool | None = None,
        targets: pl.DataFrame | None = None,
        **options: Any,
    ) -> Any:
        from chronorec.evaluation import evaluate

        dataset = self.members[0]._require_dataset()
        split = self._get_split()
        exclude = self.config.data.exclude_seen if exclude_seen is None else exclude_seen
        if self.config.data.cold_fraction > 0:
            options.setdefault("cold_items", cold_items(dataset, self.config))
        options.setdefault("n_items", dataset.n_items)
        options.setdefault("behaviour_names", dataset.behaviours)
        with self.at(which):
            return evaluate(
                scorer, self._arrays,  # type: ignore[arg-type]  # set by _get_split
                split.targets(which) if targets is None else targets,  # type: ignore[arg-type]
                exclude_seen=exclude, max_len=self.max_len,
                batch_size=self.config.train.eval_batch_size,
                train=split.known(which), **options,  # type: ignore[arg-type]  # checked by Split
            )  # fmt: skip
