"""The CPU cost of one write to a cached user in the service's engine: an RNN with the repeat
term stepped one event (its repeat term read from the state's window) against the state
recomputed over the whole window, on the same engine (``engine._stepper`` off).

The engine is built in process on the synthetic catalogue of ``serve_load.py`` (a GRU or LSTM
with ``model.repeat``, ``max_len`` 200); each write posts one event to a user whose history is
``--history`` events and then reads their state, as the next read does. CPU seconds of this
process (``time.process_time``), so other jobs on the machine do not count.

Usage: python benchmarks/write_cost.py [--model gru] [--history 100] [--writes 300] [--no-append]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, record_results  # noqa: E402
from serve_load import synthetic_dataset  # noqa: E402


def build_engine(model: str, root: Path):  # noqa: ANN201
    from chronorec.config import ModelConfig, RunConfig, TrainConfig
    from chronorec.recommender import Recommender
    from chronorec.service.engine import Engine
    from chronorec.service.settings import ServiceSettings
    from chronorec.service.store import open_store

    data = synthetic_dataset(2_000, 500, 20).save(root / "data")
    cfg = RunConfig(
        model=ModelConfig(name=model, d_model=64, n_layers=1, max_len=200, repeat=True),
        train=TrainConfig(max_epochs=1, threads=1),
    )
    run = Recommender(cfg).fit(data, progress=False).save(root / "run")
    settings = ServiceSettings(run_dir=str(run), db_url=f"sqlite:///{root}/e.db", token="t",
                               blend="none", threads=1)  # fmt: skip
    return Engine.load(run, settings, open_store(settings.db_url))


def per_write(engine, user: str, writes: int, history: int, start: int) -> np.ndarray:  # noqa: ANN001
    from chronorec.service.store import Event

    items = engine.item_ids
    engine.ingest([Event(user, items[i % 50], engine.behaviours[0], start + i)
                   for i in range(history)])  # fmt: skip
    engine.user_state(user)  # cached
    out = np.empty(writes)
    for w in range(writes):
        t = time.process_time()
        engine.ingest([Event(user, items[w % 50], engine.behaviours[0], start + history + w)])
        engine.user_state(user)
        out[w] = time.process_time() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gru", choices=["gru", "lstm"])
    ap.add_argument("--history", type=int, default=100, help="events before the writes")
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--no-append", action="store_true", help="print only")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(args.model, Path(tmp))
        stepper = engine._stepper
        assert stepper is not None, "this model has no step-wise state"
        # writes stay within max_len so that the stepped path applies throughout
        writes = min(args.writes, engine.max_len - args.history)
        rows, table = [], []
        for name, on in (("stepped", stepper), ("recomputed", None)):
            engine._stepper = on
            cost = per_write(engine, f"user-{name}", writes, args.history, 1_800_000_000)
            ms = 1000 * cost
            row = {"path": name, "model": args.model, "history": args.history, "writes": writes,
                   "cpu_ms_mean": float(ms.mean()), "cpu_ms_p50": float(np.median(ms)),
                   "cpu_ms_p99": float(np.percentile(ms, 99))}  # fmt: skip
            rows.append(row)
            table.append([name, f"{ms.mean():.2f}", f"{np.median(ms):.2f}",
                          f"{np.percentile(ms, 99):.2f}"])  # fmt: skip
        engine.store.close()
    print(f"one write + the next state, {args.model} with the repeat term, max_len 200, "
          f"history {args.history}+ events, {writes} writes")  # fmt: skip
    print(markdown_table(["path", "CPU ms mean", "p50", "p99"], table))
    record_results("write_cost", rows, append=not args.no_append)


if __name__ == "__main__":
    main()
