"""``chronorec train``: fit a sequence model on a prepared dataset into a run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from chronorec.config import ITEM_REPRS, MODEL_NAMES
from chronorec.errors import ChronorecError

if TYPE_CHECKING:
    from chronorec.blend.auto import AutoBlend
    from chronorec.recommender import Recommender


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a sequence model (lstm, gru, transformer, hstu) on a prepared dataset",
        description="Train with every position of each history at once, early-stopping on "
        "validation NDCG@10 (full ranking; --set train.select_metric=recall@20 picks another). "
        "Each epoch writes a checkpoint to --out; the best weights are model.safetensors.",
    )
    p.add_argument("dir", type=Path, help="prepared dataset directory")
    p.add_argument("--model", choices=MODEL_NAMES, help="sequence model (default: transformer)")
    p.add_argument("--item-repr", choices=ITEM_REPRS, help="item tower (default: id)")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--max-minutes", type=float, help="wall-time budget; the best model is kept")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--recipe",
        default="auto",
        metavar="NAME",
        help="a named recipe of model and training settings (dense, sparse-text, sparse-id, "
        "basket-repeat, multi-behaviour), 'auto' (the default: chosen from the log's history "
        "lengths, repeats, baskets, behaviours and text; printed and saved with the run) or "
        "'none' (the defaults); --model, --item-repr, --config and --set override it",
    )
    p.add_argument(
        "--blend",
        choices=("auto", "linear", "none"),
        default="auto",
        help="after training, choose on the valid split what the run ranks with and save it "
        "(RUN/blend.json, which evaluate, recommend, report and serve use): 'auto' (default) "
        "tries the baselines the log allows as a linear blend and a learned one and keeps "
        "whichever wins beyond the noise, or the model alone; 'linear' skips the learned "
        "blend; 'none' keeps the model alone without trying",
    )
    p.add_argument("--config", type=Path, help="TOML file with [model], [train], [data], [text]")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set model.d_model=128 (repeatable)",
    )  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.training import distributed  # torch is imported only for this command

    distributed.start_from_env()  # under torchrun: one of N processes training together
    try:
        return _train(args)
    finally:
        distributed.stop()


def _train(args: argparse.Namespace) -> int:
    from chronorec.recommender import Recommender
    from chronorec.training import distributed

    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model.name={json.dumps(args.model)}")
    if args.item_repr:
        overrides.append(f"model.item_repr={json.dumps(args.item_repr)}")
    if args.max_minutes is not None:
        overrides.append(f"train.max_minutes={args.max_minutes}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    from chronorec import recipes
    from chronorec.data.dataset import load_prepared

    config, choice = recipes.resolve(args.recipe, load_prepared(args.dir), args.config, overrides)
    if distributed.is_main() and not args.json:
        print(f"recipe: {choice['name']} ({choice['why']}); --recipe NAME or --set to change")
    out: Path = args.out
    if args.resume:
        if not (out / "train_state.pt").is_file():
            raise ChronorecError(f"{out}: nothing to resume (no train_state.pt)")
    elif out.exists() and any(out.iterdir()) and not args.force:
        raise ChronorecError(f"{out}: run directory exists (use --resume to continue or --force)")
    distributed.barrier()  # every process has checked --out before rank 0 writes to it

    rec = Recommender(config)
    rec.recipe = choice
    rec.fit(args.dir, run_dir=out, resume=args.resume, progress=not args.no_progress)
    result = rec.result
    assert result is not None
    if not distributed.is_main():
        return 0  # rank 0 reports
    summary = {
        "run": str(out),
        "model": config.model.name,
        "item_repr": config.model.item_repr,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stopped": result.stopped,
        "wall_minutes": round(result.wall_minutes, 3),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "valid": result.best_metrics,
        "recipe": {"name": choice["name"], "why": choice["why"]},
    }
    if "refit" in rec.meta:
        summary["refit"] = rec.meta["refit"]
    chosen = _choose_blend(rec, out, args.blend)
    summary["blend"] = {"kind": chosen.kind, "weights": chosen.weights, **chosen.figures}
    if args.json:
        print(json.dumps(summary))
        return 0
    valid = result.best_metrics
    print(
        f"trained {config.model.name} ({config.model.item_repr}) for {result.epochs} epochs "
        f"in {result.wall_minutes:.1f} min, {result.tokens_per_s:,.0f} tokens/s "
        f"(stopped: {result.stopped})"
    )
    if valid:
        print(
            f"best epoch {result.best_epoch}: valid NDCG@10 {valid['ndcg@10']:.4f}, "
            f"HR@10 {valid['hr@10']:.4f}, MRR@10 {valid['mrr@10']:.4f}"
        )
    if "refit" in rec.meta:
        refit = rec.meta["refit"]
        print(
            f"refit for the test split: {refit['epochs']} epochs on the {refit['events']:,} "
            f"events before the test cut in {refit['minutes']:.1f} min"
        )
    print(f"blend: {chosen.describe()}")
    print(f"run → {out}")
    return 0


def _choose_blend(rec: Recommender, out: Path, mode: str) -> AutoBlend:
    """The blend the run keeps (:func:`chronorec.blend.auto.auto_blend`), saved in its
    ``blend.json``."""
    from chronorec.blend import Ensemble, save_blend
    from chronorec.blend.auto import AutoBlend, auto_blend

    if mode == "none":
        chosen = AutoBlend("none")
    else:
        chosen = auto_blend(Ensemble([rec]), learned=mode == "auto")
    save_blend(out, chosen.weights, tuned_on="valid", learned=chosen.learned)
    return chosen
