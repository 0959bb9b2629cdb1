"""The README's main job in its CI setting: `chronorec demo --quick`, then `chronorec report`."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest

from chronorec.blend import LEARNED_FILE, Ensemble, fit_learned, save_blend
from chronorec.cli import main
from chronorec.report import BLEND_ROW, SECTIONS


def _check_report(path: Path) -> None:
    page = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # learning curves, metrics, history length, cold/warm, embedding map
    assert len(images) >= 5
    import matplotlib.image as mpimg

    for b64 in images:
        raw = base64.b64decode(b64)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 8_000
        pixels = mpimg.imread(io.BytesIO(raw), format="png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert pixels.std() > 0.01  # not a blank canvas
    assert "No data for this plot" not in page
    assert page.count("class=example") == 3


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def test_demo_quick_writes_the_report(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _check_report(demo_dir / "report.html")
    assert (demo_dir / "run" / "model.safetensors").is_file()
    # the demo's recipe refits on every event before the test cut, and blends the baselines
    assert (demo_dir / "run" / "refit.safetensors").is_file()
    page = (demo_dir / "report.html").read_text(encoding="utf-8")
    assert f"<td>{BLEND_ROW}</td>" in page and "(weights tuned on validation)" in page
    # the run keeps the tuned blend, which `serve` and `recommend` use by default
    assert isinstance(json.loads((demo_dir / "run" / "blend.json").read_text())["weights"], dict)


def test_the_demos_learned_blend_command(demo_dir: Path, capsys) -> None:
    # what the demo suggests at its end, without --save-blend (the other tests use the run)
    from chronorec.demo import BLEND

    run = str(demo_dir / "run")
    assert main(["evaluate", run, "--blend", ",".join(BLEND), "--learned", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "learned blend: objective " in out and "learned blend: features by gain " in out
    assert "(learned blend)" in out


def test_report_command_for_a_saved_run(demo_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "again.html"
    saved = demo_dir / "run" / "blend.json"
    kept = saved.read_text()
    try:
        saved.unlink()  # no saved blend: the model and the baselines only
        assert main(["report", str(demo_dir / "run"), "--out", str(out)]) == 0
        _check_report(out)
        assert BLEND_ROW not in out.read_text(encoding="utf-8")
        saved.write_text('{"weights": {"repeat-recent": 0.5}, "tuned_on": "valid"}')
        assert main(["report", str(demo_dir / "run"), "--out", str(out)]) == 0  # the saved one
        page = out.read_text(encoding="utf-8")
        assert f"<td>{BLEND_ROW}</td>" in page and "(the run&#x27;s saved weights)" in page
        assert "repeat-recent 0.5" in page
        assert main(["report", str(demo_dir / "run"), "--out", str(out), "--blend", "none"]) == 0
        assert BLEND_ROW not in out.read_text(encoding="utf-8")  # none: the saved one left out
        ens = Ensemble.load([demo_dir / "run"])
        learned, _ = fit_learned(ens, ["repeat-recent"], threads=1, folds=1)
        save_blend(demo_dir / "run", {}, tuned_on="valid", learned=learned)
        assert main(["report", str(demo_dir / "run"), "--out", str(out)]) == 0  # a learned one
        page = out.read_text(encoding="utf-8")
        assert f"<td>{BLEND_ROW}</td>" in page and "(the run&#x27;s learned blend)" in page
    finally:
        saved.write_text(kept)
        (demo_dir / "run" / LEARNED_FILE).unlink(missing_ok=True)
    blended = tmp_path / "blended.html"
    args = ["report", str(demo_dir / "run"), "--out", str(blended), "--blend", "repeat-recent"]
    assert main(args) == 0
    _check_report(blended)
    assert f"<td>{BLEND_ROW}</td>" in blended.read_text(encoding="utf-8")
    assert main([*args[:-1], "repeat-soon"]) == 2
    assert "unknown baseline(s) repeat-soon" in capsys.readouterr().err


def test_the_blend_row_and_examples_come_from_the_tuned_blend(successor) -> None:
    # item i is always followed by i + 1: transitions are perfect, a barely trained run is not;
    # the weight search on validation finds that and the blend ranks the examples
    from chronorec.blend import Ensemble
    from chronorec.config import ModelConfig, RunConfig, TrainConfig
    from chronorec.recommender import Recommender
    from chronorec.report import collect_report_data

    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=16, n_layers=1, max_len=8, dropout=0.0),
        train=TrainConfig(max_epochs=1, batch_size=16, lr=1e-4, threads=1, warmup_steps=1),
    )  # fmt: skip
    rec = Recommender(cfg).fit(successor, progress=False)
    data = collect_report_data(
        rec, successor, title="t", vectors=None, train_summary={}, blend=["transitions"]
    )
    assert data.blend_weights is not None and data.blend_weights["transitions"] > 0
    assert "transitions" in data.info[f"{BLEND_ROW} (weights tuned on validation)"]
    model, blend = data.results["model"], data.results[BLEND_ROW]
    assert blend["ndcg@10"] > max(model["ndcg@10"] + 0.1, 0.9)
    again = Ensemble([rec], data.blend_weights).evaluate("test").to_dict()
    assert {k: v for k, v in blend.items() if k != "seconds"} == {
        k: v for k, v in again.items() if k != "seconds"
    }  # the same ranks; only the time taken may differ
    for ex in data.examples:  # the item after the last one first, as the blend ranks
        last = int(ex.history[0][0].rsplit(" ", 1)[1])
        assert ex.recommended[0][0] == f"Item number {last % 20 + 1}"


def test_report_for_a_log_without_timestamps_or_prices(successor, tmp_path: Path) -> None:
    # ML-1M (SASRec variant) and Amazon Scientific carry order only: no recent-popularity
    # baseline, no timestamps for the examples, one colour in the item map; and an ID tower.
    import dataclasses

    import polars as pl

    from chronorec.config import ModelConfig, RunConfig, TrainConfig
    from chronorec.recommender import Recommender

    untimed = dataclasses.replace(
        successor,
        events=successor.events.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("timestamp"),
            pl.lit(None, dtype=pl.Int64).alias("gap"),
        ),
        manifest={**successor.manifest, "has_timestamps": False},
    )
    data = untimed.save(tmp_path / "data")
    cfg = RunConfig(
        model=ModelConfig(name="gru", d_model=16, max_len=8, dropout=0.0),
        train=TrainConfig(max_epochs=2, batch_size=16, threads=1),
    )
    Recommender(cfg).fit(data, run_dir=tmp_path / "run", progress=False)
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "run"), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "popular-30d" not in page and page.count("class=example") == 3
