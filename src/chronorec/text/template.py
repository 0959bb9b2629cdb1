"""Item text from catalogue fields: a key–value template such as

    title: Stanley 1/2-Inch Staples; brand: Stanley; categories: Industrial > Fasteners;
    price: 12.99 (10 to 25); description: Heavy-duty staples for insulation ...

Missing and empty fields are skipped. The description goes last so that truncation at the model's
maximum length cuts the description, not the title. An item with no text at all gets the
deterministic fallback ``item <item_id>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

# Known fields first, in this order; description last (it is the one worth truncating).
LEADING_FIELDS = ("title", "name", "brand", "category", "categories", "genres", "price")
TRAILING_FIELDS = ("description",)
# Upper bounds of the price buckets; the last bucket is open.
PRICE_BOUNDS = (1, 5, 10, 25, 50, 100, 250, 1000)
TEMPLATE_VERSION = 1  # bump when the rendering below changes, so cached vectors are not reused


def default_fields(columns: Sequence[str]) -> tuple[str, ...]:
    """Template order for these catalogue columns: known fields, the rest, then description."""
    known = set(LEADING_FIELDS) | set(TRAILING_FIELDS)
    lead = [c for c in LEADING_FIELDS if c in columns]
    middle = [c for c in columns if c not in known]
    tail = [c for c in TRAILING_FIELDS if c in columns]
    return tuple(lead + middle + tail)


def price_words(value: float) -> str:
    """``12.5 -> "12.50 (10 to 25)"``: the exact price plus a coarse bucket the model can read."""
    lower = 0
    for upper in PRICE_BOUNDS:
        if value < upper:
            return f"{value:.2f} ({'under ' + str(upper) if lower == 0 else f'{lower} to {upper}'})"
        lower = upper
    return f"{value:.2f} (over {PRICE_BOUNDS[-1]})"


def clean_text(value: str | bytes) -> str:
    """Valid UTF-8, whitespace collapsed; undecodable bytes become U+FFFD, lone surrogates '?'."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    else:
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return " ".join(value.split())


def _field_value(name: str, value: Any, max_chars: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if name == "price" and isinstance(value, int | float):
        return price_words(float(value)) if value >= 0 else ""
    if isinstance(value, list | tuple):
        parts = []
        for part in value:
            if isinstance(part, list | tuple):  # a category path
                part = " > ".join(clean_text(str(p)) for p in part if p is not None)
            elif part is not None:
                part = clean_text(part if isinstance(part, str | bytes) else str(part))
            if part:
                parts.append(part)
        text = ", ".join(parts)
    else:
        text = clean_text(value if isinstance(value, str | bytes) else str(value))
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]
    return text


def item_text(fields: Mapping[str, Any], order: Sequence[str], max_field_chars: int = 2000) -> str:
    """The template text of one item, or ``""`` when every listed field is empty."""
    parts = []
    for name in order:
        text = _field_value(name, fields.get(name), max_field_chars)
        if text:
            parts.append(f"{name.replace('_', ' ')}: {text}")
    return "; ".join(parts)


def fallback_text(item_id: str) -> str:
    return f"item {clean_text(str(item_id))}"


def render_catalogue(
    catalogue: pl.DataFrame, order: Sequence[str], max_field_chars: int = 2000
) -> list[str]:
    """Template texts for every row of ``catalogue`` (which must have ``item_id``).

    Rows with no text get :func:`fallback_text`, and one warning gives their count.
    """
    present = [c for c in order if c in catalogue.columns]
    ids = catalogue["item_id"].cast(pl.Utf8).to_list()
    if present:
        rows = catalogue.select(present).iter_rows(named=True)
        texts = [item_text(row, present, max_field_chars) for row in rows]
    else:
        texts = [""] * catalogue.height
    empty = [i for i, t in enumerate(texts) if not t]
    for i in empty:
        texts[i] = fallback_text(ids[i])
    if empty:
        log.warning(
            "%d of %d items have no text in %s; encoding 'item <id>' for them (e.g. %r)",
            len(empty),
            len(texts),
            ", ".join(present) or "any field",
            ids[empty[0]],
        )
    return texts


def template_fingerprint(order: Sequence[str], max_field_chars: int) -> str:
    spec = {"version": TEMPLATE_VERSION, "fields": list(order), "max_field_chars": max_field_chars}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()
