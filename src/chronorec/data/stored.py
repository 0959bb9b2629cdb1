"""What a running service stores, as the data layer sees it: events (:class:`Event`), posted
items (:class:`StoredItem`), forgotten users as keyed hashes (:class:`Forgotten`), and the
:class:`EventStore` protocol that the SQLite and PostgreSQL stores of :mod:`chronorec.service`
implement. The offline tools that fold them into a dataset (:mod:`chronorec.data.merge`,
:mod:`chronorec.data.collect`) read them through it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    behaviour: str
    ts: int  # seconds since the epoch
    event_id: str | None = None
    seq: int = 0  # the store's arrival number (0: not read from a store)


@dataclass(frozen=True)
class StoredItem:
    item_id: str
    fields: dict[str, Any]
    vector: bytes | None  # float32 text vector, reused while ``vector_key`` matches the encoder
    vector_key: str | None


class Forgotten:
    """The users forgotten with ``DELETE /users/{id}``, kept as keyed hashes (HMAC-SHA256 under
    the store's own random key, ``store_meta.forget_key``): the store never holds a forgotten
    id in the clear, and cannot list them. It answers one question, "was this id forgotten?",
    which is all that forgetting needs. Whoever holds the database holds the key too, so they
    can still test a guessed id."""

    def __init__(self, key: bytes, digests: Iterable[str] = ()) -> None:
        self.key = key
        self.digests = set(digests)

    def digest(self, user_id: str) -> str:
        return hmac.new(self.key, user_id.encode(), hashlib.sha256).hexdigest()

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and self.digest(user_id) in self.digests

    def add(self, user_id: str) -> None:
        self.digests.add(self.digest(user_id))

    def __len__(self) -> int:
        return len(self.digests)

    def __sub__(self, other: Forgotten) -> Forgotten:
        return Forgotten(self.key, self.digests - other.digests)

    def among(self, user_ids: Iterable[str]) -> list[str]:
        """The ids of ``user_ids`` that were forgotten."""
        return [u for u in user_ids if u in self] if self.digests else []


def new_forget_key() -> str:
    return secrets.token_hex(32)


class EventStore(Protocol):
    """What the service needs from a store (SQLite here; another backend implements the same)."""

    def add_events(self, events: Sequence[Event]) -> list[bool]: ...
    def user_events(self, user_id: str) -> list[Event]: ...
    def forget_user(self, user_id: str) -> int: ...
    def forgotten_users(self, since: float | None = None) -> Forgotten: ...
    def iter_events(self) -> Iterator[Event]: ...
    def add_item(self, item: StoredItem) -> bool: ...
    def items(self) -> list[StoredItem]: ...
    def count_events(self) -> int: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...
