"""What a run ranks with — the one policy every command and the service follow.

A blend option (``--blend``/``--weights`` of the commands, ``CHRONOREC_BLEND`` of the service)
says ``none`` (the model alone), ``NAME=W,...`` (those weights), or nothing: then the run's
saved blend (``RUN/blend.json``: weights, or a learned blend) if it has one, else the model alone.
:func:`load` turns runs and that option into one :class:`~chronorec.blend.Ensemble`, behind one
``score``, ``recommend`` and ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chronorec.blend.ensemble import Ensemble
from chronorec.blend.files import BLEND_FILE, read_blend, read_learned, resolve_blend
from chronorec.blend.learned import LearnedBlend

SOURCES = ("saved", "given", "none")


@dataclass(frozen=True)
class BlendChoice:
    """The blend a ranking uses: linear ``weights`` or a ``learned`` blend (or neither: the
    model alone); ``source``: from the run's ``blend.json`` ("saved"), from the option
    ("given"), or none at all; ``tuned_on``: the split a saved blend was tuned on."""

    weights: dict[str, float] = field(default_factory=dict)
    learned: LearnedBlend | None = None
    source: str = "none"
    tuned_on: str = ""

    @property
    def blended(self) -> bool:
        return bool(self.weights) or self.learned is not None

    def describe(self) -> str:
        """One line: what ranks, e.g. "the model + 0.3 transitions (saved in RUN/blend.json)"."""
        if self.learned is not None:
            what = f"a learned blend of the model and {', '.join(self.learned.baselines)}"
        elif self.weights:
            what = "the model + " + ", ".join(f"{w:g} {n}" for n, w in self.weights.items())
        else:
            what = "the model alone"
        return what + (f" (the run's {BLEND_FILE})" if self.source == "saved" else "")


def choose_blend(option: str | None, run_dir: str | Path | None, where: str) -> BlendChoice:
    """The blend ``option`` asks for (see the module docstring) for one run ``run_dir`` (None:
    several runs, which have no saved blend); ``where`` names the option in errors."""
    weights = resolve_blend(option, None, where)
    if option is not None and option.strip():
        return BlendChoice(weights, source="given" if weights else "none")
    if run_dir is None:
        return BlendChoice()
    learned = read_learned(run_dir)
    saved, tuned_on = read_blend(run_dir)
    if learned is None and not saved:
        return BlendChoice()
    return BlendChoice({} if learned else saved, learned, "saved", tuned_on)


def load(
    runs: Sequence[str | Path],
    *,
    dataset: str | Path | None = None,
    blend: str | None = None,
    fit_on: str = "train",
    where: str = "blend",
) -> Ensemble:
    """The runs (one, or several as an ensemble) with the blend ``blend`` chooses
    (:func:`choose_blend`), as one :class:`Ensemble`. ``fit_on``: the baselines count what is
    known before each split ("train", for evaluation) or every logged event ("all", for
    recommendations). The choice is ``ensemble.choice``."""
    choice = choose_blend(blend, runs[0] if len(runs) == 1 else None, where)
    ensemble = Ensemble.load(runs, dataset=dataset, weights=choice.weights, fit_on=fit_on)
    if choice.learned is not None:
        ensemble.use_learned(choice.learned)
    ensemble.choice = choice
    return ensemble
