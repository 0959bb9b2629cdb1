"""``chronorec encode-items``: encode a prepared dataset's item texts into the on-disk cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chronorec.text.config import BACKENDS, PRECISIONS, TextConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode-items",
        help="encode item texts with the pretrained text model (cached)",
        description="Build each item's text from its catalogue fields, encode it with a local "
        "pretrained model (default: the packaged all-MiniLM-L6-v2) and cache the vectors in "
        "DIR/text_cache; items whose text did not change are not encoded again.",
    )
    p.add_argument("dir", type=Path, help="prepared dataset directory")
    p.add_argument(
        "--model", default=None, help="local Hugging Face model directory (default: packaged)"
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="torch backend: bf16 where the CPU has AMX (auto), or force fp32/bf16",
    )
    p.add_argument(
        "--fields", default=None, help="comma-separated catalogue columns, in template order"
    )
    p.add_argument("--max-length", type=int, default=256, help="tokens per item (default 256)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="default: all usable cores")
    p.add_argument("--cache-dir", default=None, help="default: DIR/text_cache")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.text.items import encode_dataset  # torch: only when the command runs

    config = TextConfig(
        model=args.model,
        fields=None if args.fields is None else tuple(f.strip() for f in args.fields.split(",")),
        max_length=args.max_length,
        batch_size=args.batch_size,
        backend=args.backend,
        precision=args.precision,
        threads=args.threads,
        cache_dir=args.cache_dir,
        progress=not args.json,
    )
    matrix, result = encode_dataset(args.dir, config)
    summary = {
        "items": len(result.item_ids),
        "encoded": result.encoded,
        "cached": result.cached,
        "dim": int(matrix.shape[1]),
        "seconds": round(result.seconds, 3),
        "texts_per_s": round(result.encoded / result.seconds, 1) if result.encoded else None,
        "fields": list(result.fields),
        "cache": None if result.cache_path is None else str(result.cache_path),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    rate = f"{summary['texts_per_s']:,} texts/s" if result.encoded else "all from cache"
    print(
        f"items   {summary['items']:>10,}  ({result.encoded:,} encoded, {result.cached:,} cached)"
    )
    print(f"seconds {result.seconds:>10.2f}  ({rate})")
    print(f"dim     {summary['dim']:>10}")
    print(f"fields  {', '.join(result.fields)}")
    print(f"cache   {summary['cache']}")
    return 0
