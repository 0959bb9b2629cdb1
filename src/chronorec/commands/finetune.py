"""``chronorec finetune``: continue a run's training on the events its service has received."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from chronorec.commands import (
    add_store_argument,
    check_out_dir,
    load_with_dataset,
    store_url,
    write_derived_run,
)
from chronorec.errors import ChronorecError

RELOAD_TIMEOUT_S = 600  # a reload loads the run and refits the blend's baselines


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a run on the events posted to its service (seconds, not a retrain)",
        description="Continue the run's weights on the events the service stored (POST "
        "/events): the latest window of every user with stored events — their logged history, "
        "then the stored events — for a few epochs with a fresh optimiser, and write a new run "
        "with the same catalogue and dataset; --reload URL swaps it into the running service "
        '(POST /admin/reload {"run": OUT}): requests in flight finish on the old model. Events on '
        "items the run's catalogue lacks (items posted to the service) are left out: the text "
        "tower serves those until the next full training. The logged events of users "
        "forgotten with DELETE /users/ID are left out too. The new run cannot be evaluated (its "
        "events may come after the dataset's test targets): evaluate the run it came from.",
    )
    p.add_argument("run", type=Path, help="run directory being served")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    add_store_argument(p)
    p.add_argument("--data", type=Path, help="prepared dataset (default: the run's)")
    p.add_argument("--epochs", type=int, help="epochs over the new windows (default 5)")
    p.add_argument(
        "--lr-scale", type=float, help="learning rate as a multiple of the run's (default 1.0)"
    )
    p.add_argument(
        "--reload",
        metavar="URL",
        help="then swap the new run into the service at URL (POST URL/admin/reload, with the "
        "token in CHRONOREC_TOKEN), e.g. http://127.0.0.1:8000",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np  # torch and the data stack are imported only for this command

    from chronorec.data.collect import folded
    from chronorec.data.merge import merged_log
    from chronorec.recommender import FINETUNE_EPOCHS, FINETUNE_LR_SCALE
    from chronorec.service.store import open_store

    out: Path = args.out
    check_out_dir(out, args.force, args.run)
    url = store_url(args.db)
    rec = load_with_dataset(args.run, args.data)
    dataset = rec.dataset
    assert dataset is not None
    held = folded(dataset)  # a collected dataset holds some stored events already
    store = open_store(url)
    try:
        stored = held.new(store.iter_events())
        forgotten = store.forgotten_users(since=held.at)
    finally:
        store.close()
    rows = {item: i + 1 for i, item in enumerate(rec.item_ids())}
    behaviours = rec.meta.get("behaviours", [])
    log, user_rows = merged_log(dataset, stored, rows, behaviours, forgotten)
    kept = [e for e in stored if e.item_id in rows]
    if not kept:
        raise ChronorecError(
            f"{url}: no stored events on the run's {len(rows):,} items "
            f"({len(stored):,} events in all): nothing to fine-tune on"
        )
    users = np.unique(np.array([user_rows[e.user_id] for e in kept], dtype=np.int64))
    tuned = rec.finetune(
        log,
        users=users,
        epochs=FINETUNE_EPOCHS if args.epochs is None else args.epochs,
        lr_scale=FINETUNE_LR_SCALE if args.lr_scale is None else args.lr_scale,
        progress=not args.no_progress,
    )
    step = tuned.meta["finetuned"][-1]
    skipped = sum(e.item_id not in rows for e in stored)
    step.update({"from": str(args.run.resolve()), "new_events": len(kept), "skipped": skipped})
    write_derived_run(out, tuned, args.run)  # with the run's blend
    reloaded = None if args.reload is None else reload_service(args.reload, out)
    if args.json:
        print(json.dumps({"run": str(out), **step, "reloaded": reloaded}))
        return 0
    left_out = f" ({skipped:,} on items outside the catalogue left out)" if skipped else ""
    print(
        f"fine-tuned {tuned.config.model.name} for {step['epochs']} epoch"
        f"{'s' if step['epochs'] != 1 else ''} on {step['new_events']:,} stored events of "
        f"{step['users']:,} users in {60 * step['minutes']:.1f} s{left_out}"
    )
    if reloaded is not None:
        print(f"run → {out}, serving as {reloaded['model_version']} at {args.reload}")
    else:
        print(f'run → {out}; swap it in: POST /admin/reload {{"run": "{out}"}}')
    return 0


def reload_service(url: str, run: Path) -> dict[str, Any]:
    """POST ``url``/admin/reload {"run": run} with the token in CHRONOREC_TOKEN -> its reply."""
    body = json.dumps({"run": str(run.resolve())}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/admin/reload",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    token = os.environ.get("CHRONOREC_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    written = f"the run is written to {run}; reload it by hand"
    try:
        with urllib.request.urlopen(request, timeout=RELOAD_TIMEOUT_S) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ChronorecError(
            f"--reload {url}: the service answered {exc.code} {detail} ({written})"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ChronorecError(f"--reload {url}: {reason} ({written})") from None
