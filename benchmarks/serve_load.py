"""Load test of `chronorec serve` on loopback: a synthetic 100k-item catalogue, a small trained GRU,
concurrent clients sending 90% top-10 reads and 10% event writes.

Reports requests/s, p50/p99 latency of reads and writes, and read-your-writes: after a write's
2xx, how long until that user's recommendations reflect it (n_events went up). Goals (issue 5):
top-10 p99 <= 15 ms, >= 500 requests/s, read-your-writes <= 50 ms. Bounded: --seconds of load per
retrieval mode and --max-requests in all; the server runs under `nice` and is always killed.

Usage: python benchmarks/serve_load.py [--items 100000] [--seconds 20] [--concurrency 8]
       [--modes exact,faiss-ivf] [--warm] [--blend repeat-recent=0.5,transitions=0.3]
       [--learned repeat-recent,transitions,user-knn] [--no-report]

Prints the table; one row per retrieval mode is appended to
``benchmarks/results/serve_load.jsonl`` unless ``--no-report``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402

TOKEN = "bench-token"


def synthetic_dataset(n_items: int, n_users: int, events_per_user: int, seed: int = 0):
    """Users walk short runs of consecutive items from a Zipf-popular start: learnable, skewed."""
    from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset

    rng = np.random.default_rng(seed)
    lengths = rng.integers(events_per_user // 2, events_per_user * 3 // 2 + 1, n_users)
    users = np.repeat(np.arange(1, n_users + 1), lengths)
    pos = np.arange(users.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    start = np.repeat(rng.zipf(1.3, n_users) % n_items, lengths)
    items = (start + pos + rng.integers(0, 3, users.size)) % n_items + 1
    events = pl.DataFrame(
        {
            "user": users.astype(np.int32),
            "item": items.astype(np.int32),
            "timestamp": (1_700_000_000 + 50_000 * users + 600 * pos).astype(np.int64),
            "behaviour": rng.integers(1, 3, users.size).astype(np.int8),
            "value": np.ones(users.size, dtype=np.float32),
            "position": pos.astype(np.int32),
        }
    ).with_columns(pl.col("timestamp").diff().over("user").alias("gap"))
    catalogue = pl.DataFrame(
        {
            "item": np.arange(1, n_items + 1, dtype=np.int32),
            "item_id": [f"sku{i}" for i in range(1, n_items + 1)],
            "title": [f"product {i}" for i in range(1, n_items + 1)],
        }
    )
    users_frame = pl.DataFrame(
        {
            "user": np.arange(1, n_users + 1, dtype=np.int32),
            "user_id": [f"u{u}" for u in range(1, n_users + 1)],
        }
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "format": "synthetic",
        "behaviours": ["view", "buy"],
        "has_timestamps": True,
        "text_columns": ["title"],
        "counts": {"users": n_users, "items": n_items, "events": int(users.size)},
    }
    return PreparedDataset(events=events, items=catalogue, users=users_frame, manifest=manifest)


def train_small(dataset_dir: Path, run_dir: Path) -> float:
    from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from chronorec.recommender import Recommender

    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=32, n_layers=1, max_len=20, dropout=0.0),
        train=TrainConfig(
            loss="sampled",
            n_negatives=256,
            batch_size=256,
            lr=3e-3,
            max_epochs=2,
            max_minutes=1.5,
            threads=1,
            eval_batch_size=512,
        ),
        data=DataConfig(min_events=1_000_000),  # no validation users: a 100k-item eval is slow
    )
    start = time.perf_counter()
    Recommender(cfg).fit(dataset_dir, progress=False).save(run_dir)
    return time.perf_counter() - start


def save_learned(run_dir: Path, names: list[str], rounds: int = 200) -> None:
    """Save a learned blend of ``names`` as the run's blend (``blend.json``), its trees fitted
    to random labels: what it costs the service to rank with one (the trees' number and size
    and the candidates' features set that, not what the trees learned)."""
    import lightgbm as lgb

    from chronorec.blend import LINEAR, LearnedBlend, save_blend
    from chronorec.blend.learned import PARAMS, feature_names

    terms = ("runs", *names, LINEAR)
    cols = feature_names(terms)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50_000, len(cols))), rng.integers(0, 2, 50_000)
    params = {**PARAMS, "objective": "binary", "num_threads": 1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=cols), num_boost_round=rounds)
    weights = {name: 0.1 for name in names}
    save_blend(run_dir, {}, tuned_on="given", learned=LearnedBlend(booster, terms, weights))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    run: Path, db: Path, exact_max_items: int, log: Path, blend: str = ""
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CHRONOREC_TOKEN": TOKEN, "CHRONOREC_BLEND": blend}
    cmd = [
        "nice",
        "-n",
        "5",
        sys.executable,
        "-m",
        "chronorec.cli",
        "serve",
        str(run),
        "--db",
        f"sqlite:///{db}",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--exact-max-items",
        str(exact_max_items),
    ]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=fh, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError("server not ready in 180 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


class Connection:
    """A minimal HTTP/1.1 keep-alive client: httpx's per-request CPU would otherwise take much
    of the second core from the server it measures."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(data)}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        self.writer.close()


async def load(
    url: str,
    n_users: int,
    n_items: int,
    seconds: float,
    max_requests: int,
    concurrency: int,
    write_share: float,
    seed: int,
) -> dict[str, Any]:
    reads: list[float] = []
    writes: list[float] = []
    ryw: list[float] = []
    ryw_first_read = [0, 0]  # reflected on the first read after the write, writes checked
    errors: dict[int, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds
    # a write op is read + write + read: this share of ops gives write_share of the requests
    write_ops = write_share / (1 - 2 * write_share)

    async def read(conn: Connection, user: str) -> dict:
        nonlocal sent
        sent += 1
        t0 = time.perf_counter()
        status, body = await conn.request("GET", f"/users/{user}/recommendations?k=10")
        reads.append(time.perf_counter() - t0)
        if status != 200:
            errors[status] = errors.get(status, 0) + 1
        return body

    async def client(cid: int) -> None:
        nonlocal sent
        rng = random.Random(seed * 1000 + cid)
        conn = await Connection.open(url)
        try:
            while time.perf_counter() < stop_at and sent < max_requests:
                # 5/6 known users, 1/6 users the model never saw
                if rng.random() < 5 / 6:
                    user = f"u{rng.randint(1, n_users)}"
                else:
                    user = f"new{rng.randint(1, n_users // 5)}"
                if rng.random() >= write_ops:
                    await read(conn, user)
                    continue
                # read-your-writes: read, write, then read until n_events went up
                n_before = (await read(conn, user)).get("n_events", 0)
                event = {"user_id": user, "item_id": f"sku{rng.randint(1, n_items)}"}
                sent += 1
                t0 = time.perf_counter()
                status, _ = await conn.request("POST", "/events", event)
                t1 = time.perf_counter()
                writes.append(t1 - t0)
                if status != 201:
                    errors[status] = errors.get(status, 0) + 1
                    continue
                ryw_first_read[1] += 1
                for attempt in range(50):
                    if (await read(conn, user)).get("n_events", 0) > n_before:
                        ryw.append(time.perf_counter() - t1)
                        ryw_first_read[0] += attempt == 0
                        break
                    await asyncio.sleep(0.002)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "reads": reads,
        "writes": writes,
        "ryw": ryw,
        "ryw_first": ryw_first_read,
        "errors": errors,
        "wall": wall,
        "requests": len(reads) + len(writes),
    }


def server_counters(url: str) -> dict[str, float]:
    """Read-route count and latency sum and the user-state cache counters, from /metrics."""
    text = httpx.get(url + "/metrics").text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    route = 'route="/users/{user_id}/recommendations"'
    return {
        "n": values.get(f"chronorec_request_seconds_count{{{route}}}", 0.0),
        "total": values.get(f"chronorec_request_seconds_sum{{{route}}}", 0.0),
        "hits": values.get("chronorec_user_cache_hits", 0.0),
        "misses": values.get("chronorec_user_cache_misses", 0.0),
    }


def server_side(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean in-server read latency and state-cache hit rate between two counter readings."""
    d = {k: after[k] - before[k] for k in after}
    return {
        "read_mean_ms": 1000 * d["total"] / max(d["n"], 1),
        "hit_rate": d["hits"] / max(d["hits"] + d["misses"], 1),
    }


async def warm(url: str, n_users: int, concurrency: int) -> None:
    """Read every known user once, so that the timed load meets a warm state cache (a server
    that has been up a while: returning users' states are in memory)."""
    users = iter(range(1, n_users + 1))

    async def client() -> None:
        conn = await Connection.open(url)
        try:
            for u in users:
                await conn.request("GET", f"/users/u{u}/recommendations?k=10")
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))


def ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.quantile(values, q)):.1f}" if values else "-"


def quantile_ms(values: list[float], q: float) -> float | None:
    return 1000 * float(np.quantile(values, q)) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--events-per-user", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0, help="load per mode")
    ap.add_argument("--max-requests", type=int, default=50_000, help="per mode")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--write-share", type=float, default=0.1)
    ap.add_argument("--modes", default="exact,faiss-ivf")
    ap.add_argument(
        "--no-report", action="store_true", help="print only, do not append the results"
    )
    ap.add_argument(
        "--warm", action="store_true", help="read every known user once before the timed load"
    )
    ap.add_argument(
        "--blend",
        default="",
        metavar="NAME=W,...",
        help="serve the model blended with these baselines (every request scores every item)",
    )
    ap.add_argument(
        "--learned",
        default="",
        metavar="NAME,...",
        help="serve a learned blend of these baselines (its trees fitted to random labels)",
    )
    args = ap.parse_args()
    if args.blend and args.learned:
        ap.error("--blend and --learned are two ways to blend: give one")

    rows = []
    results: list[dict[str, object]] = []
    load_before = os.getloadavg()[0]  # other processes on the same cores skew every number
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        synthetic_dataset(args.items, args.users, args.events_per_user).save(root / "data")
        print(f"dataset: {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"trained in {train_small(root / 'data', root / 'run'):.1f} s", flush=True)
        if args.learned:
            save_learned(root / "run", args.learned.split(","))
        for mode in args.modes.split(","):
            exact_max = args.items if mode == "exact" else 0
            t0 = time.perf_counter()
            proc, url = start_server(
                root / "run", root / f"{mode}.db", exact_max, root / "server.log", args.blend
            )
            try:
                startup = time.perf_counter() - t0
                ready = httpx.get(url + "/ready").json()
                if args.warm:
                    asyncio.run(warm(url, args.users, args.concurrency))
                before = server_counters(url)
                res = asyncio.run(
                    load(
                        url,
                        args.users,
                        args.items,
                        args.seconds,
                        args.max_requests,
                        args.concurrency,
                        args.write_share,
                        seed=1,
                    )
                )
                inside = server_side(before, server_counters(url))
            finally:
                stop_server(proc)
            reads, writes, ryw = res["reads"], res["writes"], res["ryw"]
            first, checked = res["ryw_first"]
            rows.append(
                [
                    ready["retrieval"]
                    + (" + blend" if ready.get("blend") else "")
                    + (" + learned blend" if ready.get("learned_blend") else ""),
                    "warmed" if args.warm else "cold",
                    f"{ready['n_items']:,}",
                    f"{ready['index_recall_at_10']:.3f}",
                    args.concurrency,
                    res["requests"],
                    f"{res['requests'] / res['wall']:.0f}",
                    ms(reads, 0.5),
                    ms(reads, 0.99),
                    f"{inside['read_mean_ms']:.1f}",
                    f"{inside['hit_rate']:.0%}",
                    ms(writes, 0.5),
                    ms(writes, 0.99),
                    ms(ryw, 0.5),
                    ms(ryw, 0.99),
                    f"{first}/{checked}",
                    ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "none",
                    f"{startup:.1f}",
                ]
            )
            results.append(
                {
                    "retrieval": rows[-1][0],
                    "state_cache_at_start": rows[-1][1],
                    "items": ready["n_items"],
                    "recall@10_vs_exact": ready["index_recall_at_10"],
                    "clients": args.concurrency,
                    "requests": res["requests"],
                    "wall_seconds": res["wall"],
                    "requests_per_s": res["requests"] / res["wall"],
                    "read_p50_ms": quantile_ms(reads, 0.5),
                    "read_p99_ms": quantile_ms(reads, 0.99),
                    "read_in_server_mean_ms": inside["read_mean_ms"],
                    "state_cache_hit_rate": inside["hit_rate"],
                    "write_p50_ms": quantile_ms(writes, 0.5),
                    "write_p99_ms": quantile_ms(writes, 0.99),
                    "ryw_p50_ms": quantile_ms(ryw, 0.5),
                    "ryw_p99_ms": quantile_ms(ryw, 0.99),
                    "ryw_on_first_read": first,
                    "ryw_checked": checked,
                    "errors": dict(res["errors"]),
                    "startup_seconds": startup,
                }
            )
            print(rows[-1], flush=True)
    header = [
        "retrieval",
        "state cache at start",
        "items",
        "recall@10 vs exact",
        "clients",
        "requests",
        "req/s",
        "read p50 ms",
        "read p99 ms",
        "read in-server mean ms",
        "state cache hits",
        "write p50 ms",
        "write p99 ms",
        "RYW p50 ms",
        "RYW p99 ms",
        "RYW on 1st read",
        "errors",
        "startup s",
    ]
    table = markdown_table(header, rows)
    notes = (
        f"Loopback, one client process (asyncio, raw HTTP/1.1 keep-alive) and the server "
        f"(`nice -n 5`) on the same machine; {args.seconds:g} s of load per mode, "
        f"{1 - args.write_share:.0%} GET "
        f"/users/{{id}}/recommendations?k=10, {args.write_share:.0%} POST /events (each write is "
        f"read-write-read on one user: RYW = time from the write's 2xx to the response of the "
        f"first read whose n_events includes it). Events are fsynced (SQLite WAL, "
        f"synchronous=FULL) before the 2xx. Model: GRU d=32, max_len 20, {args.users:,} users "
        f"x ~{args.events_per_user} events, sampled softmax. "
        + (
            "Before the timed load every known user was read once (a warm state cache, as on a "
            "server that has been up a while); hits and in-server means are of the timed load "
            "only. "
            if args.warm
            else ""
        )  # fmt: skip
        + (
            f"Blended with baselines ({args.blend}): every read z-scores the model's scores "
            "over the whole catalogue and adds the baselines' (`chronorec serve --blend`). "
            if args.blend
            else ""
        )  # fmt: skip
        + (
            f"A learned blend of {args.learned} (`chronorec.blend`: 200 trees of up to 31 "
            "leaves over every candidate's features, the z-scores and ranks over the whole "
            "catalogue first), its trees fitted to random labels: the cost of ranking with "
            "one, not its quality. "
            if args.learned
            else ""
        )  # fmt: skip
        + f"Load average before the run: "
        f"{load_before:.1f} on {os.cpu_count()} cores."
    )
    print(table + "\n\n" + notes)
    record_results(
        "serve_load",
        results,
        append=not args.no_report,
        seconds_per_mode=args.seconds,
        write_share=args.write_share,
        users=args.users,
        events_per_user=args.events_per_user,
        warm=args.warm,
        blend=args.blend or None,
        learned=args.learned or None,
        load_average_before=load_before,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
