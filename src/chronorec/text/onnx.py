"""The ONNX Runtime path: the model + pooling + normalisation exported once per model, cached.

The export lives in ``<cache_dir>/onnx/<model sha>/model.onnx`` (``~/.cache/chronorec/onnx/...``
when no cache dir is configured) and is written to a temporary file first, so an interrupted
export is never picked up as a model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from chronorec.errors import ConfigError
from chronorec.text.hf import SentenceEmbedder, load_hf_model
from chronorec.text.model_files import ModelFiles

log = logging.getLogger(__name__)

OPSET = 17


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chronorec"


def onnx_path(files: ModelFiles, cache_dir: str | os.PathLike[str] | None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    stamp_dir = root / "onnx"
    return stamp_dir / files.identity(stamp_dir)["sha256"][:20] / "model.onnx"


def export_onnx(files: ModelFiles, dest: Path) -> Path:
    """Trace the float32 model (eager attention, additive mask) into ``dest`` atomically."""

    try:
        import onnx  # noqa: F401  # torch's exporter needs it; fail here with a clear message
    except ImportError as exc:
        raise ConfigError("the onnx backend needs the `onnx` package: `pip install onnx`") from exc
    embedder = SentenceEmbedder(
        load_hf_model(files, attn_implementation="eager"), files.pooling, additive_mask=True
    )
    # any in-vocabulary ids do: tracing records the ops, not the values
    example_ids = torch.tensor([[1, 2, 3, 1], [1, 2, 1, 0]], dtype=torch.long)
    example_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.long)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".onnx", dir=dest.parent)
    os.close(fd)
    log.info("exporting %s to ONNX (once per model): %s", files.name, dest)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about shapes we made dynamic
            torch.onnx.export(
                embedder,
                (example_ids, example_mask),
                tmp,
                dynamo=False,
                input_names=["input_ids", "attention_mask"],
                output_names=["embeddings"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "length"},
                    "attention_mask": {0: "batch", 1: "length"},
                    "embeddings": {0: "batch"},
                },
                opset_version=OPSET,
            )
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def onnx_session(files: ModelFiles, cache_dir: str | os.PathLike[str] | None, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(
            "the onnx backend needs onnxruntime: `pip install onnxruntime`, or use --backend torch"
        ) from exc
    path = onnx_path(files, cache_dir)
    if not path.is_file():
        export_onnx(files, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for a damaged file
        raise ConfigError(
            f"cannot open the exported model {path} ({exc}); delete it to re-export"
        ) from exc
