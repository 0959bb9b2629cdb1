"""Honest offline evaluation: ranking metrics, the full-ranking evaluator, baselines, the
cold-start protocol and result tables."""

from chronorec.evaluation.baselines import (
    ItemTransitions,
    MostPopular,
    RepeatFrequency,
    SequentialRidge,
    TextKNN,
    UserKNN,
    fit_baselines,
)
from chronorec.evaluation.coldstart import cold_start_split, drop_items, select_cold_items
from chronorec.evaluation.evaluator import (
    EvalResult,
    Scorer,
    evaluate,
    evaluate_many,
    unseen_items,
)
from chronorec.evaluation.metrics import compute_metrics, hit_rate, mrr, ndcg, recall
from chronorec.evaluation.report import markdown_table, results_table, slices_table

__all__ = [
    "EvalResult",
    "ItemTransitions",
    "MostPopular",
    "RepeatFrequency",
    "Scorer",
    "SequentialRidge",
    "TextKNN",
    "UserKNN",
    "cold_start_split",
    "compute_metrics",
    "drop_items",
    "evaluate",
    "evaluate_many",
    "fit_baselines",
    "hit_rate",
    "markdown_table",
    "mrr",
    "ndcg",
    "recall",
    "results_table",
    "select_cold_items",
    "slices_table",
    "unseen_items",
]
