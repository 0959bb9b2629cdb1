"""Named adapters that read an event log (and optionally a catalogue) into a :class:`RawData`.

Every reader returns the same raw shape, before ids are mapped:

* ``events``: ``user_id:str, item_id:str, timestamp:i64? (unix seconds), behaviour:str?,
  value:f64?, _line:i64`` in file order (``_line`` is the 1-based line or row in the source, used
  in error messages and to keep file order for ties);
* ``items``: ``item_id:str`` + text columns (str) + optional ``price:f64`` + vector columns.

Errors name the file, the line (CSV/JSONL/text: physical line, assuming no multi-line quoted
fields; Parquet: 1-based row) and the column.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chronorec.errors import DataError

TAOBAO_BEHAVIOURS = ("pv", "cart", "fav", "buy")


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns mean what (generic csv / parquet / jsonl readers)."""

    user: str = "user_id"
    item: str = "item_id"
    time: str | None = "timestamp"
    behaviour: str | None = None
    value: str | None = None
    item_id: str | None = None  # id column of the items file; defaults to ``item``
    text: tuple[str, ...] = ()  # item text columns; empty = every string column but the id
    price: str | None = None
    vectors: tuple[str, ...] = ()  # precomputed embedding columns (list of floats)
    time_format: str | None = None  # strptime format; None = unix seconds or ISO 8601


@dataclass(frozen=True)
class RawData:
    events: pl.DataFrame
    items: pl.DataFrame | None
    format: str
    sources: list[Path]
    text_columns: list[str] = field(default_factory=list)
    vector_columns: list[str] = field(default_factory=list)
    behaviour_vocab: tuple[str, ...] | None = None  # fixed vocabulary, in index order
    default_behaviour: str = "interact"


# ----------------------------------------------------------------------------- helpers


def _require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=p)
    if p.is_dir():
        raise DataError("is a directory, expected a file", path=p)
    return p


def _check_encoding(path: Path, encoding: str) -> None:
    """Fail with the line number of the first byte that is not valid in ``encoding``."""
    if encoding.lower().replace("-", "") not in ("utf8", "utf8lossy"):
        return
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); pass --encoding latin-1 "
            "(or the file's real encoding)",
            path=path,
            line=line,
        ) from exc


def _check_columns(frame: pl.DataFrame, wanted: dict[str, str | None], path: Path) -> None:
    have = frame.columns
    for role, col in wanted.items():
        if col is not None and col not in have:
            raise DataError(
                f"no {role} column '{col}'; the file has: {', '.join(have)}",
                path=path,
                column=col,
            )


def _first_bad(frame: pl.DataFrame, mask: pl.Series) -> int:
    return int(frame.filter(mask)["_line"][0])


def _check_ids(frame: pl.DataFrame, path: Path, cols: Sequence[tuple[str, str]]) -> None:
    """Reject empty ids; a null id usually means a truncated or malformed line."""
    for out_col, src_col in cols:
        s = frame[out_col]
        bad = s.is_null() | (s.str.strip_chars() == "")
        if bad.any():
            raise DataError(
                "empty value (a truncated or malformed line?)",
                path=path,
                line=_first_bad(frame, bad),
                column=src_col,
            )


def _check_repeated_header(frame: pl.DataFrame, path: Path, user_col: str, item_col: str) -> None:
    bad = (frame["user_id"] == user_col) & (frame["item_id"] == item_col)
    if bad.any():
        raise DataError(
            "the header line is repeated inside the data", path=path, line=_first_bad(frame, bad)
        )


def parse_timestamps(
    values: pl.Series, lines: pl.Series, path: Path, column: str, fmt: str | None = None
) -> pl.Series:
    """Unix seconds (int/float, milliseconds detected by size) or date strings → Int64 seconds."""
    dtype = values.dtype
    if dtype.is_temporal():
        secs = values.cast(pl.Datetime("ms")).dt.epoch("s")
    elif dtype.is_numeric():
        secs = values.cast(pl.Float64)
    else:
        s = values.cast(pl.Utf8).str.strip_chars()
        numeric = s.cast(pl.Float64, strict=False)
        first = s.is_not_null().arg_true()
        if fmt is None and len(first) and numeric[int(first[0])] is not None:
            # the first value is a number: the column is unix time, every value must be one
            bad = numeric.is_null() & s.is_not_null()
            if bad.any():
                i = int(bad.arg_true()[0])
                raise DataError(
                    f"timestamp {s[i]!r} is not a number (unix seconds)",
                    path=path,
                    line=int(lines[i]),
                    column=column,
                )
            secs = numeric
        else:
            try:
                parsed = s.str.to_datetime(format=fmt, strict=False, time_unit="ms")
            except pl.exceptions.ComputeError:
                # no format could be inferred from the first value: every value counts as bad
                parsed = pl.Series([None] * len(s), dtype=pl.Datetime("ms"))
            if parsed.dtype != pl.Datetime("ms"):  # timezone-aware input
                parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            bad = parsed.is_null() & s.is_not_null()
            if bad.any():
                i = int(bad.arg_true()[0])
                raise DataError(
                    f"timestamp {s[i]!r} is neither unix seconds nor a date"
                    + (f" in format {fmt!r}" if fmt else " (ISO 8601; give --time-format)"),
                    path=path,
                    line=int(lines[i]),
                    column=column,
                )
            return parsed.dt.epoch("s").cast(pl.Int64)
    bad = secs.is_nan() if secs.dtype == pl.Float64 else pl.Series([False] * len(secs))
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError("timestamp is NaN", path=path, line=int(lines[i]), column=column)
    median = secs.drop_nulls().abs().median()
    if median is not None and float(median) > 1e11:  # type: ignore[arg-type]  # milliseconds
        secs = secs / 1000.0
    return secs.floor().cast(pl.Int64)


def _read_table(path: Path, kind: str, encoding: str) -> tuple[pl.DataFrame, int]:
    """Read csv/tsv/parquet/jsonl with every column as-is; returns (frame, line of first row)."""
    try:
        if kind == "parquet":
            return pl.read_parquet(path), 1
        _check_encoding(path, encoding)
        if kind == "jsonl":
            return pl.read_ndjson(path, infer_schema_length=None), 1
        tsv = path.suffix.lower() in (".tsv", ".tab")
        # TSV text fields carry literal quotes (film abstracts): no quoting in TSV
        sep, quote = ("\t", None) if tsv else (",", '"')
        enc = "utf8" if encoding.lower().replace("-", "") == "utf8" else "utf8-lossy"
        if enc == "utf8-lossy":
            text = path.read_bytes().decode(encoding)
            return pl.read_csv(
                text.encode(), separator=sep, quote_char=quote, infer_schema=False
            ), 2
        return pl.read_csv(
            path, separator=sep, quote_char=quote, infer_schema=False, encoding=enc
        ), 2
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError, LookupError) as exc:
        raise DataError(f"cannot read as {kind}: {str(exc).splitlines()[0]}", path=path) from exc


def _kind_of(path: Path, fmt: str) -> str:
    if fmt in ("parquet", "jsonl"):
        return fmt
    if fmt == "csv":
        return "csv"
    return {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(
        path.suffix.lower(), "csv"
    )


# ----------------------------------------------------------------------------- catalogue


def _catalogue(
    frame: pl.DataFrame, path: Path, cols: ColumnMap, id_col: str
) -> tuple[pl.DataFrame, list[str], list[str]]:
    _check_columns(frame, {"item id": id_col, "price": cols.price}, path)
    for c in (*cols.text, *cols.vectors):
        _check_columns(frame, {"text/vector": c}, path)
    text_cols = list(cols.text) or [
        c
        for c in frame.columns
        if c not in (id_col, cols.price, *cols.vectors) and frame[c].dtype == pl.Utf8
    ]
    out = [pl.col(id_col).cast(pl.Utf8).str.strip_chars().alias("item_id")]
    out += [pl.col(c).cast(pl.Utf8).alias(c) for c in text_cols]
    if cols.price is not None:
        out.append(pl.col(cols.price).cast(pl.Float64, strict=False).alias("price"))
    out += [pl.col(c).cast(pl.List(pl.Float32)).alias(c) for c in cols.vectors]
    items = frame.select(out)
    empty = items["item_id"].is_null() | (items["item_id"] == "")
    if empty.any():
        i = int(empty.arg_true()[0])
        raise DataError("empty item id", path=path, line=i + 2, column=id_col)
    items = items.unique("item_id", keep="first", maintain_order=True)
    return items, text_cols, list(cols.vectors)


# ----------------------------------------------------------------------------- generic


def read_generic(
    events_path: str | Path,
    items_path: str | Path | None = None,
    *,
    columns: ColumnMap = ColumnMap(),
    fmt: str = "auto",
    encoding: str = "utf8",
) -> RawData:
    """CSV / TSV / Parquet / JSONL event log with a column mapping."""
    path = _require_file(events_path)
    kind = _kind_of(path, fmt)
    frame, first = _read_table(path, kind, encoding)
    if frame.height == 0:
        raise DataError("no events (empty file or header only)", path=path)
    wanted = {
        "user": columns.user,
        "item": columns.item,
        "time": columns.time,
        "behaviour": columns.behaviour,
        "value": columns.value,
    }
    _check_columns(frame, wanted, path)
    frame = frame.with_row_index("_line", offset=first).with_columns(pl.col("_line").cast(pl.Int64))
    sel = [
        pl.col(columns.user).cast(pl.Utf8).str.strip_chars().alias("user_id"),
        pl.col(columns.item).cast(pl.Utf8).str.strip_chars().alias("item_id"),
        pl.col("_line"),
    ]
    events = frame.select(sel)
    if kind == "csv":
        _check_repeated_header(events, path, columns.user, columns.item)
    _check_ids(events, path, [("user_id", columns.user), ("item_id", columns.item)])
    if columns.time is not None:
        ts = frame[columns.time]
        missing = ts.is_null()
        if missing.any():
            raise DataError(
                "empty timestamp (a truncated or malformed line?)",
                path=path,
                line=_first_bad(frame, missing),
                column=columns.time,
            )
        events = events.with_columns(
            parse_timestamps(ts, frame["_line"], path, columns.time, columns.time_format).alias(
                "timestamp"
            )
        )
    else:
        events = events.with_columns(pl.lit(None, pl.Int64).alias("timestamp"))
    if columns.behaviour is not None:
        b = frame[columns.behaviour].cast(pl.Utf8).str.strip_chars()
        if (b.is_null() | (b == "")).any():
            raise DataError(
                "empty behaviour",
                path=path,
                line=_first_bad(frame, b.is_null() | (b == "")),
                column=columns.behaviour,
            )
        events = events.with_columns(b.alias("behaviour"))
    else:
        events = events.with_columns(pl.lit(None, pl.Utf8).alias("behaviour"))
    if columns.value is not None:
        v = frame[columns.value].cast(pl.Float64, strict=False)
        bad = v.is_null() & frame[columns.value].is_not_null()
        if bad.any():
            raise DataError(
                "value is not a number",
                path=path,
                line=_first_bad(frame, bad),
                column=columns.value,
            )
        events = events.with_columns(v.alias("value"))
    else:
        events = events.with_columns(pl.lit(None, pl.Float64).alias("value"))

    items = None
    text_cols: list[str] = []
    vec_cols: list[str] = []
    sources = [path]
    if items_path is not None:
        ipath = _require_file(items_path)
        iframe, _ = _read_table(ipath, _kind_of(ipath, fmt), encoding)
        items, text_cols, vec_cols = _catalogue(
            iframe, ipath, columns, columns.item_id or columns.item
        )
        sources.append(ipath)
    return RawData(
        events=_order(events),
        items=items,
        format=kind,
        sources=sources,
        text_columns=text_cols,
        vector_columns=vec_cols,
    )


def _order(events: pl.DataFrame) -> pl.DataFrame:
    return events.select("user_id", "item_id", "timestamp", "behaviour", "value", "_line")


# ----------------------------------------------------------------------------- sasrec-txt


def read_sasrec_txt(
    events_path: str | Path, items_path: str | Path | None = None, *, encoding: str = "utf8"
) -> RawData:
    """``user item`` per line, chronological per user; optional ``item_text.tsv`` (ML-1M)."""
    path = _require_file(events_path)
    _check_encoding(path, encoding)
    try:
        frame = pl.read_csv(
            path,
            separator=" ",
            has_header=False,
            infer_schema=False,
            new_columns=["user_id", "item_id"],
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(
            f"expected lines 'user item': {str(exc).splitlines()[0]}", path=path
        ) from exc
    if frame.width != 2:
        raise DataError(f"expected 2 fields per line ('user item'), found {frame.width}", path=path)
    events = frame.with_row_index("_line", offset=1).with_columns(
        pl.col("_line").cast(pl.Int64),
        pl.col("user_id").str.strip_chars(),
        pl.col("item_id").str.strip_chars(),
        pl.lit(None, pl.Int64).alias("timestamp"),
        pl.lit(None, pl.Utf8).alias("behaviour"),
        pl.lit(None, pl.Float64).alias("value"),
    )
    _check_ids(events, path, [("user_id", "user"), ("item_id", "item")])
    items = None
    text_cols: list[str] = []
    sources = [path]
    if items_path is not None:
        ipath = _require_file(items_path)
        iframe, _ = _read_table(ipath, "csv", encoding)
        _check_columns(iframe, {"item id": "sas_item_id"}, ipath)
        rename = {"dbpedia_abstract": "description"}
        text_cols = [
            rename.get(c, c) for c in ("title", "genres", "dbpedia_abstract") if c in iframe.columns
        ]
        items = iframe.select(
            pl.col("sas_item_id").str.strip_chars().alias("item_id"),
            *[
                pl.col(c).alias(rename.get(c, c))
                for c in ("title", "genres", "dbpedia_abstract")
                if c in iframe.columns
            ],
        ).filter(pl.col("item_id").is_not_null() & (pl.col("item_id") != ""))
        items = items.unique("item_id", keep="first", maintain_order=True)
        sources.append(ipath)
    return RawData(
        events=_order(events),
        items=items,
        format="sasrec-txt",
        sources=sources,
        text_columns=text_cols,
    )


# ----------------------------------------------------------------------------- movielens


def _movielens_files(events_path: Path, items_path: str | Path | None) -> tuple[Path, Path | None]:
    if events_path.is_dir():
        for name in ("ratings.dat", "u.data"):
            if (events_path / name).exists():
                ev = events_path / name
                break
        else:
            raise DataError("no ratings.dat or u.data in this directory", path=events_path)
    else:
        ev = _require_file(events_path)
    if items_path is not None:
        return ev, _require_file(items_path)
    guess = ev.parent / ("movies.dat" if ev.name.startswith("ratings") else "u.item")
    return ev, guess if guess.exists() else None


def read_movielens(
    events_path: str | Path, items_path: str | Path | None = None, *, encoding: str = "latin-1"
) -> RawData:
    """ML-1M ``ratings.dat``/``movies.dat`` (``::``, Latin-1) or ML-100K ``u.data``/``u.item``."""
    ev, ip = _movielens_files(Path(events_path), items_path)
    raw = ev.read_bytes()
    if ev.suffix == ".gz":
        import gzip

        raw = gzip.decompress(raw)
    text = raw.decode(encoding, errors="strict")
    ml1m = "::" in text[:200]
    sep = "\t"
    if ml1m:
        text = text.replace("::", "\t")
    try:
        frame = pl.read_csv(text.encode(), separator=sep, has_header=False, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse ratings: {str(exc).splitlines()[0]}", path=ev) from exc
    if frame.width != 4:
        raise DataError(
            f"expected 4 fields (user item rating timestamp), found {frame.width}", path=ev
        )
    frame = frame.rename(
        dict(zip(frame.columns, ["user_id", "item_id", "rating", "ts"], strict=True))
    )
    frame = frame.with_row_index("_line", offset=1).with_columns(pl.col("_line").cast(pl.Int64))
    _check_ids(frame, ev, [("user_id", "user"), ("item_id", "item")])
    events = frame.select(
        pl.col("user_id").str.strip_chars(),
        pl.col("item_id").str.strip_chars(),
        parse_timestamps(frame["ts"], frame["_line"], ev, "timestamp").alias("timestamp"),
        pl.lit("rate").alias("behaviour"),
        pl.col("rating").cast(pl.Float64, strict=False).alias("value"),
        pl.col("_line"),
    )
    items = None
    sources = [ev]
    text_cols: list[str] = []
    if ip is not None:
        itext = ip.read_bytes().decode("latin-1")
        if "::" in itext[:500]:
            rows = [line.split("::") for line in itext.splitlines() if line]
            items = pl.DataFrame(
                {
                    "item_id": [r[0] for r in rows],
                    "title": [r[1] for r in rows],
                    "genres": [r[2] if len(r) > 2 else None for r in rows],
                }
            )
        else:
            genres = [
                "unknown",
                "Action",
                "Adventure",
                "Animation",
                "Children's",
                "Comedy",
                "Crime",
                "Documentary",
                "Drama",
                "Fantasy",
                "Film-Noir",
                "Horror",
                "Musical",
                "Mystery",
                "Romance",
                "Sci-Fi",
                "Thriller",
                "War",
                "Western",
            ]
            rows = [line.split("|") for line in itext.splitlines() if line]
            items = pl.DataFrame(
                {
                    "item_id": [r[0] for r in rows],
                    "title": [r[1] for r in rows],
                    "genres": [
                        "|".join(g for g, f in zip(genres, r[5:], strict=False) if f == "1")
                        for r in rows
                    ],
                }
            )
        text_cols = ["title", "genres"]
        sources.append(ip)
    return RawData(
        events=_order(events),
        items=items,
        format="movielens",
        sources=sources,
        text_columns=text_cols,
        default_behaviour="rate",
    )


# ----------------------------------------------------------------------------- amazon-json


def _read_json_object(path: Path, encoding: str, shape: str) -> dict:
    _check_encoding(path, encoding)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise DataError(f"expected an object {shape}", path=path)
    return data


def read_amazon_json(
    events_path: str | Path, items_path: str | Path | None = None, *, encoding: str = "utf8"
) -> RawData:
    """``*.inter.json`` ``{user: [item, ...]}`` (chronological) + ``*.item.json`` metadata."""
    path = _require_file(events_path)
    inter = _read_json_object(path, encoding, "{user: [items...]}")
    users, items_col = [], []
    for u, seq in inter.items():
        if not isinstance(seq, list):
            raise DataError(f"user {u!r}: expected a list of items", path=path)
        users.append(str(u))
        items_col.append([str(i) for i in seq])
    frame = pl.DataFrame({"user_id": users, "item_id": items_col}).explode("item_id")
    events = frame.with_row_index("_line", offset=1).with_columns(
        pl.col("_line").cast(pl.Int64),
        pl.lit(None, pl.Int64).alias("timestamp"),
        pl.lit(None, pl.Utf8).alias("behaviour"),
        pl.lit(None, pl.Float64).alias("value"),
    )
    _check_ids(events, path, [("user_id", "user"), ("item_id", "item")])
    items = None
    sources = [path]
    text_cols = ["title", "brand", "categories", "description"]
    if items_path is not None:
        ipath = _require_file(items_path)
        meta = _read_json_object(ipath, encoding, "{item: {title, description, ...}}")

        def field_of(name: str) -> Callable[[dict], str | None]:
            def get(m: dict) -> str | None:
                v = m.get(name) if isinstance(m, dict) else None
                if isinstance(v, list):
                    v = ", ".join(map(str, v))
                return None if v in (None, "") else str(v)

            return get

        ids = list(meta)
        items = pl.DataFrame(
            {"item_id": [str(i) for i in ids]}
            | {c: [field_of(c)(meta[i]) for i in ids] for c in text_cols},
            schema={"item_id": pl.Utf8} | dict.fromkeys(text_cols, pl.Utf8),
        )
        sources.append(ipath)
    return RawData(
        events=_order(events),
        items=items,
        format="amazon-json",
        sources=sources,
        text_columns=text_cols if items is not None else [],
    )


# ----------------------------------------------------------------------------- online-retail

_RETAIL_ALIASES = {
    "invoice": ("InvoiceNo", "Invoice"),
    "item": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "time": ("InvoiceDate",),
    "price": ("UnitPrice", "Price"),
    "user": ("CustomerID", "Customer ID"),
}


def read_online_retail(
    events_path: str | Path, items_path: str | Path | None = None, *, encoding: str = "utf8"
) -> RawData:
    """UCI Online Retail (I and II column sets). Keeps purchases of real products by known
    customers: drops cancellations (invoice 'C…' or quantity ≤ 0), rows without a customer and
    non-product stock codes (postage, fees, manual adjustments: codes not starting with 5 digits).
    One event per (invoice, item) with the summed quantity as ``value``."""
    if items_path is not None:
        raise DataError("online-retail carries its catalogue in the same file; drop --items")
    path = _require_file(events_path)
    frame, first = _read_table(path, _kind_of(path, "auto"), encoding)
    found: dict[str, str] = {}
    for role, names in _RETAIL_ALIASES.items():
        hit = next((n for n in names if n in frame.columns), None)
        if hit is None:
            raise DataError(
                f"no {role} column (expected one of {', '.join(names)}); the file has: "
                f"{', '.join(frame.columns)}",
                path=path,
                column=names[0],
            )
        found[role] = hit
    f = frame.with_row_index("_line", offset=first).with_columns(pl.col("_line").cast(pl.Int64))
    f = f.select(
        pl.col(found["invoice"]).cast(pl.Utf8).str.strip_chars().alias("invoice"),
        pl.col(found["item"]).cast(pl.Utf8).str.strip_chars().str.to_uppercase().alias("item_id"),
        pl.col(found["description"]).cast(pl.Utf8).str.strip_chars().alias("description"),
        pl.col(found["quantity"]).cast(pl.Float64, strict=False).alias("quantity"),
        pl.col(found["time"]).alias("time"),
        pl.col(found["price"]).cast(pl.Float64, strict=False).alias("price"),
        # CustomerID is a float in some exports (17850.0): normalise to an integer string
        pl.col(found["user"])
        .cast(pl.Float64, strict=False)
        .cast(pl.Int64)
        .cast(pl.Utf8)
        .alias("user_id"),
        pl.col("_line"),
    )
    f = f.filter(
        pl.col("user_id").is_not_null()
        & ~pl.col("invoice").str.starts_with("C")
        & (pl.col("quantity") > 0)
        & pl.col("item_id").str.contains(r"^\d{5}")
    )
    if f.height == 0:
        raise DataError(
            "no purchases left after dropping cancellations, unknown customers and "
            "non-product codes",
            path=path,
        )
    time = f["time"]
    fmt = None
    if time.dtype == pl.Utf8 and time.str.contains(r"^\d{1,2}/\d{1,2}/\d{4}").all():
        fmt = "%m/%d/%Y %H:%M"
    f = f.with_columns(
        parse_timestamps(time, f["_line"], path, found["time"], fmt).alias("timestamp")
    )
    events = (
        f.group_by(["invoice", "item_id"], maintain_order=True)
        .agg(
            pl.col("user_id").first(),
            pl.col("timestamp").first(),
            pl.col("quantity").sum().alias("value"),
            pl.col("_line").first(),
        )
        .with_columns(pl.lit("buy").alias("behaviour"))
    )
    items = (
        f.filter(pl.col("description").is_not_null() & (pl.col("description") != ""))
        .group_by(["item_id", "description"])
        .agg(pl.len().alias("n"), pl.col("_line").min().alias("first"))
        .sort(["item_id", "n", "first"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("description").first().alias("title"))
    )
    prices = f.group_by("item_id").agg(pl.col("price").median().alias("price"))
    items = items.join(prices, on="item_id", how="full", coalesce=True)
    return RawData(
        events=_order(events),
        items=items,
        format="online-retail",
        sources=[path],
        text_columns=["title"],
        default_behaviour="buy",
    )


# ----------------------------------------------------------------------------- taobao


def read_taobao(
    events_path: str | Path, items_path: str | Path | None = None, *, encoding: str = "utf8"
) -> RawData:
    """Taobao UserBehavior CSV (no header): ``user,item,category,behavior,ts`` with behaviours
    pv / cart / fav / buy (a fixed vocabulary: anything else is an error)."""
    if items_path is not None:
        raise DataError("taobao has no catalogue file (the category comes with each event)")
    path = _require_file(events_path)
    _check_encoding(path, encoding)
    try:
        frame = pl.read_csv(
            path,
            has_header=False,
            infer_schema=False,
            new_columns=["user", "item", "category", "behavior", "ts"],
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(
            f"expected 5 fields user,item,category,behavior,ts: {str(exc).splitlines()[0]}",
            path=path,
        ) from exc
    if frame.width != 5:
        raise DataError(
            f"expected 5 fields user,item,category,behavior,ts; found {frame.width}", path=path
        )
    f = frame.with_row_index("_line", offset=1).with_columns(pl.col("_line").cast(pl.Int64))
    f = f.rename({"user": "user_id", "item": "item_id"})
    _check_ids(
        f, path, [("user_id", "user"), ("item_id", "item"), ("behavior", "behavior"), ("ts", "ts")]
    )
    bad = ~f["behavior"].is_in(list(TAOBAO_BEHAVIOURS))
    if bad.any():
        i = int(bad.arg_true()[0])
        raise DataError(
            f"unknown behaviour {f['behavior'][i]!r} (expected one of "
            f"{', '.join(TAOBAO_BEHAVIOURS)})",
            path=path,
            line=int(f["_line"][i]),
            column="behavior",
        )
    events = f.select(
        "user_id",
        "item_id",
        parse_timestamps(f["ts"], f["_line"], path, "ts").alias("timestamp"),
        pl.col("behavior").alias("behaviour"),
        pl.lit(None, pl.Float64).alias("value"),
        "_line",
    )
    items = (
        f.group_by("item_id", maintain_order=True)
        .agg(pl.col("category").first())
        .with_columns(("category " + pl.col("category")).alias("category"))
    )
    return RawData(
        events=events,
        items=items,
        format="taobao",
        sources=[path],
        text_columns=["category"],
        behaviour_vocab=TAOBAO_BEHAVIOURS,
        default_behaviour="pv",
    )


READERS: dict[str, Callable[..., RawData]] = {
    "sasrec-txt": read_sasrec_txt,
    "movielens": read_movielens,
    "amazon-json": read_amazon_json,
    "online-retail": read_online_retail,
    "taobao": read_taobao,
}
GENERIC_FORMATS = ("csv", "parquet", "jsonl")
FORMATS = (*GENERIC_FORMATS, *READERS)


def read(
    fmt: str,
    events_path: str | Path,
    items_path: str | Path | None = None,
    *,
    columns: ColumnMap = ColumnMap(),
    encoding: str | None = None,
) -> RawData:
    """Read any supported format; see :data:`FORMATS`."""
    if fmt in GENERIC_FORMATS:
        return read_generic(
            events_path, items_path, columns=columns, fmt=fmt, encoding=encoding or "utf8"
        )
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    kwargs = {} if encoding is None else {"encoding": encoding}
    return READERS[fmt](events_path, items_path, **kwargs)
