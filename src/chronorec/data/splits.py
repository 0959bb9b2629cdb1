"""Leak-free splits of a prepared event log.

A :class:`Split` has four frames:

* ``train`` — the events a model may learn from (a subset of ``events``, same columns);
* ``before_test`` — every event known at the test cut (``train`` plus the validation period):
  what a model or baseline may learn from before it is tested, once validation has chosen its
  settings (:meth:`Split.known`);
* ``valid`` / ``test`` — target rows ``user, item, behaviour, timestamp, history_len``. The history
  of a target is the user's events with ``position < history_len`` in the *full* event log. A user
  may have several target rows with the same ``history_len`` (a set to predict, e.g. every item
  bought in the last 30 days).

Guarantees, checked by the tests: no valid/test target event is among ``train``, no test target
among ``before_test``; a validation target may appear in a test history (as history only); the
same input gives the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import polars as pl

from chronorec.errors import DataError

TARGET_COLUMNS = ["user", "item", "behaviour", "timestamp", "history_len"]


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    protocol: str
    before_test: pl.DataFrame

    def known(self, which: Literal["valid", "test"]) -> pl.DataFrame:
        """The events a scorer may be fitted on to predict ``which``: ``train`` for the
        validation targets, ``before_test`` for the test targets."""
        self.targets(which)  # checks the name
        return self.train if which == "valid" else self.before_test

    def targets(self, which: Literal["valid", "test"]) -> pl.DataFrame:
        if which not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', not {which!r}")
        return self.valid if which == "valid" else self.test


def _targets(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        "user", "item", "behaviour", "timestamp", pl.col("position").alias("history_len")
    )


def leave_one_out(events: pl.DataFrame, *, min_events: int = 3) -> Split:
    """Last event of each user = test target, second-to-last = validation target.

    Users with fewer than ``min_events`` events stay entirely in ``train`` (the SASRec convention).
    Test history includes the validation target; training never sees either.
    """
    if min_events < 3:
        raise ValueError("leave_one_out needs min_events >= 3 (train, valid and test per user)")
    n = pl.col("position").max().over("user") + 1
    marked = events.with_columns(
        pl.when(n < min_events)
        .then(pl.lit("train"))
        .when(pl.col("position") == n - 1)
        .then(pl.lit("test"))
        .when(pl.col("position") == n - 2)
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
        .alias("_part")
    )
    return Split(
        train=marked.filter(pl.col("_part") == "train").drop("_part"),
        valid=_targets(marked.filter(pl.col("_part") == "valid")),
        test=_targets(marked.filter(pl.col("_part") == "test")),
        protocol="leave-one-out",
        before_test=marked.filter(pl.col("_part") != "test").drop("_part"),
    )


def _as_seconds(cut: float | int | str | datetime) -> int:
    if isinstance(cut, datetime):
        return int(cut.replace(tzinfo=cut.tzinfo or UTC).timestamp())
    if isinstance(cut, str):
        try:
            return _as_seconds(datetime.fromisoformat(cut))
        except ValueError as exc:
            raise DataError(f"cut {cut!r} is not an ISO date/time") from exc
    return int(cut)


def temporal_split(
    events: pl.DataFrame,
    *,
    test_cut: float | int | str | datetime | None = None,
    test_quantile: float | None = None,
    test_days: float | None = None,
    valid_days: float | None = None,
    behaviour: int | None = None,
) -> Split:
    """Global temporal split at one cut time for all users.

    The test cut is given as a timestamp/ISO date (``test_cut``), a quantile of event times
    (``test_quantile``) or a window at the end of the log (``test_days``). Test targets are the
    events at or after the cut from users with at least one event before it; their history is
    every event before the cut. Validation uses the same rule one window earlier (``valid_days``,
    default: the length of the test window), and ``train`` holds only events before the
    validation cut, so no validation or test event is trained on. ``behaviour`` keeps only targets
    of that behaviour (e.g. purchases) while all behaviours stay in histories.
    """
    if "timestamp" not in events.columns or events["timestamp"].null_count() == events.height:
        raise DataError("a temporal split needs timestamps; this log has none (use leave-one-out)")
    given = sum(x is not None for x in (test_cut, test_quantile, test_days))
    if given != 1:
        raise ValueError("give exactly one of test_cut, test_quantile, test_days")
    ts = events["timestamp"]
    t_max = int(ts.max())  # type: ignore[arg-type]  # non-empty, checked above
    if test_cut is not None:
        cut = _as_seconds(test_cut)
    elif test_quantile is not None:
        if not 0.0 < test_quantile < 1.0:
            raise ValueError("test_quantile must be in (0, 1)")
        cut = int(ts.quantile(test_quantile, interpolation="lower"))  # type: ignore[arg-type]
    else:
        assert test_days is not None
        cut = t_max - int(test_days * 86400)
    window = t_max - cut
    valid_cut = cut - (int(valid_days * 86400) if valid_days is not None else window)

    def targets_between(lo: int, hi: int | None) -> pl.DataFrame:
        before = events.filter(pl.col("timestamp") < lo)
        hist = before.group_by("user").agg(pl.col("position").max().alias("_last"))
        window_events = events.filter(pl.col("timestamp") >= lo)
        if hi is not None:
            window_events = window_events.filter(pl.col("timestamp") < hi)
        if behaviour is not None:
            window_events = window_events.filter(pl.col("behaviour") == behaviour)
        joined = window_events.join(hist, on="user", how="inner")
        return joined.select(
            "user",
            "item",
            "behaviour",
            "timestamp",
            (pl.col("_last") + 1).cast(pl.Int32).alias("history_len"),
        ).sort(["user", "timestamp", "item"], maintain_order=True)

    return Split(
        train=events.filter(pl.col("timestamp") < valid_cut),
        valid=targets_between(valid_cut, cut),
        test=targets_between(cut, None),
        protocol=f"temporal(test_cut={cut}, valid_cut={valid_cut})",
        before_test=events.filter(pl.col("timestamp") < cut),
    )
