"""A run's saved blend, ``RUN/blend.json`` (and a learned blend's ``RUN/blend.lgb.txt``): what
``evaluate --save-blend`` and ``demo`` write, and what ``evaluate``, ``recommend``, ``report`` and
``serve`` rank with unless told otherwise; and the blend options that name one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from chronorec.blend.learned import LEARNED_FILE, LearnedBlend
from chronorec.blend.registry import BLEND_BASELINES
from chronorec.errors import ConfigError

BLEND_FILE = "blend.json"  # a run's saved blend, used by `serve` and `recommend` by default


def parse_weights(text: str | None, option: str = "--weights") -> dict[str, float]:
    """``"transitions=0.3,repeat=1"`` -> ``{"transitions": 0.3, "repeat": 1.0}``; ``option``
    names where the text came from in the error."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"{option}: expected NAME=NUMBER, got {part.strip()!r}") from None
    return out


def check_weights(weights: Mapping[str, float], where: str) -> dict[str, float]:
    """Blend weights with known baseline names and finite values >= 0, else a ConfigError
    that names ``where`` they came from."""
    unknown = sorted(set(weights) - set(BLEND_BASELINES))
    if unknown:
        raise ConfigError(
            f"{where}: unknown baseline(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BLEND_BASELINES)}"
        )
    for name, w in weights.items():
        if not (isinstance(w, int | float) and np.isfinite(w) and w >= 0):
            raise ConfigError(f"{where}: the weight of {name} must be a number >= 0, not {w!r}")
    return {name: float(w) for name, w in weights.items()}


def save_blend(
    run_dir: str | Path,
    weights: Mapping[str, float],
    *,
    tuned_on: str,
    learned: LearnedBlend | None = None,
) -> Path:
    """Store a run's blend (weights above 0; or a learned blend, its model in
    ``RUN/blend.lgb.txt``) as ``RUN/blend.json``, which ``chronorec serve``, ``recommend``,
    ``evaluate`` and ``report`` use when not told otherwise."""
    from chronorec.training import checkpoint as ckpt

    kept = {name: float(w) for name, w in check_weights(weights, "blend").items() if w > 0}
    saved: dict[str, object] = {"weights": kept, "tuned_on": tuned_on}
    if learned is not None:
        learned.save(run_dir)  # first: a blend.json never names a model that is not there
        saved["weights"] = {}
        saved["learned"] = learned.describe()
    path = ckpt.write_json(Path(run_dir) / BLEND_FILE, saved)
    if learned is None:
        (Path(run_dir) / LEARNED_FILE).unlink(missing_ok=True)
    return path


def read_learned(run_dir: str | Path) -> LearnedBlend | None:
    """The learned blend ``RUN/blend.json`` names, if any."""
    from chronorec.training import checkpoint as ckpt

    path = Path(run_dir) / BLEND_FILE
    if not path.is_file():
        return None
    try:
        meta = ckpt.read_json(path).get("learned")
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a blend file: {exc}") from None
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: 'learned' must be an object")
    return LearnedBlend.load(run_dir, meta)


def read_blend(run_dir: str | Path) -> tuple[dict[str, float], str]:
    """The weights of ``RUN/blend.json`` and the split they were tuned on ("valid", or
    "given" for fixed ones); ``({}, "")`` without one."""
    from chronorec.training import checkpoint as ckpt

    path = Path(run_dir) / BLEND_FILE
    if not path.is_file():
        return {}, ""
    try:
        saved = ckpt.read_json(path)
        weights = saved["weights"]
        if not isinstance(weights, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a blend file ({{'weights': {{NAME: W}}}}): {exc}") from None
    return check_weights(weights, str(path)), str(saved.get("tuned_on", ""))


def _says_none(text: str | None) -> bool:
    """Whether a blend option asks for no blend at all (not even the run's saved one)."""
    return text is not None and text.strip().lower() == "none"


def blend_names(text: str | None) -> tuple[list[str], bool]:
    """A ``--blend NAMES`` option -> (the baseline names, whether it said ``none``: no blend,
    not even the run's saved one)."""
    if _says_none(text):
        return [], True
    return [n.strip() for n in (text or "").split(",") if n.strip()], False


def resolve_blend(text: str | None, run_dir: str | Path | None, option: str) -> dict[str, float]:
    """The blend asked for: ``"none"`` -> the model alone, ``"NAME=W,..."`` -> those weights,
    nothing -> the run's saved blend (``RUN/blend.json``) if it has one."""
    if _says_none(text):
        return {}
    if text is not None and text.strip():
        return check_weights(parse_weights(text, option), option)
    return {} if run_dir is None else read_blend(run_dir)[0]
