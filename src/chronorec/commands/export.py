"""``chronorec export``: a run's item (and user) vectors as Parquet, for an ANN index elsewhere."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chronorec.commands import check_out_dir, write_dir
from chronorec.errors import ChronorecError

ITEMS_FILE = "item_vectors.parquet"
USERS_FILE = "user_vectors.parquet"
MANIFEST_FILE = "export.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's item (and user) vectors as Parquet for an inner-product ANN index",
        description="Write item_vectors.parquet (item_id, name, vector) and, with --users, "
        "user_vectors.parquet (user_id, vector: the query after each user's whole logged "
        "history). The inner product of a user vector and an item vector is the model's score, "
        "so any inner-product index (FAISS, ScaNN, pgvector, ...) ranks as the model does — "
        "except a model's repeat term (model.repeat), which depends on the history and is "
        "named in export.json when present.",
    )
    p.add_argument("run", type=Path, help="run directory written by `chronorec train`")
    p.add_argument("--out", type=Path, required=True, help="directory to write")
    p.add_argument("--data", type=Path, help="prepared dataset (default: the one trained on)")
    p.add_argument("--users", action="store_true", help="also the users' vectors")
    p.add_argument("--force", action="store_true", help="overwrite an existing directory")
    p.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from chronorec.recommender import Recommender  # torch is imported only for this command

    out: Path = args.out
    check_out_dir(out, args.force, args.run, what="output directory")
    rec = Recommender.load(args.run, args.data)
    if args.users and rec.dataset is None:
        raise ChronorecError(
            f"{args.run}: --users needs the event log, and the run's dataset "
            f"{rec.meta.get('dataset')!r} is gone; give it with --data"
        )
    items = rec.item_vectors()
    dim = int(items.shape[1])
    manifest = {
        "run": str(args.run.resolve()),
        "score": "inner product: user_vector . item_vector",
        "dim": dim,
        "items": int(items.shape[0]),
        "users": None,
        "model": rec.config.model.name,
        "item_repr": rec.config.model.item_repr,
        "repeat_term_not_included": rec.config.model.repeat,
    }

    def write(tmp: Path) -> None:
        pl.DataFrame(
            {"item_id": rec.item_ids(), "name": rec.item_names(), "vector": items},
            schema={"item_id": pl.String, "name": pl.String, "vector": pl.Array(pl.Float32, dim)},
        ).write_parquet(tmp / ITEMS_FILE)
        if args.users:
            user_ids, users = rec.user_vectors()
            pl.DataFrame(
                {"user_id": user_ids, "vector": users},
                schema={"user_id": pl.String, "vector": pl.Array(pl.Float32, dim)},
            ).write_parquet(tmp / USERS_FILE)
            manifest["users"] = len(user_ids)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    write_dir(out, write)
    if args.json:
        print(json.dumps(manifest))
        return 0
    users_line = f", {manifest['users']:,} users" if args.users else ""
    print(f"exported {manifest['items']:,} items{users_line} ({dim}-d) → {out}")
    if rec.config.model.repeat:
        print("note: the model's repeat term is not in the vectors (export.json names it)")
    return 0
