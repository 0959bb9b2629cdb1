"""Honest offline evaluation: ranking metrics, the full-ranking evaluator, the cold-start
protocol and result tables. The baselines it compares against are :mod:`chronorec.blend`'s."""

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
    "Scorer",
    "cold_start_split",
    "compute_metrics",
    "drop_items",
    "evaluate",
    "evaluate_many",
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
