"""The FastAPI app factory. The run loads in the lifespan; importing this module loads nothing.

Every error leaves as JSON ``{"error": {"code", "message", "details"?}}`` with a 4xx status:
validation errors 422, a body over the size limit 413, a missing/invalid token 401/403.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from chronorec import __version__
from chronorec.errors import ChronorecError
from chronorec.service.engine import Engine, ServiceError
from chronorec.service.metrics import Metrics
from chronorec.service.routes import router
from chronorec.service.settings import ServiceSettings
from chronorec.service.store import open_store

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def create_app(settings: ServiceSettings) -> FastAPI:
    """The app for ``settings``; raises ConfigError when it must not start (e.g. no token)."""
    settings.check_startable()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.db_url)
        try:
            start = time.perf_counter()
            assert settings.run_dir is not None  # check_startable() made sure
            app.state.engine = await run_in_threadpool(
                Engine.load, settings.run_dir, settings, store
            )
            engine = app.state.engine
            log.info(
                "serving %s: %d items, %s retrieval, loaded in %.1f s",
                engine.version,
                engine.n_items,
                engine.retriever.kind,
                time.perf_counter() - start,
            )
            yield
        finally:
            app.state.engine = None
            store.close()

    app = FastAPI(
        title="chronorec",
        version=__version__,
        description="Real-time sequential recommendation: events in, fresh top-K out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.reload_lock = threading.Lock()
    app.state.engine = None
    app.include_router(router)
    _document_open_routes(app, settings)
    _install_error_handlers(app)
    app.add_middleware(
        LimitsAndMetrics, max_body=settings.max_body_bytes, metrics=app.state.metrics
    )
    return app


def _document_open_routes(app: FastAPI, settings: ServiceSettings) -> None:
    """The OpenAPI document as this server runs: a scheme with no token set (the read token by
    default, the write token under --dev) is open, so its routes list no security and no
    401/403."""
    open_schemes = set()
    if settings.read_token is None:
        open_schemes.add("ReadToken")
    if settings.token is None:
        open_schemes |= {"HTTPBearer", "ReadToken"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    needs = [r for r in op.get("security", []) if not open_schemes & set(r)]
                    if needs or "security" not in op:
                        continue
                    del op["security"]
                    for code in ("401", "403"):
                        op.get("responses", {}).pop(code, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def error(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        first = exc.errors()[0] if details else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", "invalid request"))
        message = f"{loc}: {msg}" if loc else msg
        if len(details) > 1:
            message += f" (and {len(details) - 1} more)"
        return error(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
        }.get(exc.status_code, f"http_{exc.status_code}")
        headers = dict(exc.headers) if exc.headers else None
        return error(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(ChronorecError)
    async def bad_input(request: Request, exc: ChronorecError) -> JSONResponse:
        return error(422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "internal_error", "internal error (logged on the server)")


class LimitsAndMetrics:
    """Pure ASGI middleware: refuses bodies over ``max_body`` bytes before the app reads them
    (413), and records each request's route, status and latency."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_body: int, metrics: Metrics):
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            refusal, body_receive = await self._read_body(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send_status)
                return
            await self.app(scope, body_receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], path, status, time.perf_counter() - start)

    async def _read_body(
        self, scope: Scope, receive: Receive
    ) -> tuple[JSONResponse | None, Receive]:
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return error(400, "bad_content_length", "Content-Length is not a number"), receive
            if declared > self.max_body:
                return self._too_large(declared), receive
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None, receive
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None, receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return self._too_large(size), receive
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay

    def _too_large(self, size: int) -> JSONResponse:
        return error(
            413,
            "body_too_large",
            f"request body of {size:,}+ bytes; the limit is {self.max_body:,}",
        )
