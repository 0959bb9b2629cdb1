"""Known-answer tests for every adapter on tiny files written here."""

from __future__ import annotations

import json

import polars as pl
import pytest

from chronorec.data.dataset import load_prepared
from chronorec.data.prepare import PrepareOptions, prepare
from chronorec.data.readers import ColumnMap, read


def _seqs(ds):
    ids = dict(zip(ds.items["item"], ds.items["item_id"], strict=True))
    users = dict(zip(ds.users["user"], ds.users["user_id"], strict=True))
    out: dict[str, list[str]] = {}
    for u, i in ds.events.select("user", "item").iter_rows():
        out.setdefault(users[u], []).append(ids[i])
    return out


def test_csv_with_column_map_sorts_stably_and_computes_gaps(write):
    path = write(
        "events.csv",
        "uid,sku,ts,action\n"
        "a,x,100,view\n"
        "b,y,50,view\n"
        "a,y,100,cart\n"  # same timestamp as line 2: file order kept
        "a,z,90,view\n"
        "b,x,70,buy\n",
    )
    cols = ColumnMap(user="uid", item="sku", time="ts", behaviour="action")
    ds = prepare(read("csv", path, columns=cols))
    assert _seqs(ds) == {"a": ["z", "x", "y"], "b": ["y", "x"]}
    assert ds.behaviours == ["buy", "cart", "view"]
    a = ds.events.filter(pl.col("user") == 1)
    assert a["timestamp"].to_list() == [90, 100, 100]
    assert a["gap"].to_list() == [None, 10, 0]
    assert a["position"].to_list() == [0, 1, 2]
    assert a["behaviour"].to_list() == [3, 3, 2]
    assert ds.manifest["counts"] == {"users": 2, "items": 3, "events": 5}
    assert ds.manifest["behaviour_counts"] == {"buy": 1, "cart": 1, "view": 3}
    assert len(ds.manifest["sources"][0]["sha256"]) == 64


def test_iso_dates_and_item_catalogue(write):
    ev = write("e.csv", "user_id,item_id,timestamp\n1,10,2024-01-02T00:00:00\n1,11,2024-01-01\n")
    it = write("i.csv", "item_id,title,price\n10,Blue mug,3.5\n11,Red mug,4\n12,Unused,1\n")
    ds = prepare(read("csv", ev, it, columns=ColumnMap(price="price")))
    assert _seqs(ds) == {"1": ["11", "10"]}
    assert ds.events["timestamp"].to_list() == [1704067200, 1704153600]
    assert ds.items["title"].to_list() == ["Blue mug", "Red mug"]  # item 12 has no events
    assert ds.items["price"].to_list() == [3.5, 4.0]
    assert ds.text_columns == ["title"]
    kept = prepare(read("csv", ev, it), PrepareOptions(keep_catalogue_items=True))
    assert kept.n_items == 3


def test_parquet_and_jsonl_generic(tmp_path, write):
    frame = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["p", "q"], "timestamp": [5, 3]})
    frame.write_parquet(tmp_path / "e.parquet")
    ds = prepare(read("parquet", tmp_path / "e.parquet"))
    assert _seqs(ds) == {"u": ["q", "p"]}
    j = write(
        "e.jsonl",
        '{"user_id": "u", "item_id": "p", "timestamp": 5}\n'
        '{"user_id": "u", "item_id": "q", "timestamp": 3}\n',
    )
    assert _seqs(prepare(read("jsonl", j))) == {"u": ["q", "p"]}


def test_sasrec_txt_with_item_text(write):
    ev = write("ml.txt", "1 1\n1 3\n2 2\n1 2\n")
    it = write(
        "item_text.tsv",
        "orig_movie_id\tsas_item_id\ttitle\tgenres\tdbpedia_abstract\n"
        '9\t1\tToy Story (1995)\tAnimation\t"Toy" is a film\n'
        "8\t2\tJumanji (1995)\tAdventure\t\n",
    )
    ds = prepare(read("sasrec-txt", ev, it))
    assert _seqs(ds) == {"1": ["1", "3", "2"], "2": ["2"]}
    assert ds.items["title"].to_list() == ["Toy Story (1995)", "Jumanji (1995)", None]
    assert ds.items["description"][0] == '"Toy" is a film'
    assert not ds.has_timestamps
    assert ds.events["gap"].null_count() == 4


def test_movielens_1m_and_100k(write):
    ratings = write("m1/ratings.dat", "1::20::5::300\n1::10::3::200\n2::10::4::100\n")
    write("m1/movies.dat", "10::Heat (1995)::Action|Crime\n20::Babe (1995)::Comedy\n")
    ds = prepare(read("movielens", ratings.parent))
    assert _seqs(ds) == {"1": ["10", "20"], "2": ["10"]}
    assert ds.items["genres"].to_list() == ["Action|Crime", "Comedy"]
    assert ds.events["value"].to_list() == [3.0, 5.0, 4.0]
    write("m100/u.data", "1\t7\t4\t881250949\n1\t8\t2\t881250948\n")
    write(
        "m100/u.item",
        "7|Film A (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"
        "|0|0\n8|Film B \xe9 (1995)|01-Jan-1995||http://y|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n".encode(
            "latin-1"
        ),
    )
    ds = prepare(read("movielens", ratings.parent.parent / "m100" / "u.data"))
    assert _seqs(ds) == {"1": ["8", "7"]}
    assert ds.items["title"].to_list() == ["Film A (1995)", "Film B \xe9 (1995)"]
    assert ds.items["genres"].to_list() == ["Action", "Comedy"]


def test_amazon_json(write):
    ev = write("x.inter.json", json.dumps({"0": ["5", "6", "5"], "1": ["6"]}))
    it = write(
        "x.item.json",
        json.dumps(
            {
                "5": {"title": "Gloves", "categories": ["Lab", "Safety"]},
                "6": {"title": "Tape", "brand": "3M"},
            }
        ),
    )
    ds = prepare(read("amazon-json", ev, it))
    assert _seqs(ds) == {"0": ["5", "6", "5"], "1": ["6"]}
    assert ds.items["categories"].to_list() == ["Lab, Safety", None]
    assert ds.items["brand"].to_list() == [None, "3M"]


@pytest.mark.parametrize("spelling", ["I", "II"])
def test_online_retail_both_column_sets(tmp_path, spelling):
    names = (
        [
            "InvoiceNo",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "UnitPrice",
            "CustomerID",
            "Country",
        ]
        if spelling == "I"
        else [
            "Invoice",
            "StockCode",
            "Description",
            "Quantity",
            "InvoiceDate",
            "Price",
            "Customer ID",
            "Country",
        ]
    )
    rows = [
        ("536365", "85123A", "WHITE HEART", 6, "2010-12-01 08:26:00", 2.55, 17850.0, "UK"),
        ("536365", "85123A", "WHITE HEART", 2, "2010-12-01 08:26:00", 2.55, 17850.0, "UK"),
        ("536365", "POST", "POSTAGE", 1, "2010-12-01 08:26:00", 18.0, 17850.0, "UK"),
        ("C536379", "85123A", "WHITE HEART", -1, "2010-12-01 09:41:00", 2.55, 17850.0, "UK"),
        ("536366", "22633", "HAND WARMER", 6, "2010-12-01 08:28:00", 1.85, 17850.0, "UK"),
        ("536367", "22633", "HAND WARMER", 6, "2010-12-01 08:30:00", 1.85, None, "UK"),
        ("536368", "22633", "HAND WARMER", 3, "2010-12-02 10:00:00", 2.05, 13047.0, "UK"),
    ]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    frame.write_parquet(tmp_path / "retail.parquet")
    ds = prepare(read("online-retail", tmp_path / "retail.parquet"))
    assert _seqs(ds) == {"13047": ["22633"], "17850": ["85123A", "22633"]}
    assert ds.events.filter(pl.col("user") == 2)["value"].to_list() == [8.0, 6.0]
    assert ds.behaviours == ["buy"]
    items = dict(zip(ds.items["item_id"], ds.items["title"], strict=True))
    assert items == {"22633": "HAND WARMER", "85123A": "WHITE HEART"}
    prices = dict(zip(ds.items["item_id"], ds.items["price"], strict=True))
    assert prices["22633"] == pytest.approx(1.95)


def test_taobao(write):
    path = write(
        "ub.csv", "1,100,7,pv,1511544070\n1,101,7,buy,1511544000\n2,100,7,cart,1511544071\n"
    )
    ds = prepare(read("taobao", path))
    assert ds.behaviours == ["pv", "cart", "fav", "buy"]
    assert _seqs(ds) == {"1": ["101", "100"], "2": ["100"]}
    assert ds.events["behaviour"].to_list() == [4, 1, 2]
    assert ds.items["category"].to_list() == ["category 7", "category 7"]


def test_filters_kcore_truncation_dedupe(write):
    path = write(
        "e.csv",
        "user_id,item_id,timestamp\n"
        + "".join(f"u1,i{k % 3},{k}\n" for k in range(6))
        + "u2,i0,1\nu2,i9,2\nu1,i0,0\n",
    )
    raw = read("csv", path)
    core = prepare(raw, PrepareOptions(min_user_events=3, min_item_events=2))
    assert set(core.item_ids()) == {"i0", "i1", "i2"} and core.user_ids() == ["u1"]
    assert prepare(raw, PrepareOptions(dedupe=True)).events.height == 8
    last = prepare(raw, PrepareOptions(max_events_per_user=2))
    assert last.events.filter(pl.col("user") == 1)["timestamp"].to_list() == [4, 5]


def test_save_and_load_round_trip(tmp_path, write):
    path = write("e.csv", "user_id,item_id,timestamp\na,x,1\na,y,2\n")
    ds = prepare(read("csv", path))
    ds.save(tmp_path / "out")
    back = load_prepared(tmp_path / "out")
    assert back.events.equals(ds.events)
    assert back.items.equals(ds.items)
    assert back.manifest == ds.manifest
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
