"""``chronorec demo``: the whole job on the bundled UCI Online Retail data (CC BY 4.0).

prepare → encode product descriptions with the packaged text encoder → train the default model →
evaluate it next to the baselines (global temporal split: the last 30 days are the test window,
repeats count) → print a metrics table and example recommendations → write ``report.html``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chronorec.blend import BLEND_FILE, save_blend
from chronorec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chronorec.data.bundled import bundled_path
from chronorec.data.dataset import PreparedDataset, load_prepared
from chronorec.data.prepare import PrepareOptions, prepare
from chronorec.data.readers import read
from chronorec.recommender import Recommender, build_text_vectors
from chronorec.report import ReportData, collect_report_data, write_report
from chronorec.training import checkpoint as ckpt

TEST_DAYS = 30.0
# baselines blended with the model in the report's "model + baselines" row, weights tuned on
# the validation split
BLEND = ("repeat-recent", "repeat", "popular-recent", "user-knn", "transitions")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; ``quick`` is the CI setting (well under a minute)."""

    last_days: float | None = None  # keep only the last N days of the log
    max_minutes: float = 0.75  # training budget (the refit on every event takes as long again)
    max_epochs: int = 40
    max_len: int = 200
    d_model: int = 64
    model: str = "lstm"
    item_repr: str = "id+text"
    n_examples: int = 3
    blend: tuple[str, ...] = BLEND

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(last_days=120, max_minutes=0.25, max_epochs=4, max_len=20, d_model=32)


def demo_config(s: DemoSettings) -> RunConfig:
    return RunConfig(
        model=ModelConfig(
            name=s.model, item_repr=s.item_repr, d_model=s.d_model, max_len=s.max_len,
            n_layers=2, n_heads=2, dropout=0.2,
            repeat=True,  # most retail purchases are repeats: learn a bonus for them
            repeat_visits=True,  # counted in invoices back (+0.006 Recall@20, BENCHMARKS.md)
        ),
        train=TrainConfig(
            max_epochs=s.max_epochs, max_minutes=s.max_minutes, patience=5, batch_size=128,
            # learn the next invoice, not the next line of this one (Online Retail Recall@20
            # 0.229 against 0.199 for the next line, BENCHMARKS.md)
            target="next-basket",
            select_metric="recall@20",  # what the 30-day test window is judged by
            refit=True,  # then again on every event before the test cut (+0.012 Recall@20)
        ),
        # repeat purchases are most of retail: never hide a customer's past items
        data=DataConfig(split="temporal", test_days=TEST_DAYS, exclude_seen=False),
    )  # fmt: skip


def prepare_bundled(out: Path, settings: DemoSettings) -> PreparedDataset:
    raw = read("online-retail", bundled_path("online-retail"))
    ds = prepare(raw, PrepareOptions(last_days=settings.last_days))
    ds.save(out, overwrite=True)
    return load_prepared(out)


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings = DemoSettings(),
    *,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Path:
    """Run the demo into ``out_dir`` (dataset, run, report.html); returns the report's path."""
    out = Path(out_dir)
    started = time.perf_counter()
    say("1/4 preparing the bundled Online Retail data (CC BY 4.0) …")
    ds = prepare_bundled(out / "data", settings)
    say(f"    {ds.n_users:,} customers, {ds.n_items:,} products, {ds.events.height:,} purchases")
    cfg = demo_config(settings)
    vectors = None
    if cfg.model.item_repr != "id":
        say("2/4 encoding product descriptions with the packaged MiniLM encoder …")
        vectors = build_text_vectors(ds, cfg)
    say(
        f"3/4 training a {cfg.model.name} ({cfg.model.item_repr}) for up to "
        f"{settings.max_minutes:g} min …"
    )
    # fit from the directory so that the run records where its dataset is (for `report`)
    rec = Recommender(cfg).fit(
        out / "data", run_dir=out / "run", text_vectors=vectors, progress=progress
    )
    say("4/4 evaluating against the baselines and writing the report …")
    summary = ckpt.read_json(out / "run" / ckpt.METRICS_FILE)
    data = collect_report_data(
        rec, ds, title="chronorec demo: UCI Online Retail", vectors=vectors,
        train_summary=summary, n_examples=settings.n_examples, blend=settings.blend,
    )  # fmt: skip
    report = write_report(data, out / "report.html")
    _print_summary(data, say)
    if data.blend_weights is not None:  # serve and recommend use it from now on
        save_blend(out / "run", data.blend_weights, tuned_on="valid")
        shown = ", ".join(f"{n} {w:g}" for n, w in data.blend_weights.items() if w > 0)
        say(f"the run keeps the blend ({shown or 'the model alone'}) in {out / 'run' / BLEND_FILE}")
        # repeats stay rankable, as in the evaluation above (the run's data.exclude_seen)
        say(f"recommend: chronorec recommend {out / 'run'} --user ID")
        say(
            f"serve over HTTP: chronorec serve {out / 'run'} --dev  "
            "(then GET /users/ID/recommendations)"
        )
        say(
            f"a learned blend (a LightGBM re-ranker, about a minute): chronorec evaluate "
            f"{out / 'run'} --blend {','.join(settings.blend)} --learned --save-blend"
        )
    say(f"done in {time.perf_counter() - started:.0f} s; report: {report}")
    return report


def _print_summary(data: ReportData, say: Callable[[str], None]) -> None:
    from chronorec.evaluation import markdown_table

    cols = ["ndcg@10", "hr@10", "recall@20"]
    rows = [{"scorer": name, **{c: r.get(c, float("nan")) for c in cols}}
            for name, r in data.results.items()]  # fmt: skip
    say("")
    say(markdown_table(rows, ["scorer", *cols]))
    for ex in data.examples:
        say(f"\ncustomer {ex.user} — last purchases:")
        for name, price in ex.history[:3]:
            say(f"    {name}" + (f"  £{price:.2f}" if price is not None else ""))
        say("  recommended:")
        for name, price, _ in ex.recommended:
            say(f"    {name}" + (f"  £{price:.2f}" if price is not None else ""))
    say("")


def settings_for(quick: bool, **overrides: Any) -> DemoSettings:
    base = DemoSettings.quick() if quick else DemoSettings()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
