"""The ranking stack that is served: a model's scores, then a blend with baselines.

From event log to ranked list, after the model (:mod:`chronorec.models`):

- :mod:`~chronorec.blend.baselines`, :mod:`~chronorec.blend.neighbours` — the non-learned
  baselines (popularity, repeats, transitions, text-KNN; user-KNN, ridge), fitted on what is
  known before the targets they score; :mod:`~chronorec.blend.registry` names them.
- :mod:`~chronorec.blend.linear` — per-history z-scores and the weighted sum.
- :mod:`~chronorec.blend.learned` — a LightGBM re-ranker over the same terms
  (:mod:`~chronorec.blend.learned_fit` trains it).
- :mod:`~chronorec.blend.ensemble` — :class:`Ensemble`: one or more runs with their blend, behind
  one ``score``, ``recommend`` and ``evaluate``; :mod:`~chronorec.blend.choice` decides what a
  run ranks with (:func:`load`: a run with its saved blend), for every command and the service.
- :mod:`~chronorec.blend.files` — ``RUN/blend.json``, which every command and the service rank
  with unless told otherwise.
"""

from chronorec.blend.choice import BlendChoice, choose_blend, load
from chronorec.blend.ensemble import Ensemble
from chronorec.blend.files import (
    BLEND_FILE,
    blend_names,
    check_weights,
    parse_weights,
    read_blend,
    read_learned,
    resolve_blend,
    save_blend,
)
from chronorec.blend.learned import LEARNED_FILE, WINDOWS, ItemStats, LearnedBlend
from chronorec.blend.learned_fit import fit_learned
from chronorec.blend.linear import LINEAR, standardise, with_linear
from chronorec.blend.registry import BLEND_BASELINES, fit_baselines, make_baseline

__all__ = [
    "BLEND_BASELINES",
    "BlendChoice",
    "BLEND_FILE",
    "LEARNED_FILE",
    "LINEAR",
    "WINDOWS",
    "Ensemble",
    "ItemStats",
    "LearnedBlend",
    "blend_names",
    "check_weights",
    "choose_blend",
    "fit_baselines",
    "fit_learned",
    "load",
    "make_baseline",
    "parse_weights",
    "read_blend",
    "read_learned",
    "resolve_blend",
    "save_blend",
    "standardise",
    "with_linear",
]
