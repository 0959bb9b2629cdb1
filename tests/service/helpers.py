"""Tiny data, tiny models and a real uvicorn server on loopback for the service tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

from chronorec.config import ModelConfig, RunConfig, TrainConfig
from chronorec.data.dataset import FORMAT_VERSION, PreparedDataset
from chronorec.recommender import Recommender

TOKEN = "test-token-123"
# Two shops in one catalogue: users stay within one, so text that reads like a shop's items
# should be recommended to that shop's users.
HOSE_WORDS = ["garden", "hose", "watering", "sprinkler", "nozzle", "lawn", "green", "reel"]
CABLE_WORDS = ["usb", "cable", "charger", "charging", "adapter", "cord", "phone", "plug"]


def write_tiny_bert(path: Path, seed: int = 0) -> Path:
    """A random-initialised 2-layer BERT with a word-level vocabulary for the words above."""
    import torch
    from transformers import BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = HOSE_WORDS + CABLE_WORDS + ["title", "price", "under", "to", "new", "item"]
    vocab = list(dict.fromkeys(special + words + chars + ["##" + c for c in chars]))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(path)
    return path


def two_shop_dataset(n_users: int = 60, per_shop: int = 12, seed: int = 0) -> PreparedDataset:
    """Items 1..per_shop are garden items, the rest cables; each user walks one shop in order."""
    rng = np.random.default_rng(seed)
    titles = []
    for shop in (HOSE_WORDS, CABLE_WORDS):
        for _ in range(per_shop):
            titles.append(" ".join(rng.choice(shop, size=3, replace=False)))
    n_items = 2 * per_shop
    lengths = rng.integers(5, 11, n_users)
    users = np.repeat(np.arange(1, n_users + 1), lengths)
    pos = np.arange(users.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    shop = np.repeat(np.arange(n_users) % 2, lengths)  # odd users: garden, even: cables
    start = np.repeat(rng.integers(0, per_shop, n_users), lengths)
    items = shop * per_shop + (start + pos) % per_shop + 1
    events = pl.DataFrame(
        {
            "user": users.astype(np.int32),
            "item": items.astype(np.int32),
            "timestamp": (1_600_000_000 + 100_000 * users + 3600 * pos).astype(np.int64),
            "behaviour": rng.integers(1, 3, users.size).astype(np.int8),
            "value": np.ones(users.size, dtype=np.float32),
            "position": pos.astype(np.int32),
        }
    ).with_columns(pl.col("timestamp").diff().over("user").alias("gap"))
    catalogue = pl.DataFrame(
        {
            "item": np.arange(1, n_items + 1, dtype=np.int32),
            "item_id": [f"i{i}" for i in range(1, n_items + 1)],
            "title": titles,
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


def train_run(
    dataset_dir: Path, out: Path, item_repr: str, bert: Path | None, epochs: int = 8
) -> Path:
    text = (
        {}
        if bert is None
        else {"model": str(bert), "cache_dir": str(out.parent / "tcache"), "progress": False}
    )
    cfg = RunConfig(
        model=ModelConfig(
            name="gru",
            item_repr=item_repr,
            d_model=16,
            n_layers=1,
            max_len=8,
            dropout=0.0,
            text_hidden=32,
        ),
        train=TrainConfig(
            max_epochs=epochs, batch_size=16, lr=1e-2, threads=1, patience=50, warmup_steps=1
        ),
        text=text,
    )
    Recommender(cfg).fit(dataset_dir, progress=False).save(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``chronorec serve`` in a subprocess on a loopback port, with a real SQLite file (``db`` a
    path) or a real PostgreSQL database (``db`` a ``postgresql://`` URL)."""

    def __init__(self, run: Path, db: Path | str, log: Path, **env: str) -> None:
        self.run, self.log_path = run, log
        self.db_url = db if isinstance(db, str) else f"sqlite:///{db}"
        self.env = {**os.environ, "CHRONOREC_TOKEN": TOKEN, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> Server:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "chronorec.cli",
            "serve",
            str(self.run),
            "--db",
            self.db_url,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)
