"""The HTTP service: ``create_app(ServiceSettings(...))``, run by ``chronorec serve RUN``.

Layout: ``settings`` (environment → frozen settings), ``store`` (durable SQLite event store),
``engine`` (the loaded run: catalogue, user states, ranking), ``retrieval`` (exact / FAISS),
``schemas`` (pydantic bodies), ``routes`` (endpoints), ``metrics`` (Prometheus text), ``app``
(factory, lifespan, limits, error handlers).
"""

from chronorec.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> object:
    # FastAPI and torch load only when the app is asked for, not when settings are.
    if name == "create_app":
        from chronorec.service.app import create_app

        return create_app
    raise AttributeError(name)
