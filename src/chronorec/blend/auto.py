"""The blend a run keeps after training, chosen on its validation split: the model alone, the
linear blend, or the learned one — whichever wins by more than the noise. A user never names a
baseline.

Candidates are every baseline the log allows (:func:`allowed`). The linear blend's weights are
tuned on validation with the guard of :meth:`Ensemble.tune`: a weight moves only for a gain of
two standard errors of the per-query differences, so a blend that keeps no weight is the model
alone. The learned blend (``learned=True``) is kept only when its out-of-fold validation figure
beats the linear blend's in-sample one, which is optimistic: a conservative comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chronorec.blend.ensemble import Ensemble
from chronorec.blend.learned_fit import fit_learned
from chronorec.blend.registry import BLEND_BASELINES, make_baseline
from chronorec.errors import ConfigError

MODES = ("auto", "linear", "none")


@dataclass
class AutoBlend:
    """What :func:`auto_blend` chose and the validation figures it chose by."""

    kind: str  # "none" (the model alone), "linear" or "learned"
    weights: dict[str, float] = field(default_factory=dict)
    learned: Any = None  # the LearnedBlend when kind == "learned"
    metric: str = ""
    figures: dict[str, float] = field(default_factory=dict)  # valid metric by candidate

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in self.figures.items())
        if self.kind == "learned":
            what = f"the learned blend of {', '.join(self.learned.baselines)}"
        elif self.kind == "linear":
            what = "the model + " + ", ".join(f"{w:g} {n}" for n, w in self.weights.items())
        else:
            what = "the model alone"
        return f"{what} (valid {self.metric}: {shown})"


def allowed(ensemble: Ensemble) -> list[str]:
    """The baselines this log supports (timestamps for recent popularity, a catalogue small
    enough for ridge, item text for text-KNN)."""
    dataset = ensemble.members[0]._require_dataset()
    events = dataset.events
    names = []
    for name in BLEND_BASELINES:
        if name == "text-knn":  # its vectors are built when it is fitted
            if dataset.text_columns:
                names.append(name)
            continue
        try:
            make_baseline(name, events, dataset.n_items)
        except ConfigError:
            continue
        names.append(name)
    return names


def auto_blend(
    ensemble: Ensemble, *, learned: bool = True, threads: int | None = None
) -> AutoBlend:
    """Choose a blend for ``ensemble`` (fitted with ``fit_on="train"``) on its validation
    split, and leave ``ensemble`` ranking with it."""
    metric = ensemble.config.train.select_metric
    names = allowed(ensemble)
    if not names:
        return AutoBlend("none", metric=metric)
    if learned:
        blend, report = fit_learned(ensemble, names, which="valid", threads=threads)
        alone = report[f"valid {metric}, runs alone"]
        linear = report[f"valid {metric}, linear blend (tuned on it)"]
        outs = [v for k, v in report.items() if k.endswith("out of fold")]
        oof = max(outs) if outs else float("-inf")
        figures = {"model alone": alone, "linear (in sample)": linear, "learned (out of fold)": oof}
        weights = {n: w for n, w in blend.weights.items() if w > 0}
        if oof > linear and oof > alone:
            return AutoBlend("learned", weights, blend, metric, figures)
        ensemble.learned = None
    else:
        weights = {n: w for n, w in ensemble.tune(names, which="valid").items() if w > 0}
        figures = {}
    ensemble.weights = dict(weights)
    if not weights:
        return AutoBlend("none", metric=metric, figures=figures)
    return AutoBlend("linear", weights, metric=metric, figures=figures)
