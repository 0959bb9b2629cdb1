"""Run-directory files, each written atomically (temp file, then rename).

A run directory holds::

    config.json        the whole RunConfig + what the model was built for (items, behaviours, data)
    model.safetensors  the best weights so far (by train.select_metric, default NDCG@10)
    metrics.json       per-epoch history, the best epoch and its validation metrics
    items.parquet      item index -> the dataset's own item id (+ a display name)
    train_state.pt     the latest weights, optimizer and schedule, for --resume (one file,
                       so one atomic rename; runs before it kept the weights in last.safetensors)
    refit.safetensors  with train.refit: the same recipe trained again on every event before the
                       test cut, for the test split and recommendations

A run written by ``chronorec refit`` (``Recommender.refit_all``) has only config.json, items.parquet
and model.safetensors, and its meta names ``trained_on_all``: it has seen every target and is for
serving, not evaluation.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LAST_WEIGHTS_FILE = "last.safetensors"  # read by --resume of runs saved before train_state.pt
REFIT_WEIGHTS_FILE = "refit.safetensors"
STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.json"
ITEMS_FILE = "items.parquet"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp path beside ``path``, then rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def current_umask() -> int:
    """The process's file-mode creation mask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    return atomic_write(path, write)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_weights(path: str | Path, model: nn.Module) -> Path:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def load_weights(path: str | Path, model: nn.Module) -> None:
    model.load_state_dict(load_file(str(path)))


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_train_state(path: str | Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)  # type: ignore[no-any-return]
