"""Reliability of `chronorec serve` on loopback: real server processes, a small trained model
(GRU, item_repr id+text with the packaged MiniLM encoder, model.repeat=true) on a synthetic
catalogue, SQLite and PostgreSQL (the `pgserver` wheel) event stores.

Tests, one table row each [target]:
  schemathesis      every operation (/admin/reload: null body), positive and negative cases,
                    every default check [0 server errors, 0 conformance failures]
  hostile inputs    ~290 hand-made hostile requests (reliability_hostile.py), on each store
                    [0 5xx, 0 non-JSON 4xx; unexpected statuses are counted]
  kill -9 ingest    4 clients post events with unique ids, the server is killed at a random
                    moment, restarted, sent the unanswered events again; on each store
                    [0 acknowledged events lost, 0 stored twice, n_events = the store's count]
  kill -9 training  train; train again, kill -9 in a random epoch, --resume [same metrics]
  one user          8 clients x 50 events to one user [400 of 400 stored exactly once]
  reload            4 clients read and write while POST /admin/reload runs K times [0 failed]
  mixed load        80% reads / 20% writes, many users, 8 and 32 clients [0 errors; latency,
                    requests/s, the server's RSS at start and end]

Prints one table; appends the raw figures to benchmarks/results/reliability.jsonl. --quick runs
every test small (about 3 minutes); the full run takes about 30 minutes (20 of mixed load).

Usage: python benchmarks/reliability.py [--quick]
       python benchmarks/reliability.py [--schemathesis-cases 10000] [--kill-trials 3]
       [--train-trials 2] [--reloads 20] [--load-minutes 10] [--clients 8,32] [--no-postgres]
       [--only schemathesis,hostile,kill-ingest,kill-train,one-user,reload,load] [--no-append]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_results, markdown_table  # noqa: E402
from reliability_hostile import Service, run_hostile, run_schemathesis, tracebacks  # noqa: E402
from serve_load import TOKEN, Connection, synthetic_dataset  # noqa: E402

Row = dict[str, Any]
TESTS = ("schemathesis", "hostile", "kill-ingest", "kill-train", "one-user", "reload", "load")


class Bench:
    """The work directory, the served run, the stores, and every server log to look through."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args, self.run = root, args, root / "run"
        self.services: list[Service] = []  # every server started, to stop and read the logs of
        self.pg: Any = None

    def setup(self) -> float:
        from chronorec.config import ModelConfig, RunConfig, TrainConfig
        from chronorec.recommender import Recommender

        start = time.perf_counter()
        synthetic_dataset(self.args.items, self.args.users, 12).save(self.root / "data")
        cfg = RunConfig(
            model=ModelConfig(name="gru", item_repr="id+text", d_model=32, n_layers=1,
                              max_len=20, dropout=0.0, repeat=True, text_hidden=64),
            train=TrainConfig(max_epochs=3, batch_size=128, lr=3e-3, threads=2, warmup_steps=1),
            text={"cache_dir": str(self.root / "text-cache"), "progress": False},
        )  # fmt: skip
        Recommender(cfg).fit(self.root / "data", progress=False).save(self.run)
        return time.perf_counter() - start

    def db(self, backend: str, name: str) -> str:
        """A new event store: a SQLite file, or a database on the one PostgreSQL server."""
        if backend == "sqlite":
            return f"sqlite:///{self.root / name}.db"
        import pgserver
        import psycopg

        if self.pg is None:
            self.pg = pgserver.get_server(self.root / "pg", cleanup_mode="stop")
        with psycopg.connect(self.pg.get_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name.replace('-', '_')}")
        return urlsplit(self.pg.get_uri())._replace(path=f"/{name.replace('-', '_')}").geturl()

    def service(self, backend: str, name: str) -> Service:
        log = self.root / f"{name}-{backend}.log"
        self.services.append(Service(self.run, self.db(backend, name), log))
        return self.services[-1]


def count_by_id(db_url: str, prefix: str) -> tuple[Counter[str], Counter[str]]:
    """Stored events whose event_id starts with ``prefix``: a count per event_id and per user."""
    from chronorec.service.store import open_store

    store = open_store(db_url)
    mine = [e for e in store.iter_events() if (e.event_id or "").startswith(prefix)]
    store.close()
    return Counter(str(e.event_id) for e in mine), Counter(e.user_id for e in mine)


async def n_events(url: str, users: list[str]) -> dict[str, int]:
    conn = await Connection.open(url)
    got = {u: (await conn.request("GET", f"/users/{u}/recommendations?k=1"))[1]["n_events"]
           for u in users}  # fmt: skip
    conn.close()
    return got


async def post_each(url: str, events: list[dict[str, str]]) -> int:  # acknowledged
    conn, acked = await Connection.open(url), 0
    for e in events:
        acked += (await conn.request("POST", "/events", e))[0] == 201
    conn.close()
    return acked


def row(test: str, size: str, result: str, target: str, ok: bool, **raw: Any) -> Row:
    return {"test": test, "size": size, "result": result, "target": target, "pass": ok, **raw}


def test_schemathesis(b: Bench) -> list[Row]:
    with b.service("sqlite", "schemathesis") as srv:
        r = run_schemathesis(srv.url, TOKEN, b.args.schemathesis_cases)
    kinds = "; ".join(f"{k} x{v['count']}" for k, v in r["kinds"].items())
    result = (f"{r['server_errors']} server errors, {r['failures']} conformance failures"
              + (f" ({kinds})" if kinds else "") + f"; {r['seconds']:.0f} s")  # fmt: skip
    ok = r["server_errors"] == r["failures"] == 0
    return [row("schemathesis", f"{r['cases']} cases", result, "0 5xx, 0 failures", ok, **r)]


def test_hostile(b: Bench) -> list[Row]:
    rows = []
    for backend in ["sqlite"] + ["postgresql"] * (not b.args.no_postgres):
        with b.service(backend, "hostile") as srv:
            r = run_hostile(srv.url, TOKEN)
            ready = httpx.get(srv.url + "/ready", timeout=10).status_code == 200
        odd = ", ".join(f"{w['case']} -> {w['status']}" for w in r["wrong"])
        result = (f"{r['5xx']} 5xx, {r['not a JSON error']} non-JSON 4xx, {r['no response']} no "
                  f"response, {r['unexpected status']} unexpected status"
                  + (f" ({odd[:400]})" if odd else "")
                  + ("" if ready else "; NOT READY after"))  # fmt: skip
        ok = r["5xx"] == r["not a JSON error"] == r["no response"] == 0 and ready
        rows.append(row(f"hostile inputs ({backend})", f"{r['cases']} requests", result,
                        "0 5xx, 0 non-JSON 4xx", ok, backend=backend, **r))  # fmt: skip
    return rows


async def ingest_until_killed(
    srv: Service, trial: str, n_items: int, kill_after: float
) -> tuple[set[str], dict[str, dict[str, str]]]:
    """4 clients post batches of 1-4 events until the server is killed ``kill_after`` s in: the
    acknowledged event ids, and the events sent but not acknowledged."""
    acked: set[str] = set()
    pending: dict[str, dict[str, str]] = {}

    async def client(cid: int) -> None:
        rng, n, conn = random.Random(f"{trial}-{cid}"), 0, await Connection.open(srv.url)
        while True:
            batch = [{"user_id": f"{trial}-u{rng.randint(1, 40)}", "event_id": f"{trial}-{cid}-"
                      f"{n + i}", "item_id": f"sku{rng.randint(1, n_items)}"}
                     for i in range(rng.randint(1, 4))]  # fmt: skip
            n += len(batch)
            pending.update({e["event_id"]: e for e in batch})
            try:
                req = conn.request("POST", "/events", {"events": batch})
                status, _ = await asyncio.wait_for(req, 30)
            except Exception:  # the server is gone: these stay unacknowledged
                conn.close()
                return
            if status == 201:
                acked.update(pending.pop(e["event_id"])["event_id"] for e in batch)

    asyncio.get_running_loop().call_later(kill_after, srv.kill9)
    await asyncio.gather(*(client(i) for i in range(4)))
    return acked, pending


def kill_ingest_trial(b: Bench, srv: Service, trial: str, rng: random.Random) -> dict[str, int]:
    kill_after = rng.uniform(0.5, b.args.kill_window)
    acked, pending = asyncio.run(ingest_until_killed(srv.start(), trial, b.args.items, kill_after))
    with srv:  # started again on the same store, after the crash
        before, _ = count_by_id(srv.db_url, trial + "-")
        resent = asyncio.run(post_each(srv.url, list(pending.values())))  # a client's retries
        per_id, per_user = count_by_id(srv.db_url, trial + "-")
        served = asyncio.run(n_events(srv.url, sorted(per_user)))
    return {"acknowledged": len(acked), "lost": len(acked - before.keys()),
            "duplicates": sum(c > 1 for c in per_id.values()), "unanswered": len(pending),
            "unanswered_stored": sum(i in before for i in pending),
            "resend_refused": len(pending) - resent,
            "missing_after_resend": len((acked | pending.keys()) - per_id.keys()),
            "n_events_mismatch": sum(served[u] != c for u, c in per_user.items())}  # fmt: skip


def test_kill_ingest(b: Bench) -> list[Row]:
    rows = []
    for backend in ["sqlite"] + ["postgresql"] * (not b.args.no_postgres):
        srv, rng = b.service(backend, "kill-ingest"), random.Random(7)
        trials = [kill_ingest_trial(b, srv, f"k{t}", rng) for t in range(b.args.kill_trials)]
        t = {k: sum(x[k] for x in trials) for k in trials[0]}
        result = (f"{t['acknowledged']} acknowledged, {t['lost']} lost, {t['duplicates']} "
                  f"duplicates; {t['unanswered']} unanswered at the kill ({t['unanswered_stored']} "
                  f"stored anyway), resent: {t['missing_after_resend']} missing after; "
                  f"{t['n_events_mismatch']} users with n_events != store")  # fmt: skip
        bad = t["lost"] + t["duplicates"] + t["missing_after_resend"] + t["n_events_mismatch"]
        rows.append(row(f"kill -9 during ingest ({backend})", f"{len(trials)} trials x 4 clients",
                        result, "0 lost, 0 duplicates", bad + t["resend_refused"] == 0,
                        backend=backend, trials=trials, **t))  # fmt: skip
    return rows


def train_cmd(b: Bench, data: Path, out: Path, resume: bool) -> list[str]:
    # one thread: torch's two-thread CPU training is not bit-reproducible run to run
    sets = ["model.repeat=true", "model.d_model=64", "model.max_len=20", "train.threads=1",
            f"train.max_epochs={b.args.train_epochs}", f'text.cache_dir="{b.root / "text-cache"}"',
            "text.progress=false"]  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "chronorec.cli",
        "train",
        str(data),
        "--out",
        str(out),
        "--model",
        "gru",
        "--item-repr",
        "id+text",
        "--no-progress",
        "--recipe",
        "none",
        "--blend",
        "none",
    ]  # the test's own settings, no blend search
    return cmd + [a for s in sets for a in ("--set", s)] + (["--resume"] if resume else [])


def summary(out: Path) -> dict[str, Any]:  # the run's metrics.json, or no epochs yet
    try:
        return dict(json.loads((out / "metrics.json").read_text()))
    except (OSError, ValueError):
        return {"epochs": 0}


def kill_and_resume(b: Bench, data: Path, out: Path, epoch_s: float, rng: random.Random) -> int:
    """Train, kill -9 in a random epoch after the first, resume; the epochs done at the kill."""
    kill_epoch = rng.randint(1, b.args.train_epochs - 1)
    with (b.root / "train.log").open("ab") as log:
        proc = subprocess.Popen(train_cmd(b, data, out, False), stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
        while summary(out)["epochs"] < kill_epoch and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.9 * epoch_s))
        if proc.poll() is not None:
            raise RuntimeError("training ended before the kill")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = int(summary(out)["epochs"])
        subprocess.run(train_cmd(b, data, out, True), stdout=log, stderr=log, check=True)
    return done


def test_kill_train(b: Bench) -> list[Row]:
    data, rng, trials = b.root / "train-data", random.Random(11), []
    synthetic_dataset(b.args.items, b.args.train_users, 12, seed=3).save(data)
    t0 = time.perf_counter()
    subprocess.run(train_cmd(b, data, b.root / "ref", False), capture_output=True, check=True)
    ref_s, want = time.perf_counter() - t0, summary(b.root / "ref")["best_valid"]
    epoch_s = float(np.mean([h["seconds"] for h in summary(b.root / "ref")["history"]]))

    def diff(run: Path) -> float:
        return max(abs(summary(run)["best_valid"][k] - v) for k, v in want.items())

    for t in range(b.args.train_trials):
        killed_after = kill_and_resume(b, data, b.root / f"kill{t}", epoch_s, rng)
        trials.append({"killed_after_epoch": killed_after, "max_metric_diff": diff(b.root /
                       f"kill{t}"), "epochs": summary(b.root / f"kill{t}")["epochs"]})  # fmt: skip
    control = None
    if any(t["max_metric_diff"] for t in trials):  # is it the resume, or any two runs?
        subprocess.run(train_cmd(b, data, b.root / "ref2", False), capture_output=True)
        control = diff(b.root / "ref2")
    result = (f"reference valid NDCG@10 {want['ndcg@10']:.4f} ({ref_s:.0f} s); "
              + "; ".join(f"killed in epoch {t['killed_after_epoch'] + 1}, resumed: max metric "
                          f"diff {t['max_metric_diff']:.2g}" for t in trials)
              + ("" if control is None else
                 f"; 2 uninterrupted runs differ by {control:.2g}"))  # fmt: skip
    ok = all(t["max_metric_diff"] == 0 and t["epochs"] == b.args.train_epochs for t in trials)
    return [row("kill -9 during training, --resume", f"{len(trials)} trials x "
                f"{b.args.train_epochs} epochs", result, "same metrics", ok, reference=want,
                trials=trials, control_metric_diff=control)]  # fmt: skip


def test_one_user(b: Bench) -> list[Row]:
    clients, per, user = 8, 50, "one-user"
    events = [[{"user_id": user, "item_id": f"sku{(c * per + i) % b.args.items + 1}",
                "event_id": f"one-{c}-{i}"} for i in range(per)]
              for c in range(clients)]  # fmt: skip

    async def all_clients(url: str) -> int:
        return sum(await asyncio.gather(*(post_each(url, evs) for evs in events)))

    with b.service("sqlite", "one-user") as srv:
        acked = asyncio.run(all_clients(srv.url))
        once = sum(c == 1 for c in count_by_id(srv.db_url, "one-")[0].values())
        served = asyncio.run(n_events(srv.url, [user]))[user]
    n = clients * per
    result = f"{acked}/{n} acknowledged, {once}/{n} stored exactly once, n_events {served}"
    return [row("concurrent writes to one user", f"{clients} clients x {per} events", result,
                f"{n} of {n}", acked == once == served == n, acknowledged=acked,
                stored_once=once, n_events=served)]  # fmt: skip


async def drive(url: str, clients: int, n_items: int, tag: str, stop: asyncio.Event,
                user: Any, write_share: float = 0.2) -> dict[str, Any]:  # fmt: skip
    """Keep-alive clients read (GET top-10) and write (POST /events, unique event_ids) for the
    users ``user(rng, client)`` picks until ``stop`` is set: latencies, errors, acks per user."""
    latency: dict[bool, list[float]] = {False: [], True: []}  # of reads, of writes
    errors: Counter[str] = Counter()
    acked: Counter[str] = Counter()

    async def client(cid: int) -> None:
        rng, n, conn = random.Random(f"{tag}-{cid}"), 0, await Connection.open(url)
        while not stop.is_set():
            u, write, t0 = user(rng, cid), rng.random() < write_share, time.perf_counter()
            n += 1
            e = {"user_id": u, "item_id": f"sku{rng.randint(1, n_items)}", "event_id": f"{tag}-"
                 f"{cid}-{n}"} if write else None  # fmt: skip
            path = "/events" if write else f"/users/{u}/recommendations?k=10"
            try:
                status, _ = await conn.request("POST" if write else "GET", path, e)
            except Exception as exc:  # a broken connection: count it, open another
                errors[type(exc).__name__] += 1
                conn.close()
                conn = await Connection.open(url)
                continue
            latency[write].append(time.perf_counter() - t0)
            if write:
                acked[u] += status == 201
            if status >= 300:
                errors[str(status)] += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return {"reads": latency[False], "writes": latency[True], "errors": errors, "acked": acked,
            "wall": time.perf_counter() - t0}  # fmt: skip


def test_reload(b: Bench) -> list[Row]:  # half the reloads swap in a copy of the run
    copy, statuses = b.root / "run-copy", []
    shutil.copytree(b.run, copy)

    async def reload_while_loaded(url: str) -> dict[str, Any]:
        stop = asyncio.Event()
        load = asyncio.create_task(
            drive(url, 4, b.args.items, "rl", stop, lambda rng, c: f"rl-{c}", write_share=0.3)
        )
        conn = await Connection.open(url)
        for i in range(b.args.reloads):
            await asyncio.sleep(0.2)
            body = {"run": str(copy if i % 2 else b.run)}
            statuses.append((await conn.request("POST", "/admin/reload", body))[0])
        conn.close()
        stop.set()
        return await load

    with b.service("sqlite", "reload") as srv:
        r = asyncio.run(reload_while_loaded(srv.url))
        served = asyncio.run(n_events(srv.url, sorted(r["acked"])))
    failed, n = sum(r["errors"].values()), len(r["reads"]) + len(r["writes"])
    stale = sum(served[u] != k for u, k in r["acked"].items())
    result = (f"{statuses.count(200)}/{len(statuses)} reloads ok; {n} requests, {failed} failed"
              f"{' ' + str(r['errors']) if failed else ''}; {stale} users whose n_events missed "
              "an acknowledged write")  # fmt: skip
    ok = failed == stale == 0 and statuses.count(200) == len(statuses)
    return [row("reload under load", f"{len(statuses)} reloads, 4 clients", result,
                "0 failed requests", ok, reload_statuses=statuses, requests=n,
                errors=r["errors"], stale_users=stale)]  # fmt: skip


def mixed_load(b: Bench, clients: int) -> dict[str, Any]:
    """One server, ``clients`` clients for --load-minutes: 70% of requests for users the model
    knows, 30% for 50,000 others; RSS every 2 s."""

    def pick(rng: random.Random, _: int) -> str:
        known = rng.random() < 0.7
        return f"u{rng.randint(1, b.args.users)}" if known else f"n{rng.randint(1, 50_000)}"

    async def timed(srv: Service, rss: list[float]) -> dict[str, Any]:
        stop = asyncio.Event()
        load = asyncio.create_task(drive(srv.url, clients, b.args.items, f"L{clients}", stop, pick))
        end = time.monotonic() + 60 * b.args.load_minutes
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(2.0, left))
            rss.append(srv.rss_mb())
        stop.set()
        return await load

    with b.service("sqlite", f"load-{clients}") as srv:
        rss = [srv.rss_mb()]
        r = asyncio.run(timed(srv, rss))
        stored = sum(count_by_id(srv.db_url, f"L{clients}-")[0].values())
    n = len(r["reads"]) + len(r["writes"])
    return {"clients": clients, "minutes": b.args.load_minutes, "requests": n,
            "failed": sum(r["errors"].values()), "errors": r["errors"],
            "req_per_s": round(n / r["wall"], 1), "read_p50_ms": ms(r["reads"], 0.5),
            "read_p99_ms": ms(r["reads"], 0.99), "write_p50_ms": ms(r["writes"], 0.5),
            "write_p99_ms": ms(r["writes"], 0.99), "rss_start_mb": round(rss[0]),
            "rss_end_mb": round(rss[-1]), "rss_max_mb": round(max(rss)),
            "acknowledged": sum(r["acked"].values()), "stored": stored}  # fmt: skip


def ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.quantile(values, q)), 1) if values else float("nan")


def test_load(b: Bench) -> list[Row]:
    rows = []
    for f in (mixed_load(b, clients) for clients in b.args.clients):
        result = (f"{f['requests']} requests, {f['failed']} errors, {f['req_per_s']:.0f} req/s; "
                  f"read p50/p99 {f['read_p50_ms']}/{f['read_p99_ms']} ms, write p50/p99 "
                  f"{f['write_p50_ms']}/{f['write_p99_ms']} ms; RSS {f['rss_start_mb']} -> "
                  f"{f['rss_end_mb']} MB (max {f['rss_max_mb']}); {f['stored']}/"
                  f"{f['acknowledged']} writes stored")  # fmt: skip
        rows.append(row("mixed load 80/20", f"{f['minutes']:g} min x {f['clients']} clients",
                        result, "0 errors", f["failed"] == 0 and f["stored"] == f["acknowledged"],
                        **f))  # fmt: skip
    return rows


FULL = {"schemathesis_cases": 10_000, "kill_trials": 3, "kill_window": 3.0, "train_trials": 2,
        "train_users": 8000, "train_epochs": 6, "reloads": 20, "load_minutes": 10.0}  # fmt: skip
QUICK = {"schemathesis_cases": 300, "kill_trials": 1, "kill_window": 2.0, "train_trials": 1,
         "train_users": 2000, "train_epochs": 4, "reloads": 6, "load_minutes": 0.1}  # fmt: skip


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="every test small (about 3 minutes)")
    for key, full in FULL.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(full),
                        help=f"default {full:g}, --quick {QUICK[key]:g}")  # fmt: skip
    ap.add_argument("--clients", default="8,32", help="mixed-load client counts (8,32)")
    ap.add_argument("--items", type=int, default=400, help="catalogue of the served run (400)")
    ap.add_argument("--users", type=int, default=1500, help="users of its data (1500)")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--no-append", action="store_true", help="print, do not append the results")
    ap.add_argument("--only", default=",".join(TESTS), help="comma-separated tests to run")
    args = ap.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        setattr(args, key, value if getattr(args, key) is None else getattr(args, key))
    args.clients, args.only = [int(c) for c in args.clients.split(",")], args.only.split(",")
    if unknown := set(args.only) - set(TESTS):
        ap.error(f"unknown tests {sorted(unknown)}; known: {', '.join(TESTS)}")
    return args


def run_tests(b: Bench) -> list[Row]:
    """Every selected test; one that raises is a failed row. A row also fails on a traceback
    in the logs of the servers its test started (of its store, for a row of one store)."""
    rows = []
    for name in b.args.only:
        seen, t0 = len(b.services), time.perf_counter()
        try:
            new = globals()["test_" + name.replace("-", "_")](b)  # "kill-ingest": test_kill_ingest
        except Exception as exc:  # the suite goes on; the row says what broke
            new = [row(name, "-", f"ERROR {type(exc).__name__}: {exc}"[:300], "-", False)]
        finally:
            for srv in b.services[seen:]:  # left running by a test that failed
                srv.stop()
        for r in new:
            logs = [s.log for s in b.services[seen:] if s.log.stem.endswith(r.get("backend", ""))]
            r["server_tracebacks"] = [tb for log in logs for tb in tracebacks(log)]
            r["pass"] = r["pass"] and not r["server_tracebacks"]
            r["result"] += f"; {len(r['server_tracebacks'])} server tracebacks" * (
                len(r["server_tracebacks"]) > 0)  # fmt: skip
            r["seconds"] = round(time.perf_counter() - t0, 1)
        rows += new
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def main() -> int:
    args, started = parse_args(), time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        b = Bench(Path(tmp), args)
        try:
            print(f"set-up (dataset, model): {b.setup():.0f} s", flush=True)
            rows = run_tests(b)
        finally:
            if b.pg is not None:
                b.pg.cleanup()
    table = [[r["test"], r["size"], r["result"], r["target"], "pass" if r["pass"] else "FAIL"]
             for r in rows]  # fmt: skip
    print("\n" + markdown_table(["test", "size", "result", "target", "pass"], table))
    for r in rows:
        for tb in r["server_tracebacks"][:1]:  # the rest are in the raw results
            print(f"\n--- a server traceback during {r['test']}:\n{tb}")
    wall = time.perf_counter() - started
    print(f"\n{sum(r['pass'] for r in rows)}/{len(rows)} passed in {wall:.0f} s")
    if not args.no_append:
        print(f"raw results appended to {append_results('reliability', rows, quick=args.quick)}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
