"""Fine-tuning on new events against a stale model and a full retrain (test or validation split).

A run trained with ``train.refit=true`` holds two sets of weights: the ones trained on the
training split only (stale at test time: they have not seen the events between the training
cut and the test cut) and the ones trained again from scratch on every event before the test
cut (the full retrain). This script adds a third: the stale weights fine-tuned
(``Recommender.finetune``) on the windows of the users with events after the training cut —
what ``chronorec finetune`` does with the events a service received since its run was
trained. All three rank the same test targets over the whole catalogue with the same
histories; the table gives the time each took to train and their test metrics.

The settings (``--epochs``, ``--lr-scale``, each a list) are chosen with ``--split valid``:
the same comparison one window earlier — a model trained from scratch (the run's recipe, for
its validated epoch count) on the events before the window before the validation window,
stale or fine-tuned on that window, against the run's own training-split weights, on the
validation targets. On the test split the grid shows how much the choice matters.

Usage:
  python benchmarks/finetune.py RUN [RUN ...] [--split valid|test] [--epochs 1,3]
      [--lr-scale 0.3,1] [--data DIR] [--threads N] [--no-append]

Prints the table; its rows (each run's and the means) are appended to
``benchmarks/results/finetune.jsonl`` unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

from chronorec.data.splits import Split  # noqa: E402
from chronorec.evaluation import evaluate  # noqa: E402
from chronorec.recommender import (  # noqa: E402
    FINETUNE_EPOCHS,
    FINETUNE_LR_SCALE,
    Recommender,
    make_split,
)

METRICS = ("ndcg@10", "hr@10", "recall@10", "recall@20")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="runs trained with train.refit=true")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--epochs", default=str(FINETUNE_EPOCHS), help="comma-separated")
    parser.add_argument("--lr-scale", default=str(FINETUNE_LR_SCALE), help="comma-separated")
    parser.add_argument("--data", default=None, help="prepared dataset (default: the runs')")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append")
    args = parser.parse_args()
    grid = [(int(e), s) for e in _floats(args.epochs) for s in _floats(args.lr_scale)]
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    by_setting: dict[str, list[dict[str, float]]] = {}
    notes = []
    for run in args.runs:
        rec = Recommender.load(run, args.data)
        if rec.valid_model is None or "refit" not in rec.meta or rec.dataset is None:
            sys.exit(f"{run}: needs a run trained with train.refit=true and its dataset")
        if args.threads:
            train = dataclasses.replace(rec.config.train, threads=args.threads)
            rec.config = rec.config.replace(train=train)
        torch.set_num_threads(rec.config.train.threads or torch.get_num_threads())
        measured, note = (_on_valid if args.split == "valid" else _on_test)(rec, grid)
        notes.append(f"{run}: {note}")
        for label, metrics, seconds in measured:
            by_setting.setdefault(label, []).append(metrics)
            time_cell = "" if seconds is None else f"{seconds:.1f}"
            rows.append([run, label, time_cell] + [f"{metrics[m]:.4f}" for m in METRICS])
            results.append({"run": run, "weights": label, "train_seconds": seconds,
                            **{f"{args.split} {m}": metrics[m] for m in METRICS}})  # fmt: skip
            print(rows[-1], flush=True)
    if len(args.runs) > 1:
        for label, per_run in by_setting.items():
            mean = [statistics.mean(r[m] for r in per_run) for m in METRICS]
            rows.append([f"mean of {len(per_run)}", label, ""] + [f"{v:.4f}" for v in mean])
            means = {f"{args.split} {m}": v for m, v in zip(METRICS, mean, strict=True)}
            results.append({"run": f"mean of {len(per_run)}", "weights": label, **means})
    header = ["run", "weights", "train seconds"] + [f"{args.split} {m}" for m in METRICS]
    table = markdown_table(header, rows)
    print(table + "\n\n" + "\n".join(notes))
    record_results("finetune", results, append=not args.no_append, split=args.split, notes=notes)


Result = tuple[str, dict[str, float], float | None]


def _on_test(rec: Recommender, grid: list[tuple[int, float]]) -> tuple[list[Result], str]:
    """The run's two sets of weights and the first one fine-tuned, on the test targets."""
    assert rec.dataset is not None
    split = make_split(rec.dataset, rec.config)
    users, note = _new_events(split.train, split.before_test)
    results: list[Result] = []
    with rec.at("test", first_weights=True):  # the weights of the training split only
        results.append(("stale (training split only)", _metrics(rec, split.test), 0.0))
        results += _finetuned(rec, split.before_test, users, grid, split.test)
    refit_seconds = 60 * float(rec.meta["refit"]["minutes"])
    results.insert(1, ("full retrain (train.refit)", _metrics(rec, split.test), refit_seconds))
    return results, f"{note}; {split.test.height:,} test targets"


def _on_valid(rec: Recommender, grid: list[tuple[int, float]]) -> tuple[list[Result], str]:
    """The same one window earlier, to choose the settings: a model trained from scratch (the
    run's recipe for its validated epoch count) on the events before the window before the
    validation window, stale or fine-tuned on that window, against the run's own
    training-split weights (the full retrain), on the validation targets."""
    dataset = rec.dataset
    assert dataset is not None
    split = make_split(dataset, rec.config)
    before = make_split(dataset, rec.config, earlier=1).train
    users, note = _new_events(before, split.train)
    cfg = rec.config.replace(
        train=dataclasses.replace(rec.config.train, max_epochs=rec.best_epoch, refit=False)
    )
    empty = before.clear()
    t0 = time.perf_counter()
    stale = Recommender(cfg).fit(
        dataset, split=Split(before, empty, empty, "earlier", before), progress=False
    )
    seconds = time.perf_counter() - t0
    results: list[Result] = [("stale (one window earlier)", _metrics(stale, split.valid), 0.0)]
    with rec.at("valid"):
        results.append(("full retrain (the run's training-split weights)",
                        _metrics(rec, split.valid), None))  # fmt: skip
    results += _finetuned(stale, split.train, users, grid, split.valid)
    return (
        results,
        f"{note}; {split.valid.height:,} validation targets; stale model {seconds:.0f} s",
    )


def _new_events(old: pl.DataFrame, new: pl.DataFrame) -> tuple[np.ndarray, str]:
    """Users with events in ``new`` past ``old`` (each a per-user prefix of the log)."""
    n = max(int(new["user"].max() or 0), int(old["user"].max() or 0)) + 1  # type: ignore[arg-type]
    gain = np.bincount(new["user"].to_numpy(), minlength=n) - np.bincount(
        old["user"].to_numpy(), minlength=n
    )
    users = np.flatnonzero(gain > 0)
    return users, f"{int(gain.sum()):,} new events from {users.size:,} users"


def _finetuned(
    rec: Recommender,
    log: pl.DataFrame,
    users: np.ndarray,
    grid: list[tuple[int, float]],
    targets: pl.DataFrame,
) -> list[Result]:
    out: list[Result] = []
    for epochs, scale in grid:
        t0 = time.perf_counter()
        tuned = rec.finetune(log, users=users, epochs=epochs, lr_scale=scale, progress=False)
        seconds = time.perf_counter() - t0
        label = f"fine-tuned, {epochs} epoch{'s' if epochs > 1 else ''} × lr {scale:g}"
        out.append((label, _metrics(tuned, targets), seconds))
    return out


def _metrics(scorer: Recommender, targets: pl.DataFrame) -> dict[str, float]:
    """Metrics of ``scorer`` on ``targets`` over the whole catalogue, every history up to its
    target (cold/warm slices off)."""
    cfg, dataset = scorer.config, scorer.dataset
    assert dataset is not None
    result = evaluate(
        scorer, dataset, targets, exclude_seen=cfg.data.exclude_seen,
        max_len=cfg.model.max_len, batch_size=cfg.train.eval_batch_size, slices=(),
    )  # fmt: skip
    return {m: float(result.metrics[m]) for m in METRICS}


if __name__ == "__main__":
    main()
