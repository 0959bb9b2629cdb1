"""PostgreSQL backend of the event store (``--db postgresql://...``), same contract as SQLite.

Durability: PostgreSQL's default ``synchronous_commit = on`` flushes the WAL before ``COMMIT``
returns, so an event is on disk before the service answers 2xx; the store refuses a server
configured with ``fsync = off`` or asynchronous commits rather than silently weaken that promise.
Connections come from a ``psycopg_pool`` pool shared by the request threads; writes need no lock
of ours (row locks and the unique ``event_id`` index serialise replays). Idempotency is
``INSERT ... ON CONFLICT (event_id) DO NOTHING``: the first write wins, as with SQLite.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from chronorec.data.stored import Event, Forgotten, StoredItem, new_forget_key
from chronorec.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    behaviour TEXT NOT NULL,
    ts BIGINT NOT NULL,
    event_id TEXT UNIQUE,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts, seq);
CREATE TABLE IF NOT EXISTS forgotten (
    user_key TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq BIGSERIAL PRIMARY KEY,
    item_id TEXT UNIQUE NOT NULL,
    fields JSONB NOT NULL,
    vector BYTEA,
    vector_key TEXT,
    added_at DOUBLE PRECISION NOT NULL
);
"""
SCHEMA_LOCK = 7_358_201  # pg_advisory_xact_lock key: two servers starting at once create once

INSERT_EVENT = (
    "INSERT INTO events (user_id, item_id, behaviour, ts, event_id, received_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING RETURNING seq"
)


def redact(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class PostgresEventStore:
    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigError(
                "--db postgresql://... needs the PostgreSQL driver: "
                "pip install 'chronorec[postgres]'"
            ) from exc
        self.url = redact(url)
        try:  # set-up on one plain connection first: its errors say what is wrong
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                _check_durable(conn, self.url)
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    conn.execute(SCHEMA)
                    self._key = _forget_key(conn)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{self.url}: cannot open the event database ({reason})") from exc
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=True, kwargs={"autocommit": True}
        )

    # ------------------------------------------------------------------ events

    def add_events(self, events: Sequence[Event]) -> list[bool]:
        """Insert in one transaction, committed (WAL flushed) before returning. ``[True]`` per
        new event, ``False`` per replay of a known ``event_id``."""
        now = time.time()
        rows = [(e.user_id, e.item_id, e.behaviour, int(e.ts), e.event_id, now) for e in events]
        inserted = []
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(INSERT_EVENT, rows, returning=True)
            while True:  # one result set per row: a seq when inserted, nothing when a replay
                inserted.append(cur.fetchone() is not None)
                if not cur.nextset():
                    break
        return inserted

    def user_events(self, user_id: str) -> list[Event]:
        """The user's stored events, oldest first (by timestamp, then arrival)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT item_id, behaviour, ts, event_id, seq FROM events WHERE user_id = %s "
                "ORDER BY ts, seq",
                (user_id,),
            ).fetchall()
        return [
            Event(user_id, item, beh, int(ts), eid, int(seq)) for item, beh, ts, eid, seq in rows
        ]

    def iter_events(self) -> Iterator[Event]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor("replay") as cur:
            cur.execute(
                "SELECT user_id, item_id, behaviour, ts, event_id, seq FROM events ORDER BY seq"
            )
            for user, item, beh, ts, eid, seq in cur:  # a server-side cursor: streamed
                yield Event(user, item, beh, int(ts), eid, int(seq))

    def forget_user(self, user_id: str) -> int:
        """Delete the user's events and remember that the training log's ones are forgotten."""
        with self._pool.connection() as conn, conn.transaction():
            deleted = conn.execute("DELETE FROM events WHERE user_id = %s", (user_id,)).rowcount
            conn.execute(
                "INSERT INTO forgotten (user_key, at) VALUES (%s, %s) "
                "ON CONFLICT (user_key) DO UPDATE SET at = EXCLUDED.at",
                (Forgotten(self._key).digest(user_id), time.time()),
            )
        return int(deleted)

    def forgotten_users(self, since: float | None = None) -> Forgotten:
        """Users forgotten (last) at or after ``since`` (seconds since the epoch; all: None)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT user_key FROM forgotten WHERE at >= %s", (since or 0.0,)
            ).fetchall()
        return Forgotten(self._key, (k for (k,) in rows))

    def count_events(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ items

    def add_item(self, item: StoredItem) -> bool:
        """False when the item id is already stored."""
        with self._pool.connection() as conn:
            cur = conn.execute(
                "INSERT INTO items (item_id, fields, vector, vector_key, added_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (item_id) DO NOTHING",
                (item.item_id, json.dumps(item.fields), item.vector, item.vector_key, time.time()),
            )
            return cur.rowcount == 1

    def items(self) -> list[StoredItem]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT item_id, fields, vector, vector_key FROM items ORDER BY seq"
            ).fetchall()
        return [StoredItem(i, _fields(f), _bytes(v), k) for i, f, v, k in rows]

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        try:
            with self._pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1").fetchone()
            return True
        except Exception:  # any failure to reach the server means "not ready"
            return False

    def close(self) -> None:
        self._pool.close()


def _forget_key(conn: Any) -> bytes:
    """The store's key for forgotten ids (made on first use), inside the schema transaction; a
    store written before the keyed hashes has its plain ``forgotten_users`` hashed and dropped."""
    conn.execute(
        "INSERT INTO store_meta (name, value) VALUES ('forget_key', %s) ON CONFLICT DO NOTHING",
        (new_forget_key(),),
    )
    row = conn.execute("SELECT value FROM store_meta WHERE name = 'forget_key'").fetchone()
    key = bytes.fromhex(row[0])
    if conn.execute("SELECT to_regclass('forgotten_users')").fetchone()[0] is not None:
        hashed = Forgotten(key)
        for user_id, at in conn.execute("SELECT user_id, at FROM forgotten_users").fetchall():
            conn.execute(
                "INSERT INTO forgotten (user_key, at) VALUES (%s, %s) ON CONFLICT (user_key) "
                "DO UPDATE SET at = GREATEST(forgotten.at, EXCLUDED.at)",
                (hashed.digest(user_id), at),
            )
        conn.execute("DROP TABLE forgotten_users")
    return key


def _check_durable(conn: Any, url: str) -> None:
    settings = dict(
        conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')"
        ).fetchall()
    )
    if settings.get("fsync") != "on" or settings.get("synchronous_commit") == "off":
        raise ConfigError(
            f"{url}: the server has fsync={settings.get('fsync')}, "
            f"synchronous_commit={settings.get('synchronous_commit')}; an event could be lost "
            "after its 2xx. Use a server with durable commits."
        )


def _fields(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
