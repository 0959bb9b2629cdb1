"""Markdown tables of results, shared by the CLI and the benchmark scripts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from chronorec.evaluation.evaluator import EvalResult

DEFAULT_COLUMNS: tuple[str, ...] = ("ndcg@10", "hr@10", "mrr@10", "recall@20")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: object, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def markdown_table(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    *,
    digits: int = 4,
) -> str:
    """A GitHub-flavoured markdown table; ``columns`` defaults to the keys in first-seen order.
    Floats get ``digits`` decimals (NaN shows as "–"), ints thousands separators; numeric columns
    are right-aligned."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c), digits) for c in columns] for row in rows]
    numeric = [
        all(_is_number(row.get(c)) for row in rows if row.get(c) is not None)
        and any(row.get(c) is not None for row in rows)
        for c in columns
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    return "\n".join([line(list(columns)), line(rule), *(line(r) for r in cells)])


def results_table(
    results: Mapping[str, EvalResult],
    columns: Sequence[str] = DEFAULT_COLUMNS,
    *,
    slice_name: str | None = None,
    label: str = "scorer",
    digits: int = 4,
) -> str:
    """Scorers side by side: one row per entry of ``results`` (name → result), one column per
    metric, plus the history-exclusion setting so a table never hides its protocol. With
    ``slice_name`` (e.g. ``"cold"``) the rows show that slice."""
    rows: list[dict[str, object]] = []
    for name, result in results.items():
        source = result.metrics if slice_name is None else result.slices.get(slice_name, {})
        row: dict[str, object] = {label: name}
        row.update({c: source.get(c, float("nan")) for c in columns})
        row["queries"] = int(source.get("n_queries", result.n_queries))
        row["exclude_seen"] = result.exclude_seen
        rows.append(row)
    return markdown_table(rows, [label, *columns, "queries", "exclude_seen"], digits=digits)


def slices_table(
    result: EvalResult, columns: Sequence[str] = DEFAULT_COLUMNS, *, digits: int = 4
) -> str:
    """One result's slices, one row each, after an "all" row."""
    rows: list[dict[str, object]] = [
        {
            "slice": "all",
            **{c: result.metrics.get(c, float("nan")) for c in columns},
            "queries": result.n_queries,
            "targets": result.n_targets,
        }
    ]
    for name, values in result.slices.items():
        row: dict[str, object] = {"slice": name}
        row.update({c: values.get(c, float("nan")) for c in columns})
        row["queries"] = int(values["n_queries"])
        row["targets"] = int(values["n_targets"])
        rows.append(row)
    return markdown_table(rows, ["slice", *columns, "queries", "targets"], digits=digits)
