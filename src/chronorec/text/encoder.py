"""The pretrained text encoder: texts in, L2-normalised float32 vectors out.

Speed comes from doing less work, not from a different model: duplicate texts are encoded once;
texts are tokenised once, sorted by length and cut into batches under a token budget, so almost no
compute is spent on padding; the forward runs under ``torch.inference_mode`` with the thread count
set for the machine; and on CPUs with AMX the matrix products run in bfloat16 (cosine to the
float32 vectors ≥ 0.9999, checked by the benchmark), or in ONNX Runtime with ``backend="onnx"``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from chronorec.errors import ConfigError
from chronorec.hardware import cpu_has_amx
from chronorec.progress import bars
from chronorec.text.config import TextConfig
from chronorec.text.hf import SentenceEmbedder, load_hf_model
from chronorec.text.model_files import ModelFiles, resolve_model, set_offline
from chronorec.text.template import default_fields, fallback_text, item_text

log = logging.getLogger(__name__)

LENGTH_STEP = 8
SMALL_BATCH_TOKENS = 128  # batches up to this many (texts x length) run on one thread


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_precision(config: TextConfig) -> str:
    """The precision the torch backend will run at ("fp32" for ONNX)."""
    if config.backend == "onnx":
        return "fp32"
    if config.precision == "auto":
        # AMX only: with AVX-512 BF16 (a 2-core AMD EPYC) bf16 encoded Amazon Scientific 1.7x
        # faster (60 vs 35 texts/s) but peaked at 1.35-1.62 GB RSS against 1.13-1.15 GB.
        return "bf16" if cpu_has_amx() else "fp32"
    return config.precision


class ItemEncoder:
    """A loaded text model. Build it with :meth:`load`; reuse it, loading takes seconds."""

    def __init__(
        self,
        files: ModelFiles,
        config: TextConfig,
        tokenizer: Any,
        embedder: SentenceEmbedder | None = None,
        session: Any = None,
        precision: str = "fp32",
    ) -> None:
        self.files = files
        self.config = config
        self.tokenizer = tokenizer
        self.embedder = embedder
        self.session = session
        self.precision = precision
        self.max_length = min(config.max_length, files.max_length)
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.dim = int(self.encode_texts(["dimension probe"], progress=False).shape[1])

    @classmethod
    def load(cls, config: TextConfig | None = None) -> ItemEncoder:
        config = config or TextConfig()
        files = resolve_model(config.model)
        threads = config.threads or available_cores()
        tokenizer = load_tokenizer(files)
        if config.backend == "onnx":
            from chronorec.text.onnx import onnx_session

            session = onnx_session(files, config.cache_dir, threads)
            return cls(files, config, tokenizer, session=session, precision="fp32")
        torch.set_num_threads(threads)
        precision = resolve_precision(config)
        embedder = SentenceEmbedder(load_hf_model(files), files.pooling)
        log.info("loaded %s (%s, %s, %d threads)", files.name, files.path, precision, threads)
        return cls(files, config, tokenizer, embedder=embedder, precision=precision)

    def settings(self) -> dict[str, Any]:
        """Everything besides the model files that changes the vectors (part of the cache key)."""
        return {
            "backend": self.config.backend,
            "precision": self.precision,
            "max_length": self.max_length,
        }

    def encode_texts(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised; equal texts are encoded once."""
        if len(texts) == 0:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        unique: dict[str, int] = {}
        slots = np.array([unique.setdefault(t, len(unique)) for t in texts], dtype=np.int64)
        token_ids = self.tokenizer(
            list(unique),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows at once
        out: np.ndarray | None = None
        show = self.config.progress if progress is None else progress
        with tqdm(
            total=len(order),
            unit="text",
            desc="encoding",
            disable=not bars(show) or len(order) < 512,
        ) as bar:
            for batch in self._batches(lengths[order]):
                rows = order[batch]
                vectors = self._forward(*self._pad([token_ids[i] for i in rows], lengths[rows]))
                if out is None:
                    out = np.empty((len(unique), vectors.shape[1]), dtype=np.float32)
                out[rows] = vectors
                bar.update(len(rows))
        assert out is not None
        return out[slots]

    def encode_item(self, fields: Mapping[str, Any]) -> np.ndarray:
        """(dim,) vector of one item from its catalogue fields (the service's cold start)."""
        order = self.config.fields or default_fields([k for k in fields if k != "item_id"])
        text = item_text(fields, order, self.config.max_field_chars)
        if not text:
            text = fallback_text(str(fields.get("item_id", "")))
        return self.encode_texts([text], progress=False)[0]

    def _batches(self, sorted_lengths: np.ndarray) -> list[slice]:
        """Consecutive runs of the length-sorted texts under both the count and token budgets."""
        batches, start = [], 0
        budget, most = self.config.max_batch_tokens, self.config.batch_size
        while start < len(sorted_lengths):
            # longest first, so the first text of a batch sets its padded length
            size = max(1, min(most, budget // self._padded(int(sorted_lengths[start]))))
            batches.append(slice(start, min(start + size, len(sorted_lengths))))
            start += size
        return batches

    def _padded(self, length: int) -> int:
        """Batch widths are rounded up to a multiple of 8: a few distinct shapes instead of one per
        length keeps the kernel caches of oneDNN (bf16) small — one shape per length grew peak RSS
        from 0.8 to 1.8 GB on Amazon Scientific."""
        return min(-(-max(length, 1) // LENGTH_STEP) * LENGTH_STEP, max(self.max_length, length))

    def _pad(self, ids: list[list[int]], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = self._padded(int(lengths.max()))
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)  # (B, L)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)  # (B, L)
        return input_ids, mask

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.session is not None:
            feed = {"input_ids": input_ids, "attention_mask": mask}
            return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
        assert self.embedder is not None
        threads = torch.get_num_threads()
        if input_ids.size <= SMALL_BATCH_TOKENS:
            # One short text: splitting it across threads costs more in synchronisation than it
            # saves, and on a busy machine each sync can wait a whole time slice (seen: 18 ms on
            # one thread vs 100-700 ms on two while other processes kept both cores busy).
            torch.set_num_threads(1)
        try:
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"),
            ):
                vectors = self.embedder(torch.from_numpy(input_ids), torch.from_numpy(mask))
        finally:
            torch.set_num_threads(threads)
        return vectors.float().numpy()


def load_tokenizer(files: ModelFiles) -> Any:
    set_offline()
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(files.path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot load the tokenizer in {files.path}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        log.warning("%s has only a slow (Python) tokenizer; encoding will be slower", files.path)
    return tokenizer
