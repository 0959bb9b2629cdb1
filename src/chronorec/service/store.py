"""The durable event store: every accepted event is on disk before the service answers 2xx.

Two backends implement :class:`EventStore`: SQLite (the embedded default) and PostgreSQL (a URL
``postgresql://...``; needs ``pip install 'chronorec[postgres]'``, see :mod:`.postgres`).

SQLite in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is fsynced, so a
``kill -9`` (or power loss) right after a 2xx loses nothing. One writer connection behind a lock
(SQLite allows one writer anyway); readers get one connection per thread, which WAL lets run
beside the writer. Idempotency: a client ``event_id`` is unique; a replay is reported, not stored
again (the first write wins).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from chronorec.data.stored import Event, EventStore, Forgotten, StoredItem, new_forget_key
from chronorec.errors import ConfigError

__all__ = ["Event", "EventStore", "Forgotten", "SQLiteEventStore", "StoredItem", "open_store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    behaviour TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event_id TEXT UNIQUE,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts, seq);
CREATE TABLE IF NOT EXISTS forgotten (user_key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    fields TEXT NOT NULL,
    vector BLOB,
    vector_key TEXT,
    added_at REAL NOT NULL
);
"""


def open_store(url: str) -> EventStore:
    """``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a PostgreSQL URL
    (``postgresql://user:password@host:port/db``, or libpq's ``?host=/socket/dir`` form)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError(f"database URL {url!r} names no file")
        return SQLiteEventStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from chronorec.service.postgres import PostgresEventStore

        return PostgresEventStore(url)
    raise ConfigError(f"database URL {url!r}: expected sqlite:///PATH or postgresql://...")


class SQLiteEventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._writer = self._connect()
            mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self._writer.executescript(SCHEMA)
            self._key = self._forget_key()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: cannot open the event database ({exc})") from exc

    def _forget_key(self) -> bytes:
        """The store's key for forgotten ids, made on first use; a store written before the
        keyed hashes has its plain ``forgotten_users`` hashed and dropped, in one transaction."""
        cur = self._writer.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(
                "INSERT OR IGNORE INTO store_meta (name, value) VALUES ('forget_key', ?)",
                (new_forget_key(),),
            )
            key = bytes.fromhex(
                cur.execute("SELECT value FROM store_meta WHERE name = 'forget_key'").fetchone()[0]
            )
            old = cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'forgotten_users'"
            ).fetchone()
            if old is not None:
                hashed = Forgotten(key)
                for user_id, at in cur.execute(
                    "SELECT user_id, at FROM forgotten_users"
                ).fetchall():
                    cur.execute(
                        "INSERT INTO forgotten (user_key, at) VALUES (?, ?) ON CONFLICT "
                        "(user_key) DO UPDATE SET at = max(at, excluded.at)",
                        (hashed.digest(user_id), at),
                    )
                cur.execute("DROP TABLE forgotten_users")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return key

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")  # a deleted row's bytes are overwritten
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # ------------------------------------------------------------------ events

    def add_events(self, events: Sequence[Event]) -> list[bool]:
        """Insert in one transaction, committed (fsynced) before returning. ``[True]`` per new
        event, ``False`` per replay of a known ``event_id``."""
        now = time.time()
        inserted = []
        with self._write_lock:
            cur = self._writer.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    cur.execute(
                        "INSERT OR IGNORE INTO events (user_id, item_id, behaviour, ts, event_id,"
                        " received_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (e.user_id, e.item_id, e.behaviour, int(e.ts), e.event_id, now),
                    )
                    inserted.append(cur.rowcount == 1)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return inserted

    def user_events(self, user_id: str) -> list[Event]:
        """The user's stored events, oldest first (by timestamp, then arrival)."""
        rows = self._reader().execute(
            "SELECT item_id, behaviour, ts, event_id, seq FROM events WHERE user_id = ? "
            "ORDER BY ts, seq",
            (user_id,),
        )
        return [Event(user_id, item, beh, ts, eid, seq) for item, beh, ts, eid, seq in rows]

    def iter_events(self) -> Iterator[Event]:
        rows = self._reader().execute(
            "SELECT user_id, item_id, behaviour, ts, event_id, seq FROM events ORDER BY seq"
        )
        for user, item, beh, ts, eid, seq in rows:
            yield Event(user, item, beh, ts, eid, seq)

    def forget_user(self, user_id: str) -> int:
        """Delete the user's events and remember that the training log's ones are forgotten."""
        with self._write_lock:
            cur = self._writer.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("DELETE FROM events WHERE user_id = ?", (user_id,))
                deleted = cur.rowcount
                cur.execute(
                    "INSERT OR REPLACE INTO forgotten (user_key, at) VALUES (?, ?)",
                    (Forgotten(self._key).digest(user_id), time.time()),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            # the WAL still holds the deleted pages' old copies: fold it into the (securely
            # overwritten) database file and empty it now, not at some later checkpoint
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(deleted)

    def forgotten_users(self, since: float | None = None) -> Forgotten:
        """Users forgotten (last) at or after ``since`` (seconds since the epoch; all: None)."""
        rows = self._reader().execute(
            "SELECT user_key FROM forgotten WHERE at >= ?", (since or 0.0,)
        )
        return Forgotten(self._key, (k for (k,) in rows))

    def count_events(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # ------------------------------------------------------------------ items

    def add_item(self, item: StoredItem) -> bool:
        """False when the item id is already stored."""
        with self._write_lock:
            cur = self._writer.execute(
                "INSERT OR IGNORE INTO items (item_id, fields, vector, vector_key, added_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (item.item_id, json.dumps(item.fields), item.vector, item.vector_key, time.time()),
            )
            return cur.rowcount == 1

    def items(self) -> list[StoredItem]:
        rows = self._reader().execute(
            "SELECT item_id, fields, vector, vector_key FROM items ORDER BY added_at, rowid"
        )
        return [StoredItem(i, json.loads(f), v, k) for i, f, v, k in rows]

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> bool:
        try:
            self._reader().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()
