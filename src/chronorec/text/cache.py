"""Item vectors on disk, keyed by (model identity + weights hash, template, per-item text hash).

One folder per (model, encoding settings, template) under the cache root, holding
``vectors.npz`` (``hashes``: (n, 32) uint8 SHA-256 of each text, ``vectors``: (n, d) float32)
and ``meta.json`` saying what the key was made of. Every file is written to a temporary name and
renamed into place, so a crash never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1


def write_json_atomic(path: Path, value: Any) -> None:
    _write_atomic(path, lambda fh: fh.write(json.dumps(value, indent=2, sort_keys=True).encode()))


def _write_atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class VectorCache:
    """Text-hash → vector store for one key (a dict describing model, settings and template)."""

    def __init__(self, root: str | os.PathLike[str], key: dict[str, Any]) -> None:
        self.key = {"cache_version": CACHE_VERSION, **key}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()
        self.path = Path(root) / digest[:20]
        self._index: dict[bytes, int] | None = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    def _load(self) -> None:
        self._index = {}
        file = self.path / "vectors.npz"
        if not file.is_file():
            return
        try:
            with np.load(file) as data:
                hashes, vectors = data["hashes"], data["vectors"]
        except (OSError, ValueError, KeyError):
            return  # a damaged cache is a cache miss, never an error
        if hashes.ndim != 2 or hashes.shape[1] != 32 or len(hashes) != len(vectors):
            return
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index = {h.tobytes(): i for i, h in enumerate(hashes)}

    def lookup(self, hashes: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, vectors)``: a (n,) bool mask and the (found.sum(), d) cached vectors."""
        if self._index is None:
            self._load()
        assert self._index is not None
        rows = [self._index.get(h, -1) for h in hashes]
        found = np.array([r >= 0 for r in rows], dtype=bool)
        if not found.any():
            return found, np.zeros((0, self._vectors.shape[1] if self._vectors.size else 0))
        return found, self._vectors[[r for r in rows if r >= 0]]

    def save(self, hashes: list[bytes], vectors: np.ndarray) -> None:
        """Replace the stored entries with exactly these (stale texts are dropped)."""
        unique: dict[bytes, int] = {}
        for i, h in enumerate(hashes):
            unique.setdefault(h, i)
        keep = list(unique.values())
        hash_array = np.frombuffer(b"".join(unique), dtype=np.uint8).reshape(len(unique), 32)
        data = np.ascontiguousarray(vectors[keep], dtype=np.float32)
        _write_atomic(
            self.path / "vectors.npz", lambda fh: np.savez(fh, hashes=hash_array, vectors=data)
        )
        write_json_atomic(self.path / "meta.json", {**self.key, "items": len(keep)})
        self._index = {h: i for i, h in enumerate(unique)}
        self._vectors = data
