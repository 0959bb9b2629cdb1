"""Typed run configuration: frozen dataclasses, TOML files and ``--set key=value`` overrides.

A run's whole config is a :class:`RunConfig` with one section per component::

    [model]               # the sequence model and its item tower -> ModelConfig
    name = "transformer"
    d_model = 64

    [train]               # the training loop and loss -> TrainConfig
    loss = "ce"

    [data]                # which split the run learns from and is evaluated on -> DataConfig
    split = "leave-one-out"

Overrides use dotted keys (``--set model.d_model=128 --set train.lr=3e-4``). An unknown section or
key, or a value of the wrong type, is a :class:`~chronorec.errors.ConfigError` naming it — a typo
never silently becomes a default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronorec.errors import ConfigError

MODEL_NAMES = ("lstm", "gru", "transformer", "hstu")
ITEM_REPRS = ("id", "text", "id+text")
LOSSES = ("ce", "sampled", "bce")
SCORES = ("dot", "cosine")
SPLITS = ("leave-one-out", "temporal")
PRECISIONS = ("auto", "bf16", "fp32")
LR_DECAYS = ("none", "linear", "cosine")
SELECT_METRICS = ("ndcg", "hr", "mrr", "recall")
SELECT_KS = ("1", "5", "10", "20", "50")
TARGETS = ("next-event", "next-basket", "next-window")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "transformer"
    item_repr: str = "id"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 200
    score: str = "dot"  # dot product, or cosine / temperature
    temperature: float = 0.05  # only for score = "cosine"
    n_time_buckets: int = 32  # log2-scale buckets of the gap to the previous event
    use_behaviour: bool = True  # add a behaviour-type embedding to each step
    use_time: bool = True  # add a time-gap bucket embedding to each step (HSTU: also a bias)
    behaviour_head: bool = False  # pointwise P(behaviour = b | history, item)
    # item_repr "id" only: score against a second, output ID table instead of the input one
    separate_output: bool = False
    # the behaviour head also reads the history's behaviour mix and the user's earlier events
    # on the item, per behaviour (Taobao purchase AUC 0.575 against 0.565, BENCHMARKS.md)
    behaviour_features: bool = True
    # the behaviour head reads the candidate's item vector (off: only the hidden state and the
    # history features, for sparse catalogues whose rare items' vectors are noise to it)
    behaviour_item: bool = True
    text_hidden: int = 256  # hidden width of the text adaptor MLP; 0 = whitening (linear) only
    # text and id+text: add a score term q(h) . text_i over the frozen, normalised text vectors
    # (their full width, not the d_model adaptor output)
    text_score: bool = False
    repeat: bool = False  # learned bonus for items already in the history (retail repeats)
    repeat_time: bool = False  # the repeat bonus also by time since each occurrence (log2 hours)
    repeat_visits: bool = False  # the repeat bonus by visits back (a basket is one), not events
    # Condition the scores on the behaviour of the event being predicted: a learned map, offset
    # and scale of the query and repeat weights per behaviour, trained with each step's actual
    # next behaviour and ranked for data.target_behaviour (what will be bought, not viewed next).
    next_behaviour: bool = False

    def __post_init__(self) -> None:
        _choice("model.name", self.name, MODEL_NAMES)
        _choice("model.item_repr", self.item_repr, ITEM_REPRS)
        _choice("model.score", self.score, SCORES)
        for key in ("d_model", "n_layers", "n_heads", "max_len", "n_time_buckets"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, not {getattr(self, key)}")
        if self.text_hidden < 0:
            raise ConfigError(f"model.text_hidden must be >= 0, not {self.text_hidden}")
        if self.separate_output and self.item_repr != "id":
            raise ConfigError(
                "model.separate_output needs item_repr 'id': a text tower scores items from "
                "their text, which an output ID table would not read"
            )
        if self.name in ("transformer", "hstu") and self.d_model % self.n_heads:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must be divisible by "
                f"model.n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), not {self.dropout}")
        if self.temperature <= 0:
            raise ConfigError(f"model.temperature must be > 0, not {self.temperature}")
        if self.text_score and self.item_repr == "id":
            raise ConfigError("model.text_score needs item text: model.item_repr text or id+text")
        if self.repeat_time and not self.repeat:
            raise ConfigError("model.repeat_time adds to the repeat term: set model.repeat=true")
        if self.next_behaviour and not self.use_behaviour:
            raise ConfigError("model.next_behaviour conditions on behaviour: model.use_behaviour")
        if self.repeat_visits and not self.repeat:
            raise ConfigError("model.repeat_visits counts the repeat term: set model.repeat=true")


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "ce"  # full-softmax cross-entropy | sampled softmax | BCE with negatives
    n_negatives: int = 256  # uniform negatives per batch for "sampled" / per position for "bce"
    logq: bool = True  # logQ correction of sampled-softmax negatives
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    # After warm-up, decay the learning rate to 0 over the run: by the share of the max_minutes
    # wall-time budget spent when one is set, else by the share of max_epochs done.
    lr_decay: str = "none"
    # Share of the run at which the decay starts (the rate is constant before it): 0 decays over
    # the whole run, 0.7 holds the rate for 70% and anneals in the last 30% ("warmup-stable-decay").
    decay_start: float = 0.0
    clip_norm: float = 1.0
    max_epochs: int = 200
    eval_every: int = 1  # epochs between validation runs
    patience: int = 5  # validation runs without improvement before stopping
    max_minutes: float | None = None  # wall-time budget; the best checkpoint is kept
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None = the machine's cores
    # training matmuls: "bf16" | "fp32" | "auto" (bf16 where the CPU has AMX or AVX-512 BF16)
    precision: str = "auto"
    # Train on every max_len window of long users (each event a target once), not just the last:
    # on ML-1M valid NDCG@10 0.150 against 0.132 after 12 epochs (BENCHMARKS.md).
    all_windows: bool = True
    # What each step learns to predict: the next event, or an item of the next basket (events
    # with one timestamp, e.g. the lines of one invoice; drawn anew each epoch). In retail the
    # next invoice line is mostly another item of the same basket, while what is asked is the
    # items of later baskets. "next-window": an event drawn from the later baskets of the next
    # target_days days (what a test window of days asks for).
    target: str = "next-event"
    target_days: float = 30.0
    # Decay of an exponential moving average of the weights, updated after every optimizer step
    # (0 = off; warmed up as min(ema, (1 + n) / (10 + n)) after n steps): validation, the kept
    # checkpoint and the returned model use the averaged weights, a cheap stand-in for an
    # ensemble of the last few hundred steps' weights.
    ema: float = 0.0
    # After training, train the same recipe again from scratch on every event before the test
    # cut (the training split plus the validation period) for the best epoch's count of epochs:
    # the test split and recommendations then use weights that know the latest events, as the
    # baselines do; validation (and a blend's weight search) keep the first weights.
    refit: bool = False
    # validation metric for early stopping and the kept checkpoint (a key of the evaluator's
    # metrics, e.g. "recall@20" when the task is judged by Recall@20)
    select_metric: str = "ndcg@10"
    behaviour_loss_weight: float = 0.5  # weight of the behaviour-head loss when the head is on
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        _choice("train.loss", self.loss, LOSSES)
        _choice("train.precision", self.precision, PRECISIONS)
        _choice("train.lr_decay", self.lr_decay, LR_DECAYS)
        _choice("train.target", self.target, TARGETS)
        for key in (
            "n_negatives", "batch_size", "max_epochs", "eval_every", "patience"
        ):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, not {getattr(self, key)}")
        if not 0.0 <= self.decay_start < 1.0:
            raise ConfigError(f"train.decay_start must be in [0, 1), not {self.decay_start}")
        if self.decay_start and self.lr_decay == "none":
            raise ConfigError("train.decay_start needs train.lr_decay = 'linear' or 'cosine'")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, not {self.lr}")
        if self.target_days <= 0:
            raise ConfigError(f"train.target_days must be > 0, not {self.target_days}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"train.ema must be in [0, 1), not {self.ema}")
        name, _, k = self.select_metric.partition("@")
        if name not in SELECT_METRICS or k not in SELECT_KS:
            raise ConfigError(
                f"train.select_metric must be one of {', '.join(SELECT_METRICS)} at K in "
                f"{', '.join(SELECT_KS)} (e.g. 'ndcg@10'), not {self.select_metric!r}"
            )
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"train.max_minutes must be > 0, not {self.max_minutes}")


@dataclass(frozen=True)
class DataConfig:
    split: str = "leave-one-out"
    min_events: int = 3  # leave-one-out: shorter users stay in train only
    test_days: float | None = None  # temporal: the test window at the end of the log
    valid_days: float | None = None  # temporal: the validation window (default = test_days)
    target_behaviour: int | None = None  # temporal: keep only targets of this behaviour index
    # leave the items already in a history out of its ranking: evaluate, recommend, report and
    # the service all read it (each may be told otherwise per call)
    exclude_seen: bool = True
    cold_fraction: float = 0.0  # cold-start protocol: hide this share of items from training
    cold_seed: int = 0  # which items are hidden (same seed, same items)

    def __post_init__(self) -> None:
        _choice("data.split", self.split, SPLITS)
        if not 0.0 <= self.cold_fraction < 1.0:
            raise ConfigError(f"data.cold_fraction must be in [0, 1), not {self.cold_fraction}")
        if self.split == "temporal" and self.test_days is None:
            raise ConfigError("data.split = 'temporal' needs data.test_days")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # Options of chronorec.text.TextConfig, checked by it when the text matrix is built (kept as a
    # plain table so that importing the config never imports the text encoder).
    text: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model.next_behaviour and self.data.target_behaviour is None:
            raise ConfigError(
                "model.next_behaviour ranks for the target behaviour: set data.target_behaviour"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "config") -> RunConfig:
        return _build(cls, raw, source)

    def replace(self, **sections: Any) -> RunConfig:
        return dataclasses.replace(self, **sections)

    def with_overrides(self, assignments: Iterable[str]) -> RunConfig:
        """Apply ``section.key=value`` strings (values parsed as TOML, else taken as strings)."""
        raw = self.to_dict()
        for text in assignments:
            key, sep, value = text.partition("=")
            parts = key.strip().split(".")
            if not sep or len(parts) != 2 or not all(parts):
                raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.lr=3e-4")
            section, name = parts
            if section not in raw:
                raise ConfigError(
                    f"--set {text!r}: unknown section {section!r} (known: {', '.join(raw)})"
                )
            if section != "text" and name not in raw[section]:
                raise ConfigError(
                    f"--set {text!r}: unknown key {section}.{name} "
                    f"(known: {', '.join(raw[section])})"
                )
            raw[section][name] = _parse_value(value.strip())
        return _build(RunConfig, raw, "--set")


def load_config(
    path: str | Path | None, overrides: Iterable[str] = (), *, base: RunConfig | None = None
) -> RunConfig:
    """Defaults (or ``base``, e.g. a recipe), then the TOML (or JSON) file at ``path``, then
    ``--set`` overrides."""
    config = base or RunConfig()
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: config file not found")
        try:
            if file.suffix == ".json":
                raw = json.loads(file.read_text())
            else:
                raw = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{file}: {exc}") from exc
        config = _build(RunConfig, _merged(config.to_dict(), raw), str(file))
    return config.with_overrides(overrides)


def _merged(base: dict[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw``'s tables over ``base``'s, key by key (a file need not repeat the base's keys)."""
    out = {name: dict(value) if isinstance(value, dict) else value for name, value in base.items()}
    for name, value in raw.items():
        if isinstance(value, Mapping) and isinstance(out.get(name), dict):
            out[name].update(value)
        else:
            out[name] = value
    return out


def _parse_value(text: str) -> Any:
    if text.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not one of {', '.join(allowed)}")


# keys renamed since runs were saved with them: old dotted key -> new name in its section
RENAMED = {"data.exclude_history": "exclude_seen"}
# options deleted after the benchmarks rejected them (BENCHMARKS.md, "Rejected ideas"): a saved
# run that used one at its old default still loads; one that changed it cannot be rebuilt
REMOVED = {"train.drop_events": 0.0, "train.target_weight": 1.0, "train.target_k": 2}


def _build(cls: type, raw: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [{prefix.rstrip('.')}] must be a table")
    raw = {RENAMED.get(prefix + name, name): value for name, value in raw.items()}
    for name in [n for n in raw if prefix + n in REMOVED]:
        if raw.pop(name) != REMOVED[prefix + name]:
            raise ConfigError(
                f"{source}: {prefix}{name} was removed (rejected by the benchmarks, "
                "BENCHMARKS.md); this config used it and cannot be rebuilt"
            )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]} (known in this section: "
            f"{', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in raw.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, source, f"{prefix}{name}.")  # type: ignore[arg-type]
        elif typing.get_origin(kind) is dict:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: [{prefix}{name}] must be a table")
            kwargs[name] = dict(value)
        else:
            kwargs[name] = _coerce(value, kind, f"{source}: {prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, not {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        return value
    return value
