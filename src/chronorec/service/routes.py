"""HTTP routes. Handlers are plain ``def``: FastAPI runs them in its thread pool, where the model
(torch releases the GIL) and SQLite (fsync) may block without stalling the event loop."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chronorec.errors import ChronorecError
from chronorec.service.engine import Engine, Ranked, ServiceError, now_seconds
from chronorec.service.metrics import Metrics
from chronorec.service.schemas import (
    MAX_K,
    NO_NUL,
    ErrorBody,
    EventBatch,
    EventIn,
    EventsAccepted,
    EventsBody,
    Health,
    ItemAdded,
    ItemIn,
    Ready,
    Recommendations,
    RecommendedItem,
    RecommendRequest,
    Reloaded,
    ReloadRequest,
    UserForgotten,
    to_seconds,
)
from chronorec.service.settings import ServiceSettings
from chronorec.service.store import Event

log = logging.getLogger(__name__)

# A GET's whole request target must stay under the HTTP parser's 65,536 bytes, whatever the
# characters: one may take 12 bytes percent-encoded (4 UTF-8 bytes, each as %XX). Longer block
# lists go in the body of POST /recommendations.
MAX_BLOCK_QUERY = 4_000

bearer = HTTPBearer(auto_error=False, description="the service token (CHRONOREC_TOKEN)")
read_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ReadToken",
    description="the read token (CHRONOREC_READ_TOKEN) or the service token; only when set",
)
_WHY = {
    400: "the request could not be read (e.g. a bad Content-Length)",
    401: "no bearer token",
    403: "a wrong bearer token",
    404: "a request names an item or behaviour this service does not have, or an unknown route",
    409: "the served model cannot do this (add items, rank by behaviour), the item exists "
    "already, an event is dated after the server's clock, or a reload is in progress",
    413: "the body, batch, history or block list is over this server's limit",
    422: "a field is invalid",
}
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": why} for code, why in _WHY.items()
}
router = APIRouter(
    responses={code: ERRORS[code] for code in (400, 413, 422)}  # any route, any body
)


def engine_of(request: Request) -> Engine:
    """The engine this request runs on from start to end, even if a reload swaps it meanwhile."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ServiceError(503, "not_ready", "the model is not loaded yet")
    return engine


def settings_of(request: Request) -> ServiceSettings:
    return request.app.state.settings  # type: ignore[no-any-return]  # set by create_app


def metrics_of(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]  # set by create_app


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    token = settings_of(request).token
    if token is None:  # dev mode without a token: the write endpoints are open
        return
    if creds is None:
        raise HTTPException(
            401,
            "missing 'Authorization: Bearer <token>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(403, "invalid token", headers={"WWW-Authenticate": "Bearer"})


def require_read_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(read_bearer)],
) -> None:
    """Reads that reveal what users did need the read token (or the write token) once a read
    token is set; without one they are open."""
    settings = settings_of(request)
    if settings.read_token is None:
        return
    if creds is None:
        raise HTTPException(
            401,
            "missing 'Authorization: Bearer <token>' header (this server's reads are private)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = creds.credentials.encode()
    ok = secrets.compare_digest(given, settings.read_token.encode())
    if settings.token is not None:  # both compared, always: no timing tells which matched
        ok = secrets.compare_digest(given, settings.token.encode()) | ok
    if not ok:
        raise HTTPException(403, "invalid token", headers={"WWW-Authenticate": "Bearer"})


Auth = [Depends(require_token)]
ReadAuth = [Depends(require_read_token)]


def _events(body: EventIn | EventBatch, settings: ServiceSettings, engine: Engine) -> list[Event]:
    items = body.events if isinstance(body, EventBatch) else [body]
    if len(items) > settings.max_batch:
        raise ServiceError(
            413,
            "batch_too_large",
            f"{len(items)} events in one request; the limit is {settings.max_batch}",
        )
    now = now_seconds()
    events = []
    for i, e in enumerate(items):
        ts = to_seconds(e.timestamp)
        if ts is not None and ts > now + settings.max_future_s:
            raise ServiceError(  # schema-valid, but at odds with the server's state: 409
                409,
                "timestamp_in_future",
                f"event {i}: timestamp {ts} is more than {settings.max_future_s:g} "
                f"seconds after the server's clock ({now})",
            )
        behaviour = (e.behaviour or engine.behaviours[0]).lower()
        when = engine.now() if ts is None else ts
        events.append(Event(e.user_id, e.item_id, behaviour, when, e.event_id))
    return events


@router.post(
    "/events",
    status_code=201,
    response_model=EventsAccepted,
    dependencies=Auth,
    responses=ERRORS,
    tags=["events"],
)
def post_events(body: EventsBody, request: Request) -> EventsAccepted:
    """Store one event (an object) or a batch (``{"events": [...]}``); durable before the 2xx."""
    engine = engine_of(request)
    events = _events(body, settings_of(request), engine)
    engine.check_events(events)
    inserted = engine.ingest(events)
    stored = sum(inserted)
    metrics_of(request).add("events_ingested", stored)
    metrics_of(request).add("events_duplicate", len(inserted) - stored)
    return EventsAccepted(
        stored=stored,
        duplicates=len(inserted) - stored,
        results=["stored" if ok else "duplicate" for ok in inserted],
    )


class JSONBody(Response):
    media_type = "application/json"


def _response(engine: Engine, ranked: Ranked, user_id: str | None) -> Response:
    """Serialised once, here: a returned Response skips FastAPI's second validation pass of the
    response model (the model still documents the endpoint)."""
    body = Recommendations(
        user_id=user_id,
        model_version=engine.version,
        source=ranked.source,  # type: ignore[arg-type]  # one of the three literals
        n_events=ranked.n_events,
        items=[RecommendedItem(item_id=i, name=n, score=s) for i, n, s in ranked.items],
    )
    return JSONBody(body.model_dump_json())


def _blocked(engine: Engine, item_ids: list[str], settings: ServiceSettings) -> np.ndarray:
    """The catalogue rows of items a request blocks; an unknown id is a 422 naming it."""
    if len(item_ids) > settings.max_history:
        raise ServiceError(
            413, "block_too_long", f"{len(item_ids)} blocked items; the limit is "
            f"{settings.max_history}",
        )  # fmt: skip
    unknown = [i.strip() for i in item_ids if i.strip() not in engine.index]
    if unknown:
        raise ServiceError(404, "unknown_item", f"block: unknown item id {unknown[0]!r}")
    return np.array([engine.index[i.strip()] for i in item_ids], dtype=np.int64)


def _check_k(k: int, settings: ServiceSettings) -> None:
    if k > settings.max_k:
        raise ServiceError(
            422, "k_too_large", f"k={k} is above this server's limit {settings.max_k}"
        )


@router.get(
    "/users/{user_id}/recommendations",
    response_model=Recommendations,
    dependencies=ReadAuth,
    responses=ERRORS,
    tags=["recommendations"],
)
def user_recommendations(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=256, pattern=NO_NUL)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    exclude_seen: Annotated[
        bool | None,
        Query(description="leave the user's items out (default: the run's data.exclude_seen)"),
    ] = None,
    behaviour: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    block: Annotated[
        str | None,
        Query(
            max_length=MAX_BLOCK_QUERY,  # the HTTP server reads request targets under 64 KiB
            description="comma-separated item ids to leave out (longer lists: the body of "
            "POST /recommendations)",
        ),
    ] = None,
) -> Response:
    """Top-k for a user after every event stored so far; a user with no events gets recent
    popularity, blended with the model over their first few events."""
    engine = engine_of(request)
    settings = settings_of(request)
    _check_k(k, settings)
    blocked = _blocked(engine, [b for b in (block or "").split(",") if b.strip()], settings)
    state = engine.user_state(user_id)
    ranked = engine.rank(
        state, k, exclude_seen=exclude_seen, behaviour=behaviour, cache=True, block=blocked
    )
    return _response(engine, ranked, user_id)


@router.post(
    "/recommendations",
    response_model=Recommendations,
    dependencies=ReadAuth,
    responses=ERRORS,
    tags=["recommendations"],
)
def history_recommendations(body: RecommendRequest, request: Request) -> Response:
    """Top-k after an explicit history (an anonymous session); nothing is stored."""
    engine = engine_of(request)
    settings = settings_of(request)
    _check_k(body.k, settings)
    if len(body.history) > settings.max_history:
        raise ServiceError(
            413,
            "history_too_long",
            f"{len(body.history)} history events; the limit is {settings.max_history}",
        )
    blocked = _blocked(engine, body.block, settings)
    state = engine.history_state(
        [(e.item_id, e.behaviour, to_seconds(e.timestamp)) for e in body.history]
    )
    ranked = engine.rank(
        state, body.k, exclude_seen=body.exclude_seen, behaviour=body.behaviour, block=blocked
    )
    return _response(engine, ranked, None)


@router.post(
    "/items",
    status_code=201,
    response_model=ItemAdded,
    dependencies=Auth,
    responses=ERRORS,
    tags=["items"],
)
def post_item(body: ItemIn, request: Request) -> ItemAdded:
    """Encode a new item with the text tower; it is recommendable and searchable at once."""
    engine = engine_of(request)
    engine.add_item(body.item_id, body.text_fields())
    metrics_of(request).add("items_added")
    return ItemAdded(item_id=body.item_id, model_version=engine.version, n_items=engine.n_items)


@router.get(
    "/items/{item_id}/similar",
    response_model=Recommendations,
    dependencies=ReadAuth,
    responses=ERRORS,
    tags=["items"],
)
def similar_items(
    item_id: Annotated[str, Path(min_length=1, max_length=256, pattern=NO_NUL)],
    request: Request,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
) -> Response:
    """Nearest items in the model's item space (cosine for cosine heads, else inner product)."""
    engine = engine_of(request)
    _check_k(k, settings_of(request))
    return _response(engine, engine.similar(item_id, k), None)


@router.delete(
    "/users/{user_id}",
    response_model=UserForgotten,
    dependencies=Auth,
    responses=ERRORS,
    tags=["users"],
)
def forget_user(
    user_id: Annotated[str, Path(min_length=1, max_length=256, pattern=NO_NUL)], request: Request
) -> UserForgotten:
    """Forget the user's stored events, their training-log history and their cached state."""
    deleted = engine_of(request).forget(user_id)
    return UserForgotten(user_id=user_id, deleted_events=deleted)


@router.post(
    "/admin/reload", response_model=Reloaded, dependencies=Auth, responses=ERRORS, tags=["admin"]
)
def reload_model(request: Request, body: ReloadRequest | None = None) -> Reloaded:
    """Load a run (default: the served one, e.g. retrained in place) and swap it in atomically;
    requests already running finish on the old model."""
    lock: threading.Lock = request.app.state.reload_lock
    if not lock.acquire(blocking=False):
        raise ServiceError(409, "reload_in_progress", "another reload is in progress")
    try:
        start = time.perf_counter()
        old = engine_of(request)
        settings = settings_of(request)
        run = (body.run if body else None) or old.run_dir
        dataset = (body.dataset if body else None) or settings.dataset
        try:
            new = Engine.load(run, settings.replace(run_dir=run, dataset=dataset), old.store)
        except ChronorecError as exc:
            raise ServiceError(422, "reload_failed", f"could not load {run!r}: {exc}") from exc
        except OSError as exc:
            raise ServiceError(422, "reload_failed", f"could not load {run!r}: {exc}") from exc
        request.app.state.engine = new  # the one reference every request reads
        raced = old.store.forgotten_users(since=new.forgotten_since)  # a DELETE during the load
        new.also_forgotten(raced)
        metrics_of(request).add("reloads")
        log.info("reloaded %s -> %s", old.version, new.version)
        return Reloaded(
            model_version=new.version,
            previous_version=old.version,
            n_items=new.n_items,
            seconds=round(time.perf_counter() - start, 3),
        )
    finally:
        lock.release()


@router.get("/health", response_model=Health, tags=["ops"])
def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}}, tags=["ops"])
def ready(request: Request, response: Response) -> Ready:
    """The model is loaded and the event store answers."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None or not engine.store.ping():
        response.status_code = 503
        return Ready(status="unavailable")
    rounds = engine.rec.meta.get("finetuned", [])  # `chronorec finetune` behind the weights
    return Ready(
        status="ready",
        model_version=engine.version,
        n_items=engine.n_items,
        retrieval=engine.retriever.kind,
        index_recall_at_10=engine.index_recall,
        blend=engine.blend_weights or None,
        learned_blend=None if engine.learned is None else engine.learned.baselines,
        clock="log" if engine.clock == "log" else "wall",
        fine_tuned=len(rounds),
        fine_tuned_at=rounds[-1].get("at") if rounds else None,
    )


@router.get(
    "/metrics",
    response_class=Response,
    tags=["ops"],
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    engine: Engine | None = getattr(request.app.state, "engine", None)

    def gauges() -> list[tuple[str, str, dict[str, str], float]]:
        if engine is None:
            return []
        return [
            ("model_info", "The served model.", {"version": engine.version}, 1),
            ("items", "Items in the catalogue.", {}, engine.n_items),
            (
                "index_recall_at_10",
                "recall@10 of the retrieval index vs exact.",
                {"retrieval": engine.retriever.kind},
                engine.index_recall,
            ),
            ("user_cache_hits", "User-state cache hits.", {}, engine.cache_hits),
            ("user_cache_misses", "User-state cache misses.", {}, engine.cache_misses),
            (
                "user_state_steps",
                "Events applied to a cached RNN state in O(1).",
                {},
                engine.state_steps,
            ),
        ]

    return Response(
        metrics_of(request).render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
