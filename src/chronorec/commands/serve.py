"""``chronorec serve RUN``: the real-time recommendation service under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from chronorec.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP (events in, fresh top-K out)",
        description="Start the FastAPI service for a trained run. Write and admin endpoints need "
        "'Authorization: Bearer <token>' with the token from CHRONOREC_TOKEN; without one the "
        "server refuses to start unless --dev is given. Reads that reveal what users did "
        "(recommendations, similar items) are open unless a read token is set "
        "(CHRONOREC_READ_TOKEN or --read-token); the write token is accepted for them too. "
        "Other settings come from CHRONOREC_* variables (see chronorec.service.settings).",
    )
    p.add_argument("run", help="run directory written by `chronorec train`")
    p.add_argument(
        "--dataset",
        default=None,
        help="prepared dataset of the run's event log (default: the one recorded)",
    )
    p.add_argument(
        "--db",
        default=None,
        help="event store URL: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB "
        "(PostgreSQL needs chronorec[postgres]; default: CHRONOREC_DB_URL or "
        "sqlite:///chronorec-events.db)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--dev",
        action="store_true",
        help="development mode: start without a token (write endpoints open)",
    )
    p.add_argument(
        "--read-token",
        default=None,
        metavar="TOKEN",
        help="make reads private: recommendations and similar items then need 'Authorization: "
        "Bearer TOKEN' (or the write token); default: CHRONOREC_READ_TOKEN, else open reads. "
        "The environment variable keeps the token out of the process list",
    )
    p.add_argument(
        "--clock",
        choices=["auto", "wall", "log"],
        default=None,
        help="the time of an event posted without a timestamp: 'wall' (the server's clock), "
        "'log' (the newest timestamp known, for a past log replayed) or 'auto' (the default, "
        "or CHRONOREC_CLOCK): 'log' when the newest logged event is over 30 days old",
    )
    p.add_argument(
        "--exact-max-items",
        type=int,
        default=None,
        help="catalogues above this size use a FAISS index (default 200000)",
    )
    p.add_argument(
        "--blend",
        default=None,
        metavar="NAME=WEIGHT,...",
        help="blend the model with baselines at these weights, e.g. repeat-recent=0.3,"
        "popular-recent=1; 'none' for the model alone (default: CHRONOREC_BLEND, else the "
        "run's saved blend, RUN/blend.json, written by `chronorec demo` and `chronorec "
        "evaluate --save-blend`, else the model alone)",
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chronorec.service.settings import ServiceSettings

    settings = ServiceSettings.from_env(
        run_dir=args.run,
        dataset=args.dataset,
        db_url=args.db,
        dev=True if args.dev else None,
        read_token=args.read_token,
        clock=args.clock,
        exact_max_items=args.exact_max_items,
        blend=args.blend,
    )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port")
    import uvicorn

    from chronorec.service.app import create_app
    from chronorec.service.store import open_store

    app = create_app(settings)  # refuses to build without a token unless --dev
    if settings.token is None and not _loopback(args.host):
        print(
            f"warning: --dev with no token on {args.host}: anyone who can reach port "
            f"{args.port} can post events, add items, forget users and reload the model",
            file=sys.stderr,
        )
    open_store(settings.db_url).close()  # a bad --db is a clear error here, not a traceback later
    logging.getLogger("chronorec").setLevel(args.log_level.upper())
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _loopback(host: str) -> bool:
    """Whether ``host`` binds to this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
