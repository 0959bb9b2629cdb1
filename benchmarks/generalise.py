"""The default command on every dataset in ../shared/datasets, one table: does quality hold on
data nobody tuned on?

For each dataset: ``chronorec prepare`` (its format), then the default command —
``chronorec train DIR --out RUN --max-minutes M`` with the evaluation protocol's flags only (split,
test days, whether history items are excluded, target behaviour; never a recipe flag: the recipe
is ``auto`` and the blend is chosen by ``train``) — then ``chronorec evaluate RUN --json`` (the
run's automatic blend) and ``chronorec evaluate RUN --blend none --json`` (the model alone), and
every baseline on the same split (fitted on every event before the test cut). Each training
runs in its own process, seeds one after another, so minutes are wall minutes on this machine.

Columns: dataset, recipe chosen, model alone NDCG@10 / HR@10 / Recall@20, the same with the
automatic blend (and which blend), the best baseline by the dataset's metric, minutes. Means over
``--seeds``. Raw rows go to benchmarks/results/generalise.jsonl.

Usage: python benchmarks/generalise.py [--datasets ml-100k,amazon-scientific,...] [--seeds 0 1 2]
       [--max-minutes 30] [--cache DIR] [--no-append]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, markdown_table, record_results  # noqa: E402

# name -> (prepare arguments, protocol flags of train, the metric the dataset is judged by)
DATASETS_RUN: dict[str, tuple[list[str], list[str], str]] = {
    "ml-100k": (["--format", "movielens", "--events", str(DATASETS / "ml-100k")], [], "ndcg@10"),
    "ml-1m": (
        ["--format", "sasrec-txt", "--events", str(DATASETS / "ml-1m" / "ml-1m.txt"),
         "--items", str(DATASETS / "ml-1m" / "item_text.tsv")],
        [], "ndcg@10",
    ),
    "amazon-scientific": (
        ["--format", "amazon-json",
         "--events", str(DATASETS / "amazon-scientific" / "Scientific.inter.json"),
         "--items", str(DATASETS / "amazon-scientific" / "Scientific.item.json")],
        [], "ndcg@10",
    ),
    "amazon-toys": (
        ["--format", "sasrec-txt", "--events", str(DATASETS / "amazon-toys-2014" / "toys.txt")],
        [], "ndcg@10",
    ),
    "online-retail": (
        ["--format", "online-retail",
         "--events", str(DATASETS / "online-retail" / "online_retail.parquet")],
        ["--set", "data.split='temporal'", "--set", "data.test_days=30",
         "--set", "data.exclude_seen=false"],
        "recall@20",
    ),
    "taobao": (
        ["--format", "taobao",
         "--events", str(DATASETS / "taobao-sample" / "UserBehavior_head.csv")],
        ["--set", "data.split='temporal'", "--set", "data.test_days=2",
         "--set", "data.target_behaviour=4", "--set", "data.exclude_seen=false"],
        "recall@20",
    ),
}  # fmt: skip
SHOWN = ("ndcg@10", "hr@10", "recall@20")


def cli(*args: str) -> str:
    """Run ``chronorec ARGS`` in a new process; its stdout (a failure stops the benchmark)."""
    done = subprocess.run(
        [sys.executable, "-m", "chronorec.cli", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"chronorec {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def prepared(name: str, cache: Path) -> Path:
    out = cache / name
    if not (out / "manifest.json").is_file():
        cli("prepare", *DATASETS_RUN[name][0], "--out", str(out))
    return out


def best_baseline(data: Path, protocol: list[str], metric: str) -> tuple[str, dict[str, float]]:
    """The best baseline on the run's split by ``metric``: every one the data allow, fitted on
    every event before the test cut, over the whole history."""
    from chronorec.blend import fit_baselines
    from chronorec.config import load_config
    from chronorec.data.dataset import load_prepared
    from chronorec.evaluation import evaluate
    from chronorec.recommender import build_text_vectors, make_split
    from chronorec.report import RECENT_DAYS

    cfg = load_config(None, [a for a in protocol if a != "--set"])
    ds = load_prepared(data)
    split = make_split(ds, cfg)
    known = split.known("test")
    vectors = build_text_vectors(ds, cfg) if ds.text_columns else None
    behaviour = cfg.data.target_behaviour
    fitted = fit_baselines(known, ds.n_items, recent_days=RECENT_DAYS, item_vectors=vectors,
                           behaviour=behaviour)  # fmt: skip
    results = {
        name: evaluate(scorer, ds, split.test, exclude_seen=cfg.data.exclude_seen,
                       max_len=100_000, train=known).metrics
        for name, scorer in fitted.items()
    }  # fmt: skip
    name = max(results, key=lambda n: results[n][metric])
    return name, {k: float(results[name][k]) for k in SHOWN}


def one_run(data: Path, protocol: list[str], seed: int, minutes: float, root: Path) -> dict:
    run = root / f"run-{seed}"
    start = time.monotonic()
    trained = json.loads(cli("train", str(data), "--out", str(run), "--seed", str(seed),
                             "--max-minutes", str(minutes), "--no-progress", "--json",
                             *protocol))  # fmt: skip
    wall = (time.monotonic() - start) / 60
    blended = json.loads(cli("evaluate", str(run), "--json"))
    alone = json.loads(cli("evaluate", str(run), "--blend", "none", "--json"))
    return {
        "seed": seed, "minutes": wall, "recipe": trained["recipe"]["name"],
        "recipe_why": trained["recipe"]["why"], "blend": trained["blend"],
        "alone": {k: alone[k] for k in SHOWN}, "blended": {k: blended[k] for k in SHOWN},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS_RUN))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--max-minutes", type=float, default=30.0, help="training budget per run")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "chronorec-gen")
    ap.add_argument("--no-append", action="store_true", help="print only")
    args = ap.parse_args()
    rows, table = [], []
    for name in args.datasets.split(","):
        _, protocol, metric = DATASETS_RUN[name]
        data = prepared(name, args.cache / "data")
        with tempfile.TemporaryDirectory(dir=args.cache) as root:
            runs = [one_run(data, protocol, s, args.max_minutes, Path(root)) for s in args.seeds]
        base_name, base = best_baseline(data, protocol, metric)
        mean = {part: {k: float(np.mean([r[part][k] for r in runs])) for k in SHOWN}
                for part in ("alone", "blended")}  # fmt: skip
        kinds = sorted({r["blend"]["kind"] for r in runs})
        row = {
            "dataset": name, "metric": metric, "recipe": runs[0]["recipe"],
            "recipe_why": runs[0]["recipe_why"], "seeds": args.seeds,
            "max_minutes": args.max_minutes, "alone": mean["alone"], "blended": mean["blended"],
            "blend_kinds": kinds, "best_baseline": base_name, "baseline": base,
            "minutes": float(np.mean([r["minutes"] for r in runs])), "runs": runs,
        }  # fmt: skip
        rows.append(row)
        a, b = mean["alone"], mean["blended"]
        table.append([
            name, row["recipe"], f"{a['ndcg@10']:.4f} / {a['hr@10']:.4f} / {a['recall@20']:.4f}",
            f"{b['ndcg@10']:.4f} / {b['hr@10']:.4f} / {b['recall@20']:.4f} ({', '.join(kinds)})",
            f"{base_name} {base[metric]:.4f} ({metric})",
            f"{b[metric] / max(base[metric], 1e-12):.2f}x", f"{row['minutes']:.1f}",
        ])  # fmt: skip
        print(json.dumps(row), flush=True)
    print(markdown_table(
        ["dataset", "recipe", "alone NDCG@10 / HR@10 / R@20", "auto blend (kind)",
         "best baseline", "blend / baseline", "minutes"], table,
    ))  # fmt: skip
    record_results("generalise", rows, append=not args.no_append)


if __name__ == "__main__":
    main()
