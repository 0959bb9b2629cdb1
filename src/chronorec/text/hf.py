"""A Hugging Face encoder loaded from a local directory, with pooling and normalisation: what
both backends of :class:`~chronorec.text.encoder.ItemEncoder` run (torch directly, ONNX Runtime
through an export, :mod:`chronorec.text.onnx`)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from chronorec.errors import ConfigError
from chronorec.text.model_files import ModelFiles, set_offline


class SentenceEmbedder(nn.Module):
    """A Hugging Face encoder + pooling + L2 normalisation.

    ``additive_mask=True`` hands the encoder a ready (B, 1, 1, L) additive mask instead of the
    (B, L) padding mask; the ONNX export needs it, because tracing the library's own mask builder
    freezes the padding length of the example batch into the graph.
    """

    def __init__(self, encoder: nn.Module, pooling: str, additive_mask: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.additive_mask = additive_mask
        self.takes_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: (B, L) int64
        kwargs: dict[str, torch.Tensor] = {}
        if self.takes_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(input_ids)
        mask: torch.Tensor = attention_mask
        if self.additive_mask:
            keep = attention_mask[:, None, None, :].to(torch.float32)  # (B, 1, 1, L)
            mask = (1.0 - keep) * torch.finfo(torch.float32).min
        hidden = self.encoder(input_ids=input_ids, attention_mask=mask, **kwargs).last_hidden_state
        hidden = hidden.float()  # (B, L, D)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)  # (B, D)


def load_hf_model(files: ModelFiles, attn_implementation: str | None = None) -> nn.Module:
    set_offline()
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    kwargs: dict[str, Any] = {"local_files_only": True}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor bar for a load that takes a second
    try:
        model = AutoModel.from_pretrained(str(files.path), **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load the model in {files.path}: {exc}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model.eval()
