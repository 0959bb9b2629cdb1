"""Recommendation quality on the shared datasets: train, evaluate on test, print a table.

Protocol: the run config's split (leave-one-out by default), full ranking over the whole
catalogue, history items excluded (data.exclude_seen; say --set data.exclude_seen=false for
repeat-heavy retail logs). One row per (model, item_repr, seed) plus a mean row per
(model, item_repr) when several seeds ran.

Usage:
  python benchmarks/quality.py --dataset ml-1m --model transformer --item-repr id \\
      --seeds 0 1 2 --max-minutes 60 [--set model.n_layers=2 ...] [--config FILE]

``--dataset`` names a dataset of ../shared/datasets (prepared once into --cache) or use --data DIR.

Prints the table and notes; one result row per table row (runs, means, ensembles, blends,
baselines; a ``kind`` field says which) is appended to ``benchmarks/results/quality.jsonl``
unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, markdown_table, record_results  # noqa: E402

from chronorec.config import RunConfig, load_config  # noqa: E402
from chronorec.errors import ChronorecError  # noqa: E402
from chronorec.recommender import Recommender, make_split  # noqa: E402
from chronorec.report import RECENT_DAYS  # noqa: E402  (the same window as the report's)
from chronorec.training.checkpoint import CONFIG_FILE, METRICS_FILE  # noqa: E402
from chronorec.training.loop import TrainResult  # noqa: E402

PREPARE = {
    "ml-1m": ["--format", "sasrec-txt", "--events", str(DATASETS / "ml-1m" / "ml-1m.txt"),
              "--items", str(DATASETS / "ml-1m" / "item_text.tsv")],
    "amazon-scientific": ["--format", "amazon-json",
                          "--events", str(DATASETS / "amazon-scientific" / "Scientific.inter.json"),
                          "--items", str(DATASETS / "amazon-scientific" / "Scientific.item.json")],
    "ml-100k": ["--format", "movielens", "--events", str(DATASETS / "ml-100k")],
    "online-retail": ["--format", "online-retail",
                      "--events", str(DATASETS / "online-retail" / "online_retail.parquet")],
    "taobao": ["--format", "taobao",
               "--events", str(DATASETS / "taobao-sample" / "UserBehavior_head.csv")],
}  # fmt: skip


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeat: int = 10) -> float:
    """This machine's measured n x n matmul throughput (GFLOP/s) with the current threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e9


def train_flops_per_token(rec: Recommender) -> float:
    """Rough forward+backward FLOPs per trained position: 3 x (2 x multiply-adds) of the scores
    (the whole catalogue under full CE, the target and ``train.n_negatives`` under sampled
    losses), the linear layers and attention over an average window of max_len / 2."""
    cfg = rec.config.model
    assert rec.model is not None
    D, L = cfg.d_model, cfg.max_len
    full = rec.config.train.loss == "ce"
    V = rec.model.n_items if full else rec.config.train.n_negatives + 1
    linear = sum(p.numel() for n, p in rec.model.encoder.named_parameters() if p.dim() == 2)
    attention = cfg.n_layers * 2 * (L / 2) * D if cfg.name in ("transformer", "hstu") else 0
    return 6.0 * (V * D + linear + attention)


def epoch_line(record: dict, metric: str) -> tuple[int, float, float]:
    """(epoch, train loss, validation ``metric``) of one history record."""
    valid = record.get("valid", {}).get(metric, float("nan"))
    return record["epoch"], round(record["loss"], 4), round(valid, 4)


def job_config(
    config: Path | None,
    overrides: list[str],
    max_minutes: float,
    model: str,
    item_repr: str,
    seed: int,
) -> RunConfig:
    """The config of one run: file, overrides, then this run's model, item_repr and seed."""
    return load_config(config, [
        *overrides, f'model.name="{model}"', f'model.item_repr="{item_repr}"',
        f"train.seed={seed}", f"train.max_minutes={max_minutes}",
    ])  # fmt: skip


def run_one(
    dataset: str,
    data: Path,
    config: Path | None,
    overrides: list[str],
    max_minutes: float,
    runs: Path | None,
    reuse: bool,
    model: str,
    item_repr: str,
    seed: int,
) -> dict:
    """Train one (model, item_repr, seed), or with ``reuse`` load it from ``runs``; evaluate on
    test; a JSON-ready summary."""
    cfg = job_config(config, overrides, max_minutes, model, item_repr, seed)
    run_dir = None if runs is None else runs / f"{model}-{item_repr}-{seed}"
    if reuse:
        assert run_dir is not None  # checked by main
        rec, r = saved_run(run_dir, data, cfg)
        wall = r.wall_minutes + rec.meta.get("refit", {}).get("minutes", 0.0)
    else:
        started = time.perf_counter()
        rec = Recommender(cfg).fit(data, run_dir=run_dir, progress=False)
        wall = (time.perf_counter() - started) / 60
        assert rec.result is not None
        r = rec.result
    test = rec.evaluate("test")
    detail = {
        "model": model, "item_repr": item_repr, "seed": seed, "stopped": r.stopped,
        "best_epoch": r.best_epoch, "epochs": r.epochs, "wall_minutes": wall,
        "tokens_per_s": r.tokens_per_s, "gflops": r.tokens_per_s * train_flops_per_token(rec) / 1e9,
        "valid": r.best_metrics, "test": test.metrics,
        "history": [epoch_line(h, cfg.train.select_metric) for h in r.history],
    }  # fmt: skip
    if "refit" in rec.meta:
        refit, metric = rec.meta["refit"], cfg.train.select_metric
        first = rec.evaluate("test", slices=(), first_weights=True).metrics[metric]
        detail["note"] = (
            f"refit for test: {refit['epochs']} epochs on the {refit['events']:,} events before "
            f"the test cut in {refit['minutes']:.1f} min (in wall minutes); test {metric} "
            f"{test.metrics[metric]:.4f} with the refit weights, {first:.4f} with the first."
        )
    if cfg.data.cold_fraction > 0 and "cold" in test.slices:
        cold, warm = test.slices["cold"], test.slices.get("warm", {})
        detail["cold_warm"] = [cold["ndcg@10"], warm.get("ndcg@10", float("nan"))]
        detail["note"] = (
            f"cold-start protocol ({cfg.data.cold_fraction:.0%} of items hidden from training): "
            f"test NDCG@10 {cold['ndcg@10']:.4f} on {int(cold['n_targets'])} cold targets, "
            f"{warm.get('ndcg@10', float('nan')):.4f} on {int(warm.get('n_targets', 0))} warm "
            f"(ratio {cold['ndcg@10'] / max(warm.get('ndcg@10', 0.0), 1e-12):.2f})."
        )
    print(json.dumps(detail), flush=True)
    return detail


def reuse_problem(run_dir: Path, cfg: RunConfig) -> str | None:
    """Why ``run_dir`` cannot stand in for a run of ``cfg`` (None when it can): it is missing
    or unfinished, or it was trained with other settings (--set, --jobs, --max-minutes)."""
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / METRICS_FILE).is_file():
        return f"{run_dir} holds no finished run ({CONFIG_FILE} and {METRICS_FILE})"
    saved = RunConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text())["config"])
    diff = [
        f"{section}.{f.name}"
        for section in ("model", "train", "data")
        for f in dataclasses.fields(getattr(cfg, section))
        if getattr(getattr(saved, section), f.name) != getattr(getattr(cfg, section), f.name)
    ] + (["text"] if saved.text != cfg.text else [])
    return f"{run_dir} was trained with other settings: {', '.join(diff)}" if diff else None


def saved_run(run_dir: Path, data: Path, cfg: RunConfig) -> tuple[Recommender, TrainResult]:
    """A finished run of ``cfg`` saved in ``run_dir`` (checked by :func:`reuse_problem`) and
    its training record (metrics.json)."""
    rec = Recommender.load(run_dir, dataset=data)
    m = json.loads((run_dir / METRICS_FILE).read_text())
    seconds = m["train_minutes"] * 60
    r = TrainResult(
        epochs=m["epochs"], best_epoch=m["best_epoch"], best_metrics=m["best_valid"],
        history=m["history"], stopped=m["stopped"], wall_minutes=m["train_minutes"],
        tokens_per_s=m["tokens"] / seconds if seconds else 0.0,
    )  # fmt: skip
    return rec, r


def add_all_runs(groups: dict[tuple[str, str], list]) -> None:
    """Add one more group, keyed ("lstm+gru", "id+text"), holding every group's members."""
    key = ("+".join(dict.fromkeys(m for m, _ in groups)),
           "+".join(dict.fromkeys(r for _, r in groups)))  # fmt: skip
    groups[key] = [member for members in list(groups.values()) for member in members]


METRICS = ("ndcg@10", "hr@10", "mrr@10", "recall@20")  # the table's metric columns


def table_row(dataset: str, r: dict) -> list[object]:
    """The markdown row of one result (a run, a mean of runs, an ensemble, a blend or a
    baseline)."""
    cells: list[object] = [f"{r['test'][m]:.4f}" for m in METRICS]
    if r["kind"] == "baseline":
        return [dataset, f"baseline: {r['baseline']}", "-", "-", *cells, "-", "-", "-", "-"]
    head = [dataset, r["model"], r["item_repr"], r["seed"]]
    if r["kind"] == "run":
        return [*head, *cells, r["epochs"], f"{r['wall_minutes']:.1f}",
                f"{r['tokens_per_s']:,.0f}", f"{r['gflops']:.1f}"]  # fmt: skip
    if r["kind"] == "mean":
        cells[0], cells[1] = f"**{cells[0]}**", f"**{cells[1]}**"
        return [*head, *cells, f"{r['epochs']:.1f}", f"{r['wall_minutes']:.1f}", "", ""]
    return [*head, *cells, "-", "-", "-", "-"]


def ensemble_results(runs: Path, details: list[dict], data: Path) -> list[dict]:
    """One result per (model, item_repr) with several seeds: the test metrics of its saved
    seed runs ranked as one ensemble (mean z-scored scores, ``chronorec.blend.Ensemble``); with
    several (model, item_repr) groups, one more for all runs together."""
    from chronorec.blend import Ensemble

    groups: dict[tuple[str, str], list[Path]] = {}
    for d in details:
        key = (d["model"], d["item_repr"])
        groups.setdefault(key, []).append(runs / f"{d['model']}-{d['item_repr']}-{d['seed']}")
    if len(groups) > 1:  # several models or item towers: all runs as one ensemble too
        add_all_runs(groups)
    out = []
    for (model, item_repr), paths in groups.items():
        if len(paths) > 1:
            m = Ensemble.load(paths, dataset=data).evaluate("test").metrics
            out.append({"kind": "ensemble", "model": model, "item_repr": item_repr,
                        "seed": f"ensemble of {len(paths)}", "runs": paths, "test": m})  # fmt: skip
    return out


def blend_results(
    data: Path, runs: Path, details: list[dict], names: list[str], ensemble: bool
) -> tuple[list[dict], str]:
    """Each saved run blended with the baselines ``names`` (weights tuned on the valid split,
    ``chronorec.blend.Ensemble.tune``), their mean per (model, item_repr), and with ``ensemble``
    the seeds' ensemble (and, across several groups, all runs) blended the same way; plus a
    note with the weights."""
    from chronorec.blend import Ensemble

    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    for d in details:
        path = runs / f"{d['model']}-{d['item_repr']}-{d['seed']}"
        groups.setdefault((d["model"], d["item_repr"]), []).append((d["seed"], path))
    if ensemble and len(groups) > 1:  # all runs as one ensemble, blended (no single rows)
        add_all_runs(groups)
    out, notes = [], []
    for i, ((model, item_repr), members) in enumerate(groups.items()):
        scored = []
        every = ensemble and i == len(groups) - 1 and len(groups) > 1
        sets = [] if every else [([path], f"{seed} + blend") for seed, path in members]
        if ensemble and len(members) > 1:
            sets.append(([p for _, p in members], f"ensemble of {len(members)} + blend"))
        for paths, label in sets:
            ens = Ensemble.load(paths, dataset=data)
            weights = ens.tune(names, which="valid")
            m = ens.evaluate("test").metrics
            if len(paths) == 1:
                scored.append([m[k] for k in METRICS])
            out.append({"kind": "blend", "model": model, "item_repr": item_repr, "seed": label,
                        "runs": paths, "weights": dict(weights), "test": m})  # fmt: skip
            notes.append(f"{model}/{item_repr}/{label}: " + ", ".join(
                f"{name} {w:g}" for name, w in weights.items()))  # fmt: skip
        if len(scored) > 1:
            mean = np.mean(scored, axis=0)
            out.append({"kind": "blend mean", "model": model, "item_repr": item_repr,
                        "seed": f"mean of {len(scored)} + blend",
                        "test": dict(zip(METRICS, mean, strict=True))})  # fmt: skip
    note = (
        "Blends: the run's (or ensemble's) z-scored scores plus weighted z-scores of the "
        f"baselines {', '.join(names)}, weights tuned on the valid split by coordinate search "
        "(`Ensemble.tune`, baselines fitted on the training split) and applied on test "
        "(baselines fitted on every event before the test cut); weights: " + "; ".join(notes) + ". "
    )
    return out, note


def cold_warm_means(details: list[dict]) -> str:
    """Mean cold- and warm-target test NDCG@10 per (model, item_repr) over its seeds."""
    groups: dict[tuple[str, str], list[list[float]]] = {}
    for d in details:
        if "cold_warm" in d:
            groups.setdefault((d["model"], d["item_repr"]), []).append(d["cold_warm"])
    out = ""
    for (model, item_repr), vals in groups.items():
        if len(vals) > 1:
            cold, warm = np.mean(vals, axis=0)
            out += (
                f"{model}/{item_repr}, mean of {len(vals)}: cold-target NDCG@10 {cold:.4f}, "
                f"warm {warm:.4f} (ratio {cold / max(warm, 1e-12):.2f}). "
            )
    return out


FULL_HISTORY = 2_000  # a window covering every user's whole history in these datasets


def baseline_metrics(data: Path, cfg: RunConfig) -> dict[str, dict]:
    """Test metrics of every non-learned baseline on the split and exclusion of the run config,
    over the model's history window and over the whole history (text-KNN when the catalogue
    has text)."""
    from chronorec.blend import fit_baselines
    from chronorec.data.dataset import load_prepared
    from chronorec.evaluation import evaluate
    from chronorec.recommender import build_text_vectors

    ds = load_prepared(data)
    split = make_split(ds, cfg)
    vectors = build_text_vectors(ds, cfg) if ds.text_columns else None
    behaviour = cfg.data.target_behaviour
    known = split.known("test")  # every event before the test cut
    name = None if behaviour is None else ds.behaviours[behaviour - 1]
    baselines = fit_baselines(known, ds.n_items, recent_days=RECENT_DAYS, item_vectors=vectors,
                              behaviour=behaviour, behaviour_name=name)  # fmt: skip
    out = {}
    for window in sorted({cfg.model.max_len, FULL_HISTORY}):
        label = "whole history" if window == FULL_HISTORY else f"last {window} events"
        for name, scorer in baselines.items():
            out[f"{name} ({label})"] = evaluate(
                scorer, ds, split.test, exclude_seen=cfg.data.exclude_seen,
                max_len=window, train=known,
            ).metrics  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m", help="name for the table (and to prepare)")
    parser.add_argument("--data", type=Path, help="prepared dataset dir (default: --cache/NAME)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/chronorec-bench"))
    parser.add_argument("--model", nargs="+", default=["transformer"])
    parser.add_argument("--item-repr", nargs="+", default=["id"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--runs", type=Path, default=None, help="keep run dirs here")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate the runs already saved in --runs (same settings) instead of training; "
        "epochs, minutes and tokens/s come from their metrics.json",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time, in processes sharing the cores"
    )
    parser.add_argument(
        "--baselines", action="store_true", help="add the non-learned baselines, same split"
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="also evaluate the seeds of each (model, item_repr) as one ensemble (needs --runs)",
    )
    parser.add_argument(
        "--blend",
        nargs="+",
        metavar="BASELINE",
        help="also evaluate each saved run blended with these baselines, weights tuned on "
        "the valid split (needs --runs): popular, popular-recent, repeat, repeat-recent, "
        "transitions, user-knn, ridge, text-knn",
    )
    parser.add_argument(
        "--no-append", action="store_true", help="print only, do not append the results"
    )
    args = parser.parse_args()
    if args.ensemble and args.runs is None:
        parser.error("--ensemble needs --runs (the ensemble is built from the saved runs)")
    if args.blend and args.runs is None:
        parser.error("--blend needs --runs (the blends are built from the saved runs)")
    if args.reuse and args.runs is None:
        parser.error("--reuse needs --runs (where the saved runs are)")

    data = args.data or args.cache / args.dataset
    if not (data / "manifest.json").is_file():
        if args.dataset not in PREPARE:
            sys.exit(f"{data} is not prepared and {args.dataset!r} has no recipe here")
        subprocess.run([sys.executable, "-m", "chronorec.cli", "prepare", *PREPARE[args.dataset],
                        "--out", str(data)], check=True)  # fmt: skip

    header = ["dataset", "model", "item_repr", "seed", "NDCG@10", "HR@10", "MRR@10", "Recall@20",
              "epochs", "wall minutes", "tokens/s", "est. GFLOP/s"]  # fmt: skip
    jobs = [(model, item_repr, seed) for model in args.model for item_repr in args.item_repr
            for seed in args.seeds]  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    overrides = [*args.overrides, *([f"train.threads={threads}"] if args.jobs > 1 else [])]
    try:  # a bad override fails here, before any training, naming the key
        configs = [job_config(args.config, overrides, args.max_minutes, *job) for job in jobs]
    except ChronorecError as exc:
        sys.exit(f"error: {exc}")
    if args.reuse:  # before any worker starts: a bad run dir is named, not a traceback
        for (model, item_repr, seed), cfg in zip(jobs, configs, strict=True):
            problem = reuse_problem(args.runs / f"{model}-{item_repr}-{seed}", cfg)
            if problem:
                sys.exit(f"error: --reuse: {problem}")
    run_job = functools.partial(run_one, args.dataset, data, args.config, overrides,
                                args.max_minutes, args.runs, args.reuse)  # fmt: skip
    if args.jobs > 1:  # separate processes, each with cores // jobs torch threads
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            details = list(ex.map(run_job, *zip(*jobs, strict=True)))
    else:
        details = [run_job(*job) for job in jobs]
    results: list[dict] = [{"kind": "run", **d} for d in details]
    per_config: dict[tuple[str, str], list[list[float]]] = {}
    for d in details:
        per_config.setdefault((d["model"], d["item_repr"]), []).append(
            [*(d["test"][m] for m in METRICS), d["epochs"], d["wall_minutes"]]
        )
    for (model, item_repr), vals in per_config.items():
        if len(vals) > 1:
            mean = np.mean(vals, axis=0)
            results.append({"kind": "mean", "model": model, "item_repr": item_repr,
                            "seed": f"mean of {len(vals)}",
                            "test": dict(zip(METRICS, mean[:4], strict=True)),
                            "epochs": mean[4], "wall_minutes": mean[5]})  # fmt: skip
    if args.ensemble:
        results += ensemble_results(args.runs, details, data)
    blend_note = ""
    if args.blend:
        more, blend_note = blend_results(data, args.runs, details, args.blend, args.ensemble)
        results += more
    if args.baselines:
        for name, m in baseline_metrics(data, configs[0]).items():
            results.append({"kind": "baseline", "baseline": name, "test": m})
    rows = [table_row(args.dataset, r) for r in results]

    run_cfg = configs[0]
    threads = run_cfg.train.threads or threads
    torch.set_num_threads(threads)
    peak32, peak16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    first = details[0] if details else {}
    exclude = run_cfg.data.exclude_seen
    metric = run_cfg.train.select_metric
    notes = (
        f"Full ranking over all items, test split of the run config "
        f"({'history excluded' if exclude else 'history kept'}); "
        f"best checkpoint by validation {metric} within --max-minutes {args.max_minutes:g}. "
        f"Machine matmul throughput with {threads} threads: {peak32:.0f} GFLOP/s fp32, "
        f"{peak16:.0f} GFLOP/s bf16 (1024^3); est. GFLOP/s = tokens/s x model FLOPs per token. "
        f"{args.jobs} run(s) at a time, {threads} torch thread(s) each. "
        f"Config overrides: {' '.join(overrides) or 'none'}. "
        + (f"Runs not retrained: loaded from {args.runs} (--reuse). " if args.reuse else "")
        + "".join(
            f"{d['model']}/{d['item_repr']}/seed {d['seed']}: {d['note']} "
            for d in details
            if d.get("note")
        )  # fmt: skip
        + cold_warm_means(details)
        + blend_note
        + f"Per-epoch (epoch, train loss, valid {metric}) of the first run: {first.get('history')}"
    )
    table = markdown_table(header, rows)
    print(table + "\n\n" + notes)
    record_results(
        "quality",
        results,
        append=not args.no_append,
        dataset=args.dataset,
        data=data,
        overrides=overrides,
        max_minutes=args.max_minutes,
        jobs=args.jobs,
        threads=threads,
        matmul_gflops={"fp32": peak32, "bf16": peak16},
    )


if __name__ == "__main__":
    main()
