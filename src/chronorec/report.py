"""A self-contained HTML report of one run: plots embedded as PNG data URIs, no external files.

Sections (each an ``<section id=...>``): ``summary``, ``learning-curves``, ``metrics``,
``history-length``, ``cold-warm``, ``embeddings``, ``examples``. Everything it needs arrives as
plain data in :class:`ReportData`; :func:`collect_report_data` gathers it from a fitted
:class:`~chronorec.recommender.Recommender`; :func:`report_for_run` does it for a saved run.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from chronorec.blend import Ensemble, LearnedBlend
from chronorec.data.dataset import PreparedDataset
from chronorec.data.splits import Split
from chronorec.recommender import Recommender, make_split

SECTIONS = (
    "summary",
    "learning-curves",
    "metrics",
    "history-length",
    "cold-warm",
    "embeddings",
    "examples",
)
BAR_METRICS = ("ndcg@10", "hr@10", "recall@20")


@dataclass(frozen=True)
class Example:
    user: str
    history: list[tuple[str, float | None]]  # the user's last items: (name, price)
    recommended: list[tuple[str, float | None, float]]  # (name, price, score)


@dataclass(frozen=True)
class ReportData:
    title: str
    info: dict[str, Any]  # dataset, model, item representation, protocol, ...
    history: list[dict[str, Any]]  # training records: epoch, loss, valid{...}
    results: dict[str, dict[str, Any]]  # scorer name -> EvalResult.to_dict()
    model_name: str  # key of ``results`` that is the trained model
    embedding_xy: np.ndarray | None = None  # (n, 2) 2-D map of item vectors
    embedding_colour: np.ndarray | None = None  # (n,) e.g. log price
    embedding_colour_label: str = ""
    examples: list[Example] = field(default_factory=list)
    blend_weights: dict[str, float] | None = None  # the BLEND_ROW's tuned weights, if any


# ----------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def plot_learning_curves(history: Sequence[dict[str, Any]]) -> str:
    fig, ax = _figure()
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["loss"] for r in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    valid = [(r["epoch"], r["valid"]["ndcg@10"]) for r in history if r.get("valid")]
    if valid:
        ax2 = ax.twinx()
        ax2.plot(*zip(*valid, strict=True), "s-", color="tab:orange", label="valid NDCG@10")
        ax2.set_ylabel("validation NDCG@10", color="tab:orange")
    ax.set_title("Learning curves")
    return _png(fig)


def plot_metrics(results: dict[str, dict[str, Any]], metrics: Sequence[str] = BAR_METRICS) -> str:
    fig, ax = _figure(7.5, 3.8)
    names = list(results)
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(names))
    for j, m in enumerate(metrics):
        vals = [float(results[n].get(m, 0.0)) for n in names]
        bars = ax.bar(x + j * width, vals, width, label=m)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x + width * (len(metrics) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylabel("score (full ranking)")
    ax.margins(y=0.12)
    ax.set_title("Model vs baselines")
    ax.legend(fontsize=8)
    return _png(fig)


def _slice_bars(slices: dict[str, dict[str, float]], prefix: str, title: str) -> str | None:
    keys = [k for k in slices if k.startswith(prefix)]
    if not keys:
        return None
    fig, ax = _figure()
    labels = [k[len(prefix) :] for k in keys]
    vals = [slices[k].get("ndcg@10", 0.0) for k in keys]
    bars = ax.bar(labels, vals, color="tab:green")
    counts = [int(slices[k].get("n_queries", slices[k].get("n_targets", 0))) for k in keys]
    ax.bar_label(
        bars, labels=[f"{v:.3f}\n(n={c})" for v, c in zip(vals, counts, strict=True)], fontsize=7
    )
    ax.set_ylabel("NDCG@10")
    ax.margins(y=0.2)  # room for the value labels above the bars
    ax.set_title(title)
    return _png(fig)


def plot_embeddings(xy: np.ndarray, colour: np.ndarray | None, label: str) -> str:
    fig, ax = _figure(6.4, 5.0)
    if colour is not None:
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=4, cmap="viridis", alpha=0.7)
        fig.colorbar(sc, ax=ax, label=label)
    else:  # a catalogue without prices: one colour
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.7)
    ax.set_title("Item embeddings (2-D PCA of the model's item vectors)")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


# ----------------------------------------------------------------------------- data

RECENT_DAYS = 30.0  # window of the recent-popularity baseline
BLEND_ROW = "model + baselines"  # results key of the model blended with baselines


def _evaluate_all(
    rec: Recommender, ds: PreparedDataset, split: Split, vectors: np.ndarray | None
) -> dict[str, dict[str, Any]]:
    from chronorec.blend import fit_baselines
    from chronorec.evaluation import evaluate

    exclude = rec.config.data.exclude_seen
    results = {"model": rec.evaluate("test").to_dict()}
    known = split.known("test")  # every event before the test cut
    behaviour = rec.config.data.target_behaviour  # as benchmarks/quality.py fits them
    baselines = fit_baselines(
        known, ds.n_items, recent_days=RECENT_DAYS, item_vectors=vectors, behaviour=behaviour,
        behaviour_name=None if behaviour is None else ds.behaviours[behaviour - 1],
    )  # fmt: skip
    for name, scorer in baselines.items():
        results[name] = evaluate(
            scorer, ds, split.test, exclude_seen=exclude, max_len=rec.config.model.max_len,
            train=known,
        ).to_dict()  # fmt: skip
    return results


def _embedding_map(rec: Recommender, ds: PreparedDataset) -> tuple[np.ndarray, np.ndarray | None]:
    assert rec.model is not None
    with torch.no_grad():
        # detached: an ID tower returns its embedding parameter itself
        table = rec.model.item_table()[1:].detach().float()  # (n_items, D)
    centred = table - table.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(centred, q=2, center=False)
    xy = (centred @ v[:, :2]).numpy()
    price = ds.items.sort("item")["price"] if "price" in ds.items.columns else None
    colour = None if price is None else np.log10(price.fill_null(1.0).clip(0.01).to_numpy())
    return xy, colour


def _examples(
    rec: Recommender,
    ds: PreparedDataset,
    split: Split,
    n: int,
    k: int = 5,
    scorer: Recommender | Ensemble | None = None,
) -> list[Example]:
    """The ``n`` test customers with the longest histories: last purchases and the top-``k`` of
    ``scorer`` (default: ``rec``)."""
    scorer = rec if scorer is None else scorer
    items = ds.items.sort("item")
    names = items["title"].fill_null("").to_list() if "title" in items.columns else rec.item_ids()
    prices = items["price"].to_list() if "price" in items.columns else [None] * ds.n_items
    ids = rec.item_ids()
    lookup = {iid: i for i, iid in enumerate(ids)}
    users = (
        split.test.group_by("user").agg(pl.col("history_len").first())
        .sort(["history_len", "user"], descending=[True, False]).head(n)
    )  # fmt: skip
    out = []
    for u, hlen in users.iter_rows():
        hist = ds.events.filter((pl.col("user") == u) & (pl.col("position") < hlen))
        hist_ids = [ids[i - 1] for i in hist["item"].to_list()]
        last = hist["item"].to_list()[-5:][::-1]
        got, scores = scorer.recommend_histories(
            [hist_ids], k,
            timestamps=[hist["timestamp"].to_list()] if ds.has_timestamps else None,
            exclude_seen=rec.config.data.exclude_seen,  # as the metrics above rank
        )  # fmt: skip
        recs = [(names[lookup[i]], prices[lookup[i]], float(s))
                for i, s in zip(got[0], scores[0], strict=True)]  # fmt: skip
        out.append(Example(
            user=str(ds.users.filter(pl.col("user") == u)["user_id"][0]),
            history=[(names[i - 1], prices[i - 1]) for i in last],
            recommended=recs,
        ))  # fmt: skip
    return out


def collect_report_data(
    rec: Recommender,
    ds: PreparedDataset,
    *,
    title: str,
    vectors: np.ndarray | None,
    train_summary: dict[str, Any],
    n_examples: int = 3,
    blend: Sequence[str] = (),
    weights: Mapping[str, float] | None = None,
    learned: LearnedBlend | None = None,
) -> ReportData:
    """Evaluate ``rec`` and the baselines on the test split and gather every section's data.
    ``train_summary`` is the run's ``metrics.json`` (history, epochs, stopped).

    ``blend``: baselines to blend with the model, their weights tuned on the validation split
    (:meth:`Ensemble.tune`); or ``weights``, fixed ones (e.g. the run's saved blend). The blend
    gets its own row (:data:`BLEND_ROW`) and recommends the examples; so does ``learned``, a
    learned blend (e.g. the run's saved one), when ``blend`` is empty."""
    split = make_split(ds, rec.config)  # one split for the baselines and the examples
    results = _evaluate_all(rec, ds, split, vectors)
    scorer: Recommender | Ensemble = rec
    fixed = dict(weights or {})
    used: dict[str, float] = {}
    if blend and split.valid.height:
        scorer = Ensemble([rec])
        used = scorer.tune(blend, which="valid")
        results[BLEND_ROW] = scorer.evaluate("test").to_dict()
    elif learned is not None and not blend:
        scorer = Ensemble([rec]).use_learned(learned)
        results[BLEND_ROW] = scorer.evaluate("test").to_dict()
    elif fixed and not blend:
        scorer = Ensemble([rec], fixed)
        used = fixed
        results[BLEND_ROW] = scorer.evaluate("test").to_dict()
    xy, colour = _embedding_map(rec, ds)
    cfg = rec.config
    info = {
        "dataset": ds.manifest.get("format"),
        "users / items / events": f"{ds.n_users:,} / {ds.n_items:,} / {ds.events.height:,}",
        "model": cfg.model.name,
        "item representation": cfg.model.item_repr,
        "protocol": rec.meta.get("protocol", ""),
        "items already bought by the customer": "ranked (not excluded): repeats count"
        if not cfg.data.exclude_seen
        else "excluded from the ranking",
        "epochs": train_summary.get("epochs", ""),
        "stopped": train_summary.get("stopped", ""),
    }
    refit = rec.meta.get("refit")
    if refit:  # the test split and the examples are scored with the refit weights
        info["refit"] = (
            f"{refit['epochs']} epochs on the {refit['events']:,} events before the test cut"
        )
    if blend:
        info[f"{BLEND_ROW} (weights tuned on validation)"] = (
            ", ".join(f"{name} {w:g}" for name, w in used.items())
            if used
            else "not tuned: the split has no validation targets"
        )
    elif learned is not None:
        info[f"{BLEND_ROW} (the run's learned blend)"] = ", ".join(learned.baselines)
    elif fixed:
        info[f"{BLEND_ROW} (the run's saved weights)"] = ", ".join(
            f"{name} {w:g}" for name, w in fixed.items()
        )
    return ReportData(
        title=title, info=info, history=train_summary.get("history", []),
        results=results, model_name="model", embedding_xy=xy, embedding_colour=colour,
        embedding_colour_label="log10 price (£)",
        examples=_examples(rec, ds, split, n_examples, scorer=scorer),
        blend_weights=used or None,
    )  # fmt: skip


# ----------------------------------------------------------------------------- html


def _img(b64: str | None, alt: str) -> str:
    if b64 is None:
        return f"<p class=note>No data for this plot ({html.escape(alt)}).</p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _price(p: float | None) -> str:
    return "" if p is None or not np.isfinite(p) else f"£{p:,.2f}"


def _metrics_table(results: dict[str, dict[str, Any]]) -> str:
    cols = ["ndcg@10", "hr@10", "mrr@10", "recall@10", "recall@20", "hr@50"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>"
        + "".join(f"<td>{float(r.get(c, float('nan'))):.4f}</td>" for c in cols)
        + "</tr>"
        for n, r in results.items()
    )
    return f"<table><tr><th>scorer</th>{head}</tr>{rows}</table>"


def _examples_html(examples: Sequence[Example]) -> str:
    parts = []
    for ex in examples:
        hist = "".join(f"<li>{html.escape(n)} {_price(p)}</li>" for n, p in ex.history)
        recs = "".join(
            f"<li>{html.escape(n)} {_price(p)} <span class=score>{s:.3f}</span></li>"
            for n, p, s in ex.recommended
        )
        parts.append(
            f"<div class=example><h3>Customer {html.escape(ex.user)}</h3>"
            f"<div class=cols><div><h4>Last purchases</h4><ol>{hist}</ol></div>"
            f"<div><h4>Recommended</h4><ol>{recs}</ol></div></div></div>"
        )
    return "".join(parts) or "<p class=note>No examples.</p>"


CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222;padding:0 1em}
h1{margin-bottom:.2em} section{margin:2em 0} img{max-width:100%}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3} .note{color:#666} .cols{display:flex;gap:2em} .cols>div{flex:1}
.example{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;margin:1em 0}
.score{color:#888;font-size:.85em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}
"""


def render_html(data: ReportData) -> str:
    model = data.results.get(data.model_name, {})
    slices = model.get("slices", {})
    info = "".join(
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in data.info.items()
    )
    emb = (
        plot_embeddings(data.embedding_xy, data.embedding_colour, data.embedding_colour_label)
        if data.embedding_xy is not None
        else None
    )
    body = {
        "summary": f"<h2>Run</h2><dl>{info}</dl>",
        "learning-curves": "<h2>Learning curves</h2>"
        + _img(plot_learning_curves(data.history) if data.history else None, "learning curves"),
        "metrics": "<h2>Metrics vs baselines</h2>"
        + _img(plot_metrics(data.results), "metrics vs baselines")
        + _metrics_table(data.results),
        "history-length": "<h2>By history length</h2>"
        + _img(
            _slice_bars(slices, "history:", f"{data.model_name}: NDCG@10 by history length"),
            "metrics by history length",
        ),
        "cold-warm": "<h2>Cold vs warm items</h2>"
        + _img(_cold_warm(slices, data.model_name), "cold vs warm"),
        "embeddings": "<h2>Item embedding map</h2>" + _img(emb, "item embedding map"),
        "examples": "<h2>Example recommendations</h2>" + _examples_html(data.examples),
    }
    sections = "".join(f'<section id="{s}">{body[s]}</section>' for s in SECTIONS)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(data.title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(data.title)}</h1>"
        f"<p class=note>chronorec report, {stamp}. All metrics rank the full catalogue.</p>"
        f"{sections}</body></html>"
    )


def _cold_warm(slices: dict[str, dict[str, float]], model_name: str) -> str | None:
    keys = {k: v for k, v in slices.items() if k in ("cold", "warm")}
    return _slice_bars(keys, "", f"{model_name}: NDCG@10, cold vs warm target items")


def write_report(data: ReportData, path: str | Path) -> Path:
    """Write the HTML atomically (temp file + rename) and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render_html(data))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def report_for_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    dataset: str | Path | None = None,
    blend: Sequence[str] = (),
    *,
    saved: bool = True,
) -> Path:
    """Write ``report.html`` for a saved run; ``dataset`` defaults to the one it was trained on;
    ``blend`` as in :func:`collect_report_data`; without it the run's saved blend
    (``RUN/blend.json``), if any and ``saved``, gets the blended row."""
    from chronorec.blend import choose_blend
    from chronorec.recommender import build_text_vectors
    from chronorec.training import checkpoint as ckpt

    run = Path(run_dir)
    rec = Recommender.load(run, dataset)
    if rec.dataset is None:
        from chronorec.errors import ChronorecError

        raise ChronorecError(
            f"{run}: its dataset {rec.meta.get('dataset')!r} is not there; pass --dataset DIR"
        )
    summary = ckpt.read_json(run / ckpt.METRICS_FILE) if (run / ckpt.METRICS_FILE).is_file() else {}
    vectors = (
        build_text_vectors(rec.dataset, rec.config) if rec.config.model.item_repr != "id" else None
    )
    choice = choose_blend(None, run, "--blend") if saved and not blend else None
    fixed = None if choice is None else choice.weights
    learned = None if choice is None else choice.learned
    data = collect_report_data(
        rec, rec.dataset, title=f"chronorec report: {run.name}", vectors=vectors,
        train_summary=summary, blend=blend, weights=fixed, learned=learned,
    )  # fmt: skip
    return write_report(data, out if out is not None else run / "report.html")
