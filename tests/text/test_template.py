from __future__ import annotations

import logging

import polars as pl
import pytest

from chronorec.errors import ConfigError
from chronorec.text import TextConfig
from chronorec.text.items import text_fields
from chronorec.text.template import default_fields, item_text, price_words, render_catalogue


def test_key_value_template_in_field_order_skipping_missing() -> None:
    fields = {"title": "Cable", "brand": None, "description": "Long text", "price": 3.5}
    order = ("title", "brand", "price", "description")
    assert item_text(fields, order) == "title: Cable; price: 3.50 (1 to 5); description: Long text"


def test_price_buckets() -> None:
    assert price_words(0.5) == "0.50 (under 1)"
    assert price_words(10) == "10.00 (10 to 25)"
    assert price_words(2500) == "2500.00 (over 1000)"
    assert item_text({"price": float("nan")}, ["price"]) == ""
    assert item_text({"price": -1.0}, ["price"]) == ""


def test_lists_category_paths_and_whitespace() -> None:
    fields = {
        "genres": ["Comedy", None, "Drama"],
        "categories": [["Tools", "Staples"], ["Office"]],
        "title": "  two\n\tlines  ",
    }
    text = item_text(fields, ("title", "categories", "genres"))
    assert text == "title: two lines; categories: Tools > Staples, Office; genres: Comedy, Drama"


def test_long_fields_are_cut_at_a_word_boundary() -> None:
    text = item_text({"description": "word " * 1000}, ["description"], max_field_chars=22)
    assert text == "description: word word word word"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    text = item_text({"title": b"caf\xe9 bar", "brand": "bad \udcff end"}, ["title", "brand"])
    assert text == "title: caf\ufffd bar; brand: bad ? end"
    text.encode("utf-8")  # valid


def test_default_order_puts_description_last_and_keeps_unknown_columns() -> None:
    assert default_fields(["description", "colour", "title", "price"]) == (
        "title",
        "price",
        "colour",
        "description",
    )


def test_empty_items_get_a_deterministic_fallback_and_one_warning(
    catalogue: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pl.concat([catalogue, catalogue.with_columns(pl.col("item_id") + "2")])
    with caplog.at_level(logging.WARNING):
        texts = render_catalogue(frame, ("title", "brand", "description", "price"))
    assert texts[2] == "item c" and texts[6] == "item c2"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 8 items have no text" in warnings[0].getMessage()
    assert texts[3] == "title: red steel staples; brand: stanley; price: 120.00 (100 to 250)"


def test_fields_from_config_must_exist(catalogue: pl.DataFrame) -> None:
    assert text_fields(catalogue, TextConfig()) == ("title", "brand", "price", "description")
    assert text_fields(catalogue, TextConfig(fields=("brand",))) == ("brand",)
    with pytest.raises(ConfigError, match="'colour'"):
        text_fields(catalogue, TextConfig(fields=("title", "colour")))


def test_config_round_trip_and_unknown_keys() -> None:
    config = TextConfig(fields=("title",), backend="onnx")
    assert TextConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="batchsize"):
        TextConfig.from_dict({"batchsize": 3})
    with pytest.raises(ConfigError, match="backend"):
        TextConfig(backend="tensorflow")
