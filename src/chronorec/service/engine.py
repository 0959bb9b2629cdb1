"""The serving engine: one loaded run + its catalogue, user states, retrieval and popularity.

A user's state is recomputed from their last ``max_len`` events (the training log's, then the
stored ones) on the first read after a write, and cached until the next write — the same window
and arithmetic as offline ``Recommender.recommend``, so the exact path returns the same top-K.

An :class:`Engine` is immutable from the outside except for appended items and cached states;
``POST /admin/reload`` builds a new one and swaps the app's single reference to it, so requests
in flight finish on the engine they started with.

With the ``blend`` setting the model's scores over the whole catalogue are z-scored and blended
with baselines (:class:`~chronorec.blend.Ensemble` with ``fit_on="all"``, as ``chronorec
recommend --weights`` ranks): their item-side statistics (popularity, transitions, the
neighbours of user-KNN) are fitted when the engine is built, on the run's event log and the
events posted so far (:meth:`Engine._blend_log`), and read the user's live window (the same last
``max_len`` events) on every request. A run's saved learned blend (:mod:`chronorec.blend.learned`)
ranks the same terms by its trees instead of their weighted sum.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from chronorec.blend import Ensemble, standardise
from chronorec.data.collect import folded
from chronorec.data.merge import behaviour_row, merged_log
from chronorec.data.sequences import EventArrays, HistoryBatch
from chronorec.data.stored import Event, EventStore, Forgotten, StoredItem
from chronorec.errors import ConfigError
from chronorec.recommender import Recommender
from chronorec.service.retrieval import Retriever, build_retriever, recall_at_k
from chronorec.service.settings import ServiceSettings
from chronorec.service.stepper import RNNStepper, check_stepper
from chronorec.training import checkpoint as ckpt

log = logging.getLogger(__name__)

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.)
# A blended ranking depends only on the user's state: the best BLEND_TOP items (+ the seen
# ones, which a request may exclude) are kept per state for up to BLEND_CACHE_USERS states.
BLEND_TOP = 200
BLEND_CACHE_USERS = 10_000
# on the "auto" clock, a log whose newest event is older than this is a replay: see Engine.now
REPLAY_AFTER_S = 30 * 86_400


class ServiceError(Exception):
    """A request the service refuses: HTTP status, a stable code and a message naming the thing."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UserState:
    hidden: torch.Tensor  # (D,) the model's state after the last event
    query: torch.Tensor  # (D,) the hidden state prepared for the score head
    seen: np.ndarray  # (S,) int64 item rows the user interacted with
    n_events: int
    last_ts: int = 0
    carry: Any = None  # the RNN's carry when the state can be advanced step-wise
    steppable: bool = False
    # the model's repeat term (rows, bonus) over the last max_len events, when it has one
    repeat: tuple[np.ndarray, np.ndarray] | None = None
    # the last max_len events' item rows, behaviours and timestamps, for the behaviour head's
    # features and the blended baselines
    window: tuple[np.ndarray, np.ndarray, np.ndarray] = (
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )

    def nbytes(self) -> int:
        """The memory this state holds: the whole buffer behind each of its tensors and arrays
        (a view keeps its base alive), each buffer counted once."""
        seen: dict[int, int] = {}

        def visit(x: Any) -> None:
            if isinstance(x, torch.Tensor):
                storage = x.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
            elif isinstance(x, np.ndarray):
                while isinstance(x.base, np.ndarray):
                    x = x.base
                seen[x.__array_interface__["data"][0]] = x.nbytes
            elif isinstance(x, tuple | list):
                for part in x:
                    visit(part)

        visit((self.hidden, self.query, self.seen, self.carry, self.repeat, self.window))
        return sum(seen.values())


@dataclass(frozen=True)
class Ranked:
    items: list[tuple[str, str, float]]  # (item_id, name, score), best first
    source: str  # "model", "model+baselines", "popularity" or "blend"
    n_events: int


_thread_setup = threading.local()


def _torch_threads(n: int) -> None:
    """torch's intra-op thread count is per OS thread under OpenMP: set it in each pool worker,
    or every request in a worker thread spins up a team of all cores on a tiny matmul."""
    if getattr(_thread_setup, "threads", None) != n:
        torch.set_num_threads(n)
        _thread_setup.threads = n


class Engine:
    def __init__(
        self,
        rec: Recommender,
        settings: ServiceSettings,
        store: EventStore,
        *,
        version: str,
        run_dir: str,
        encoder: Any = None,
    ) -> None:
        assert rec.model is not None
        self.rec = rec
        self.model = rec.model
        self.settings = settings
        self.store = store
        self.version = version
        self.run_dir = run_dir
        self.encoder = encoder
        self.max_len = rec.config.model.max_len
        self.behaviours = [b.lower() for b in rec.meta.get("behaviours", [])] or ["event"]

        # catalogue: row i (1..n) is item_ids[i - 1]; new items are appended
        self.item_ids: list[str] = list(rec.item_ids())
        self.names: list[str] = list(rec.item_names())
        self.index: dict[str, int] = {item: i + 1 for i, item in enumerate(self.item_ids)}
        with torch.no_grad():
            raw = self.model.item_table().detach().clone()  # (V, D)
        self._raw = raw
        # the rows queries score against: the same tensor as raw for a plain dot product
        self._shared = self.model.rows_are_the_table
        self._prep = raw if self._shared else self.model.score_rows(raw).detach()  # (V, Q)
        self._n_rows = raw.shape[0]
        self._items_lock = threading.Lock()

        # the training log, for users it knows
        self._base: EventArrays | None = None
        self._base_users: dict[str, int] = {}
        if rec.dataset is not None:
            ds = rec.dataset
            self._base = EventArrays.from_events(ds.events, n_users=ds.n_users)
            self._base_users = {
                str(u): int(i) for i, u in zip(ds.users["user"], ds.users["user_id"], strict=True)
            }
        # what the run's dataset holds of this store already (a `chronorec collect`ed one)
        self._folded = folded(rec.dataset)
        self.forgotten_since = self._folded.at  # forgetting before it is in the dataset
        self.forgotten = store.forgotten_users(since=self.forgotten_since)

        # A user's state is computed, advanced or dropped only under their stripe lock, and the
        # store is written under it too: a read can never cache a state that misses a write.
        self._stripes = [threading.Lock() for _ in range(64)]
        self._cache: OrderedDict[str, UserState] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0
        self.state_steps = 0
        stepper = RNNStepper.for_model(self.model)  # the repeat term reads the state's window
        self._stepper = (
            stepper if stepper is not None and check_stepper(stepper, raw, self.max_len) else None
        )

        self._pop = np.zeros(self._n_rows, dtype=np.float64)
        self._pop_lock = threading.Lock()
        self._pop_t = 0
        self._pop_top: np.ndarray | None = None
        self._tau = settings.popularity_half_life_days * 86_400 / math.log(2)

        # baselines blended into the ranking, fitted on the run's log and the posted events
        choice = settings.blend_choice()  # the one policy: chronorec.blend.choose_blend
        self.blend_weights: dict[str, float] = choice.weights
        self.learned = choice.learned  # a learned blend ranks instead of the weights
        self._blender: Ensemble | None = None
        # blended lists by user state; the version changes with whatever changes every
        # user's blend (a posted item, a user forgotten from user-KNN)
        self._blend_cache: OrderedDict[int, tuple[UserState, int, np.ndarray, np.ndarray]] = (
            OrderedDict()
        )
        self._blend_version = 0
        self._blend_rows: dict[str, int] = {}  # user id -> row of the blend's event log
        stored = self._folded.new(store.iter_events())  # read once for the blend and popularity
        if self.blend_weights or self.learned is not None:
            if rec.dataset is None:
                raise ConfigError(
                    "blend: the baselines are fitted on the run's event log; the run has no "
                    "dataset (pass --dataset)"
                )
            log, self._blend_rows = self._blend_log(stored)
            self._blender = Ensemble([rec], self.blend_weights, fit_on="all", events=log)
            if self.learned is not None:
                self._blender.use_learned(self.learned)

        self._restore_items()
        self.retriever: Retriever = build_retriever(
            self._prep[: self._n_rows],
            settings.exact_max_items,
            settings.index_kind,
            settings.nprobe,
            settings.hnsw_ef,
        )
        self._bootstrap_popularity(stored)
        self.index_recall = self._measure_recall()
        self.clock, self._latest = self._choose_clock(stored)

    # ------------------------------------------------------------------ building

    @classmethod
    def load(cls, run_dir: str | Path, settings: ServiceSettings, store: EventStore) -> Engine:
        torch.set_num_threads(settings.threads)
        rec = Recommender.load(run_dir, dataset=settings.dataset)
        encoder = None
        if rec.config.model.item_repr != "id":
            from chronorec.text import ItemEncoder, TextConfig

            text_cfg = TextConfig.from_dict({**rec.config.text, "progress": False})
            encoder = ItemEncoder.load(text_cfg)
            torch.set_num_threads(settings.threads)  # the encoder sets its own thread count
        return cls(
            rec,
            settings,
            store,
            version=run_version(run_dir),
            run_dir=str(run_dir),
            encoder=encoder,
        )

    def _vector_key(self) -> str | None:
        if self.encoder is None:
            return None
        raw = json.dumps({"text": self.rec.config.text, "dim": self.encoder.dim}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def _blend_log(self, stored: list[Event]) -> tuple[pl.DataFrame, dict[str, int]]:
        """The log the blended baselines are fitted on (:func:`merged_log` of the ``stored``
        events the dataset does not hold) and each user's row in it."""
        assert self.rec.dataset is not None
        return merged_log(self.rec.dataset, stored, self.index, self.behaviours, self.forgotten)

    def _restore_items(self) -> None:
        """Items posted to an earlier server (or before a reload) are recommendable again."""
        stored = [s for s in self.store.items() if s.item_id not in self.index]
        if not stored:
            return
        if self.encoder is None:
            log.warning("%d posted items are not served: the model has no text tower", len(stored))
            return
        key = self._vector_key()
        for item in stored:
            if item.vector is not None and item.vector_key == key:
                vector = np.frombuffer(item.vector, dtype=np.float32)
            else:
                vector = self.encoder.encode_item({"item_id": item.item_id, **item.fields})
            self._append_item(item.item_id, _display_name(item.item_id, item.fields), vector)

    def _choose_clock(self, stored: Sequence[Event]) -> tuple[str, int]:
        """The clock mode (``settings.clock``, "auto" resolved) and the newest timestamp known:
        the log's, then the stored events'."""
        latest = max((e.ts for e in stored), default=0)
        if self._base is not None and self._base.timestamps.size:
            latest = max(latest, int(self._base.timestamps.max()))
        mode = self.settings.clock
        if mode == "auto":
            mode = "log" if latest < now_seconds() - REPLAY_AFTER_S else "wall"
        return mode, latest

    def now(self) -> int:
        """The timestamp of an event posted without one: the server's clock, or on the log
        clock the newest timestamp known (so that a replayed log's posted events sit at its
        end, not decades after it)."""
        if self.clock == "wall":
            return now_seconds()
        with self._pop_lock:
            return self._latest

    def _bootstrap_popularity(self, stored_events: list[Event]) -> None:
        rows: list[np.ndarray] = []
        times: list[np.ndarray] = []
        if self._base is not None:  # the training log without the forgotten users' events
            keep = np.ones(self._base.items.size, dtype=bool)
            for user_id in self.forgotten.among(self._base_users):
                u = self._base_users[user_id]
                keep[self._base.offsets[u] : self._base.offsets[u + 1]] = False
            rows.append(self._base.items[keep])
            times.append(self._base.timestamps[keep])
        stored = [(self.index.get(e.item_id, 0), e.ts) for e in stored_events]
        if stored:
            arr = np.array(stored, dtype=np.int64)
            rows.append(arr[:, 0])
            times.append(arr[:, 1])
        if not rows:
            return
        items, ts = np.concatenate(rows), np.concatenate(times)
        self._pop_t = int(ts.max()) if ts.size else 0
        weights = np.exp((ts - self._pop_t) / self._tau)
        self._pop = np.bincount(items, weights=weights, minlength=len(self._pop)).astype(np.float64)
        self._pop[0] = 0.0

    def _measure_recall(self) -> float:
        """recall@10 of the index against exact scoring, on up to 256 known users' states."""
        if self.retriever.kind == "exact":
            return 1.0
        users = list(self._base_users)[:256]
        if users:
            queries = torch.stack([self._compute_state(u).query for u in users])
        else:
            rng = np.random.default_rng(0)
            rows = rng.integers(1, self._n_rows, min(256, self._n_rows - 1))
            queries = self._prep[torch.from_numpy(rows)]
        recall = recall_at_k(self.retriever, queries, self._prep[: self._n_rows], 10)
        log.info("%s index: recall@10 vs exact = %.3f", self.retriever.kind, recall)
        return recall

    # ------------------------------------------------------------------ catalogue

    @property
    def n_items(self) -> int:
        return self._n_rows - 1

    def behaviour_index(self, name: str) -> int:
        return behaviour_row(self.behaviours, name)

    def item_row(self, item_id: str) -> int:
        row = self.index.get(item_id)
        if row is None:
            raise ServiceError(404, "unknown_item", f"unknown item id {item_id!r}")
        return row

    def add_item(self, item_id: str, fields: Mapping[str, Any]) -> None:
        """Encode a new item with the text tower, persist it, and make it recommendable now."""
        if self.encoder is None:
            raise ServiceError(
                409,
                "no_text_tower",
                "the served model represents items by learned ids only (item_repr='id'), so it "
                "cannot score an item it was not trained on; serve a model trained with "
                "--item-repr text or id+text to add items",
            )
        if item_id in self.index:
            raise ServiceError(
                409, "item_exists", f"item id {item_id!r} is already in the catalogue"
            )
        vector = np.asarray(self.encoder.encode_item({"item_id": item_id, **fields}), np.float32)
        stored = StoredItem(item_id, dict(fields), vector.tobytes(), self._vector_key())
        if not self.store.add_item(stored):
            raise ServiceError(409, "item_exists", f"item id {item_id!r} was already added")
        self._append_item(item_id, _display_name(item_id, fields), vector)

    def _append_item(self, item_id: str, name: str, text_vector: np.ndarray) -> None:
        with torch.no_grad():
            text = torch.tensor(np.asarray(text_vector, dtype=np.float32))[None]  # (1, d_text)
            raw = tower_rows(self.model, text)  # (1, D)
            prep = self.model.score_rows(raw, text)  # (1, Q)
        with self._items_lock:
            n = self._n_rows
            if n == self._raw.shape[0]:  # grow by doubling; readers keep their old views
                cap = max(2 * n, 16)
                self._raw = _grow(self._raw, cap)
                self._prep = self._raw if self._shared else _grow(self._prep, cap)
                with self._pop_lock:
                    self._pop = np.concatenate([self._pop, np.zeros(cap - n)])
            self._raw[n] = raw[0]
            if not self._shared:
                self._prep[n] = prep[0]
            self.item_ids.append(item_id)
            self.names.append(name)
            self.index[item_id] = n
            if hasattr(self, "retriever"):
                self.retriever.add(prep.numpy())
            self._n_rows = n + 1
            if self._blender is not None and "text-knn" in self._blender.weights:
                self._blender.baselines["text-knn"].extend(text_vector[None])
            with self._cache_lock:  # after the rows: a reader of the new version sees them
                self._blend_version += 1  # every blended list may now include the new item

    def _tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self._n_rows
        return self._raw[:n], self._prep[:n]

    # ------------------------------------------------------------------ events and users

    def check_events(self, events: Sequence[Event]) -> None:
        for i, e in enumerate(events):
            if e.item_id not in self.index:
                raise ServiceError(
                    404,
                    "unknown_item",
                    f"event {i}: unknown item id {e.item_id!r} (add it with POST /items first)",
                )
            if e.behaviour.lower() not in self.behaviours:
                raise ServiceError(
                    404,
                    "unknown_behaviour",
                    f"event {i}: unknown behaviour {e.behaviour!r} "
                    f"(known: {', '.join(self.behaviours)})",
                )

    def ingest(self, events: Sequence[Event]) -> list[bool]:
        """Store the events (durable on return) and bring their users' states up to date:
        advanced step-wise where the model allows it, else dropped to be recomputed on read."""
        stripes = sorted({self._stripe_index(e.user_id) for e in events})
        for i in stripes:  # in index order: two batches never wait on each other in a cycle
            self._stripes[i].acquire()
        try:
            inserted = self.store.add_events(events)
            new = [e for e, ok in zip(events, inserted, strict=True) if ok]
            by_user: dict[str, list[Event]] = {}
            for e in new:
                by_user.setdefault(e.user_id, []).append(e)
            for user, user_events in by_user.items():
                self._advance(user, sorted(user_events, key=lambda e: e.ts))
        finally:
            for i in reversed(stripes):
                self._stripes[i].release()
        self._bump_popularity(new)
        return inserted

    def _advance(self, user_id: str, events: list[Event]) -> None:
        with self._cache_lock:
            state = self._cache.get(user_id)
        ok = (
            state is not None
            and state.steppable
            and self._stepper is not None
            and state.n_events + len(events) <= self.max_len
            and events[0].ts >= state.last_ts
        )
        if not ok or state is None or self._stepper is None:
            with self._cache_lock:
                self._cache.pop(user_id, None)
            return
        _torch_threads(self.settings.threads)
        rows = np.array([self.index[e.item_id] for e in events], dtype=np.int64)
        behs = np.array([self.behaviour_index(e.behaviour) for e in events], dtype=np.int64)
        ts = np.array([e.ts for e in events], dtype=np.int64)
        raw, _ = self._tables()
        prev = state.last_ts if state.n_events else None
        hidden, carry = self._stepper.run(
            self._stepper.inputs(raw, rows, behs, ts, prev), state.carry
        )
        window = (
            np.concatenate([state.window[0], rows])[-self.max_len :],
            np.concatenate([state.window[1], behs])[-self.max_len :],
            np.concatenate([state.window[2], ts])[-self.max_len :],
        )
        new = UserState(
            hidden,
            self._query(hidden, int(rows[-1])),
            np.union1d(state.seen, rows),
            state.n_events + len(events),
            int(ts[-1]),
            carry,
            True,
            self._repeat(window),
            window,
        )
        with self._cache_lock:
            self._cache[user_id] = new
            self._cache.move_to_end(user_id)
            self.state_steps += len(events)

    def _bump_popularity(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._pop_lock:
            self._latest = max(self._latest, max(e.ts for e in events))
            for e in events:
                row, ts = self.index[e.item_id], e.ts
                if ts > self._pop_t:
                    self._pop *= math.exp((self._pop_t - ts) / self._tau)
                    self._pop_t = ts
                self._pop[row] += math.exp((ts - self._pop_t) / self._tau)
            self._pop_top = None

    def forget(self, user_id: str) -> int:
        with self._stripes[self._stripe_index(user_id)]:
            deleted = self.store.forget_user(user_id)
            self._forget_state(user_id)
        return deleted

    def also_forgotten(self, forgotten: Forgotten) -> None:
        """Users forgotten while this engine was being built (a DELETE racing a reload): the
        store names them only by keyed hash, so look for them among the users held here."""
        new = forgotten - self.forgotten
        if not len(new):
            return
        self.forgotten.digests |= new.digests  # the training log's users, from now on
        with self._cache_lock:
            held = set(self._cache)
        for user_id in new.among(held | set(self._blend_rows)):
            self._forget_state(user_id)

    def _forget_state(self, user_id: str) -> None:
        """Drop what the engine holds of a forgotten user: their training-log history (from
        now on), their cached state and their row among a blended user-KNN's neighbours (the
        blend's other counts leave their events out from the next start-up or reload)."""
        self.forgotten.add(user_id)
        with self._cache_lock:
            self._cache.pop(user_id, None)
        if self._blender is None or "user-knn" not in self._blender.weights:
            return
        if user_id in self._blend_rows:
            self._blender.baselines["user-knn"].forget(self._blend_rows[user_id])
            with self._cache_lock:
                self._blend_version += 1

    def _stripe_index(self, user_id: str) -> int:
        return hash(user_id) % len(self._stripes)

    def _trim(self) -> None:
        while len(self._cache) > self.settings.cache_users:
            self._cache.popitem(last=False)

    def user_state(self, user_id: str) -> UserState:
        with self._cache_lock:
            state = self._cache.get(user_id)
            if state is not None:
                self._cache.move_to_end(user_id)
                self.cache_hits += 1
                return state
        _torch_threads(self.settings.threads)
        with self._stripes[self._stripe_index(user_id)]:
            with self._cache_lock:
                state = self._cache.get(user_id)  # computed while this request waited
            if state is None:
                state = self._compute_state(user_id)
                with self._cache_lock:
                    self.cache_misses += 1
                    self._cache[user_id] = state
                    self._trim()
        return state

    def _compute_state(self, user_id: str) -> UserState:
        parts_items, parts_beh, parts_ts = [], [], []
        if self._base is not None and user_id in self._base_users and user_id not in self.forgotten:
            u = self._base_users[user_id]
            lo, hi = self._base.offsets[u], self._base.offsets[u + 1]
            parts_items.append(self._base.items[lo:hi])
            parts_beh.append(self._base.behaviours[lo:hi])
            parts_ts.append(self._base.timestamps[lo:hi])
        stored = [
            e for e in self._folded.new(self.store.user_events(user_id)) if e.item_id in self.index
        ]
        if stored:
            parts_items.append(np.array([self.index[e.item_id] for e in stored], dtype=np.int64))
            parts_beh.append(np.array([self.behaviour_index(e.behaviour) for e in stored]))
            parts_ts.append(np.array([e.ts for e in stored], dtype=np.int64))
        if not parts_items:
            return self._state(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return self._state(
            np.concatenate(parts_items), np.concatenate(parts_beh), np.concatenate(parts_ts)
        )

    def history_state(self, events: Sequence[tuple[str, str | None, int | None]]) -> UserState:
        """The state after an explicit history of ``(item_id, behaviour, timestamp)``."""
        _torch_threads(self.settings.threads)
        for i, (item, beh, _) in enumerate(events):
            if item not in self.index:
                raise ServiceError(404, "unknown_item", f"history[{i}]: unknown item id {item!r}")
            if beh is not None and beh.lower() not in self.behaviours:
                raise ServiceError(
                    404,
                    "unknown_behaviour",
                    f"history[{i}]: unknown behaviour {beh!r} "
                    f"(known: {', '.join(self.behaviours)})",
                )
        items = np.array([self.index[i] for i, _, _ in events], dtype=np.int64)
        behs = np.array([1 if b is None else self.behaviour_index(b) for _, b, _ in events])
        ts = np.array([0 if t is None else t for _, _, t in events], dtype=np.int64)
        return self._state(items, behs, ts)

    @torch.no_grad()
    def _state(self, items: np.ndarray, behs: np.ndarray, ts: np.ndarray) -> UserState:
        n = len(items)
        L = self.max_len
        seen = np.unique(items)
        if n == 0:
            zero, none = torch.zeros(self._raw.shape[1]), torch.zeros(self._prep.shape[1])
            return UserState(zero, none, seen, 0, steppable=self._stepper is not None)
        raw, _ = self._tables()
        m = min(n, L)
        window = (
            items[-m:].astype(np.int64),
            behs[-m:].astype(np.int64),
            ts[-m:].astype(np.int64),
        )
        if self._stepper is not None and n <= L:
            hidden, carry = self._stepper.run(self._stepper.inputs(raw, items, behs, ts))
            query = self._query(hidden, int(items[-1]))
            return UserState(
                hidden, query, seen, n, int(ts[-1]), carry, True, self._repeat(window), window
            )
        batch = np.zeros((3, 1, L), dtype=np.int64)  # items, behaviours, timestamps; left-padded
        batch[0, 0, -m:] = items[-m:]
        batch[1, 0, -m:] = behs[-m:]
        batch[2, 0, -m:] = ts[-m:]
        t = torch.from_numpy(batch)
        # a copy: a view would keep the whole (1, L, D) output alive in the cache
        hidden = self.model(t[0], t[1], t[2], raw, last_only=True)[0, -1].clone()  # (D,)
        query = self._query(hidden, int(items[-1]))
        return UserState(
            hidden, query, seen, n, int(ts[-1]), repeat=self._repeat(window), window=window
        )

    @torch.no_grad()
    def _repeat(
        self, window: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The repeat term after a window (items, behaviours, timestamps), unpadded: the
        window's distinct rows and their bonus, or None when the model has none. It reads the
        window alone, never the catalogue (a posted row is covered) nor the sequence model, so
        a stepped state gets it without a forward pass."""
        t = [torch.from_numpy(np.ascontiguousarray(part, dtype=np.int64))[None] for part in window]
        last = self.model.repeat_last(t[0], t[1], t[2])  # sparse (1, m)
        if last is None:
            return None
        cols, weights = last.cols[0].numpy(), last.weights[0].numpy()
        real = cols > 0
        rows, slot = np.unique(cols[real], return_inverse=True)
        bonus = np.bincount(slot, weights=weights[real], minlength=len(rows))
        return rows, bonus.astype(np.float32)

    @torch.no_grad()
    def _query(self, hidden: torch.Tensor, last: int) -> torch.Tensor:
        """The hidden state after item row ``last`` as the score head reads it:
        ``scores = query · prepared table``."""
        return self.model.query_after(hidden, self._prep[last])

    # ------------------------------------------------------------------ ranking

    def rank(
        self,
        state: UserState,
        k: int,
        *,
        exclude_seen: bool | None = None,
        behaviour: str | None = None,
        cache: bool = False,
        block: np.ndarray | None = None,
    ) -> Ranked:
        """Top-``k`` for a state, never the rows in ``block`` (nor, with ``exclude_seen``, the
        state's items; default: the run's ``data.exclude_seen``); ``cache``: keep its blended
        list for the next request (a known user's cached state, not a one-off history)."""
        _torch_threads(self.settings.threads)
        if exclude_seen is None:  # as the run was evaluated
            exclude_seen = self.rec.config.data.exclude_seen
        exclude = state.seen if exclude_seen else np.zeros(0, np.int64)
        blocked = block is not None and len(block) > 0
        if blocked:
            exclude = np.union1d(exclude, np.asarray(block))
        if state.n_events == 0:
            rows, scores = self._popular(k, exclude)
            return self._ranked(rows, scores, "popularity", 0)
        want = k if behaviour is None else max(100, 5 * k)
        if self._blender is not None and cache and want <= BLEND_TOP and not blocked:
            rows, scores = self._cached_blend(state)
            if len(exclude):
                keep = ~np.isin(rows, exclude)
                rows, scores = rows[keep], scores[keep]
            rows, scores = rows[:want], scores[:want]
        elif self._blender is not None:
            rows, scores = self._with_baselines(state, exclude, want, self._tables()[1])
        else:
            _, prep = self._tables()
            # a repeat model rescores history items: fetch enough others to stay exact
            extra = 0 if state.repeat is None else len(state.repeat[0])
            rows, scores = self.retriever.search(state.query[None], prep, want + extra, [exclude])
            ok = np.isfinite(scores[0])  # a retriever pads a short list with -inf
            rows, scores = rows[0][ok], scores[0][ok]
            if state.repeat is not None:
                rows, scores = self._with_repeat(state, rows, scores, exclude, prep)
                rows, scores = rows[:want], scores[:want]
        if behaviour is not None:
            raw, _ = self._tables()  # now: a kept blended list may hold an item posted since
            rows, scores = self._by_behaviour(state, rows, scores, behaviour, raw)
            rows, scores = rows[:k], scores[:k]
        if state.n_events < self.settings.blend_events:
            w = state.n_events / self.settings.blend_events
            rows, scores = self._blend(rows, scores, exclude, k, w)
            return self._ranked(rows, scores, "blend", state.n_events)
        source = "model" if self._blender is None else "model+baselines"
        return self._ranked(rows, scores, source, state.n_events)

    def _cached_blend(self, state: UserState) -> tuple[np.ndarray, np.ndarray]:
        """The best ``BLEND_TOP + len(state.seen)`` of the blend for ``state``, seen items
        included (so that excluding them still leaves ``BLEND_TOP``), from the cache when this
        very state was ranked since the last catalogue change."""
        with self._cache_lock:
            version = self._blend_version  # before the tables: a change after it misses later
            hit = self._blend_cache.get(id(state))  # the entry keeps the state alive: id is unique
            if hit is not None and hit[0] is state and hit[1] == version:
                self._blend_cache.move_to_end(id(state))
                return hit[2], hit[3]
        _, prep = self._tables()
        n = BLEND_TOP + len(state.seen)
        rows, scores = self._with_baselines(state, np.zeros(0, np.int64), n, prep)
        with self._cache_lock:
            self._blend_cache[id(state)] = (state, version, rows, scores)
            while len(self._blend_cache) > BLEND_CACHE_USERS:
                self._blend_cache.popitem(last=False)
        return rows, scores

    @torch.no_grad()
    def _with_baselines(
        self, state: UserState, exclude: np.ndarray, want: int, prep: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``want`` of the model's z-scores over the whole catalogue plus the weighted
        z-scores of the blended baselines after the user's window (``Ensemble.score``)."""
        assert self._blender is not None
        model = state.query[None] @ prep.T  # (1, V) every item: z-scores need them all
        model[0, 0] = float("-inf")
        if state.repeat is not None:
            h_rows, bonus = state.repeat
            model[0, torch.from_numpy(h_rows)] += torch.from_numpy(bonus)
        items, behs, ts = state.window
        m, L = len(items), self.max_len
        batch = HistoryBatch(  # left-padded to max_len, as offline
            items=np.zeros((1, L), np.int64),
            behaviours=np.zeros((1, L), np.int64),
            timestamps=np.zeros((1, L), np.int64),
            lengths=np.array([m]),
        )
        batch.items[0, L - m :] = items  # posted items: see Ensemble.baseline_parts
        batch.behaviours[0, L - m :] = behs
        batch.timestamps[0, L - m :] = ts
        scores = self._blender.combine(
            {
                "runs": standardise(model),
                **self._blender.baseline_parts(batch, n_cols=model.shape[1]),
            },
            batch,
        )[0]
        if len(exclude):
            scores[torch.from_numpy(exclude)] = float("-inf")
        n = min(want, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, n)
        return top.indices.numpy().astype(np.int64), top.values.numpy()

    def _with_repeat(
        self,
        state: UserState,
        rows: np.ndarray,
        scores: np.ndarray,
        exclude: np.ndarray,
        prep: torch.Tensor,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add the repeat bonus of the history items. Only history items get a bonus, so the
        top-k of (retrieved candidates ∪ history items, rescored) is the exact top-k."""
        assert state.repeat is not None
        h_rows, bonus = state.repeat
        keep = ~np.isin(h_rows, exclude)
        h_rows, bonus = h_rows[keep], bonus[keep]
        if h_rows.size == 0:
            return rows, scores
        base = (state.query[None] @ prep[torch.from_numpy(h_rows)].T)[0].numpy()  # (H,)
        others = ~np.isin(rows, h_rows)
        all_rows = np.concatenate([rows[others], h_rows])
        all_scores = np.concatenate([scores[others], base + bonus]).astype(np.float32)
        order = np.argsort(-all_scores, kind="stable")
        return all_rows[order], all_scores[order]

    def similar(self, item_id: str, k: int) -> Ranked:
        row = self.item_row(item_id)
        _, prep = self._tables()
        rows, scores = self.retriever.search(
            prep[row][None].clone(), prep, k, [np.array([row], dtype=np.int64)]
        )
        return self._ranked(rows[0], scores[0], "model", 0)

    def _by_behaviour(
        self, state: UserState, rows: np.ndarray, scores: np.ndarray, name: str, raw: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank candidates by ``score + log P(behaviour | history, item)``."""
        if self.model.behaviour_head is None:
            raise ServiceError(
                409,
                "no_behaviour_head",
                "the served model has no behaviour head, so it cannot rank by behaviour; "
                "omit the behaviour parameter",
            )
        if name.lower() not in self.behaviours:
            raise ServiceError(
                404,
                "unknown_behaviour",
                f"unknown behaviour {name!r} (known: {', '.join(self.behaviours)})",
            )
        with torch.no_grad():
            cand = torch.from_numpy(rows)[None]  # (1, K)
            window = (
                torch.from_numpy(state.window[0])[None],
                torch.from_numpy(state.window[1])[None],
            )  # (1, m) each
            logits = self.model.behaviour_logits(
                state.hidden[None], cand, raw, window
            )  # (1, K, n_b)
            logp = torch.log_softmax(logits, -1)[0, :, self.behaviour_index(name) - 1]  # (K,)
        combined = scores + logp.numpy()
        order = np.argsort(-combined, kind="stable")
        return rows[order], combined[order]

    def _popular(self, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._pop_lock:
            pop = self._pop[: self._n_rows]
            top = self._pop_top
            if top is None or len(top) < min(len(pop) - 1, 4 * self.settings.max_k):
                n = min(len(pop) - 1, 4 * self.settings.max_k)
                part = np.argpartition(-pop[1:], n - 1)[:n] + 1 if n > 0 else np.zeros(0, np.int64)
                top = part[np.argsort(-pop[part], kind="stable")]
                self._pop_top = top
            if len(exclude):
                top = top[~np.isin(top, exclude)]
            top = top[:k]
            return top, pop[top].astype(np.float32)

    def _blend(
        self, rows: np.ndarray, scores: np.ndarray, exclude: np.ndarray, k: int, w: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reciprocal-rank fusion of the model's and popularity's lists (model weight ``w``)."""
        pop_rows, _ = self._popular(k, exclude)
        fused: dict[int, float] = {}
        for weight, ranked in ((w, rows), (1.0 - w, pop_rows)):
            for r, row in enumerate(ranked.tolist()):
                fused[row] = fused.get(row, 0.0) + weight / (RRF_K + r + 1)
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        return (
            np.array([r for r, _ in best], dtype=np.int64),
            np.array([s for _, s in best], dtype=np.float32),
        )

    def _ranked(self, rows: np.ndarray, scores: np.ndarray, source: str, n: int) -> Ranked:
        items = [
            (self.item_ids[r - 1], self.names[r - 1], float(s))
            for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
            if math.isfinite(s)
        ]
        return Ranked(items, source, n)


def tower_rows(model: Any, text: torch.Tensor) -> torch.Tensor:
    """Item-table rows ``(N, D)`` for new items from their text vectors ``(N, d_text)``, through
    the tower's own adaptor (and, for id+text, its gate with an all-zero id, as for the cold
    items of its catalogue: an item the model never saw in training has no learned id)."""
    return model.tower.text_rows(text.float())


def run_version(run_dir: str | Path) -> str:
    """A short id of the run's weights (changes when the run is retrained in place)."""
    weights = Path(run_dir) / ckpt.WEIGHTS_FILE
    st = weights.stat()
    raw = f"{Path(run_dir).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return f"{Path(run_dir).name}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def _display_name(item_id: str, fields: Mapping[str, Any]) -> str:
    for key in ("title", "name", "description"):
        if fields.get(key):
            return str(fields[key])
    return item_id


def _grow(t: torch.Tensor, cap: int) -> torch.Tensor:
    out = torch.zeros(cap, t.shape[1], dtype=t.dtype)
    out[: t.shape[0]] = t
    return out


def now_seconds() -> int:
    return int(time.time())
