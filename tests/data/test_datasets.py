"""Prepare each real dataset in ../shared/datasets and check its counts against its README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chronorec.cli import main

pytestmark = pytest.mark.dataset

D = Path(__file__).resolve().parents[3] / "shared" / "datasets"
CASES = {
    "ml-1m": (
        [
            "--format",
            "sasrec-txt",
            "--events",
            f"{D}/ml-1m/ml-1m.txt",
            "--items",
            f"{D}/ml-1m/item_text.tsv",
        ],
        (6040, 3416, 999611),
        {},
    ),
    "ml-100k": (["--format", "movielens", "--events", f"{D}/ml-100k"], (943, 1682, 100000), {}),
    "amazon-scientific": (
        [
            "--format",
            "amazon-json",
            "--events",
            f"{D}/amazon-scientific/Scientific.inter.json",
            "--items",
            f"{D}/amazon-scientific/Scientific.item.json",
        ],
        (8317, 4344, 58492),
        {},
    ),
    "amazon-toys": (
        ["--format", "sasrec-txt", "--events", f"{D}/amazon-toys-2014/toys.txt"],
        (19412, 11924, 167597),
        {},
    ),
    "taobao": (
        ["--format", "taobao", "--events", f"{D}/taobao-sample/UserBehavior_head.csv"],
        (814, 55233, 84287),
        {"pv": 75693, "cart": 4494, "fav": 2351, "buy": 1749},
    ),
    # the README gives raw rows (4,372 customers incl. cancellation-only ones); purchases of real
    # products by known customers, one event per (invoice, item), are what remains:
    "online-retail": (
        ["--format", "online-retail", "--events", f"{D}/online-retail/online_retail.parquet"],
        None,
        {},
    ),
}


@pytest.mark.skipif(not D.is_dir(), reason="../shared/datasets is not here")
@pytest.mark.parametrize("name", list(CASES))
def test_prepare_and_stats_match_readme(name, tmp_path, capsys):
    args, counts, behaviours = CASES[name]
    out = tmp_path / name
    assert main(["prepare", *args, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    if counts is not None:
        assert (stats["users"], stats["items"], stats["events"]) == counts
    else:
        assert stats["users"] <= 4372 and stats["items"] <= 4070 and stats["events"] > 300_000
        assert stats["time_span"]["min_iso"].startswith("2010-12-01")
    for b, n in behaviours.items():
        assert stats["behaviour_counts"][b] == n
