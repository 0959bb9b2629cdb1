"""``chronorec refit``: train a run's recipe again on every event, for deployment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chronorec.commands import check_out_dir, load_with_dataset, write_derived_run
from chronorec.errors import ChronorecError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refit",
        help="retrain a run's recipe on every event (validation and test periods too) to serve",
        description="Train the run's model and config again from scratch on every event of its "
        "dataset — the validation and test periods included — for the number of epochs "
        "validation picked, and write a new run to serve or recommend from. The new run "
        "cannot be evaluated (it has seen every target): the run it came from holds the "
        "figures.",
    )
    p.add_argument("run", type=Path, help="run directory written by `chronorec train`")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--data", type=Path, help="prepared dataset (default: the one trained on)")
    p.add_argument(
        "--epochs", type=int, help="epochs to train (default: the run's validated epoch count)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    check_out_dir(out, args.force, args.run)
    if args.epochs is not None and args.epochs < 1:
        raise ChronorecError(f"--epochs must be at least 1, not {args.epochs}")
    source = load_with_dataset(args.run, args.data)
    rec = source.refit_all(epochs=args.epochs, progress=not args.no_progress)
    rec.meta["trained_on_all"]["from"] = str(args.run.resolve())
    write_derived_run(out, rec, args.run)  # with the blend tuned for the source run
    trained = rec.meta["trained_on_all"]
    if args.json:
        print(json.dumps({"run": str(out), **trained}))
        return 0
    print(
        f"refit {rec.config.model.name} ({rec.config.model.item_repr}) for {trained['epochs']} "
        f"epoch{'s' if trained['epochs'] != 1 else ''} on all {trained['events']:,} events in "
        f"{trained['minutes']:.1f} min"
    )
    print(f"run → {out} (serve or recommend from it; evaluate {args.run})")
    return 0
