"""Service settings: one frozen dataclass, read from ``CHRONOREC_*`` environment variables.

Nothing reads the environment at import; :meth:`ServiceSettings.from_env` is called by the
``serve`` command (or by whoever builds the app), and the CLI's flags override what it returns.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chronorec.errors import ConfigError

ENV_PREFIX = "CHRONOREC_"
INDEX_KINDS = ("ivf", "hnsw")
CLOCKS = ("auto", "wall", "log")


@dataclass(frozen=True)
class ServiceSettings:
    run_dir: str | None = None  # the run to serve
    dataset: str | None = None  # its event log (default: the path recorded in the run)
    db_url: str = "sqlite:///chronorec-events.db"
    token: str | None = None  # bearer token of the write and admin endpoints
    # bearer token of the reads that reveal what users did (recommendations, similar items);
    # None: those reads are open. The write token is accepted for them too.
    read_token: str | None = None
    dev: bool = False  # allow starting without a token (write endpoints then open)
    max_body_bytes: int = 1_000_000
    max_batch: int = 1000  # events per POST /events
    max_k: int = 1000
    max_history: int = 1000  # items per POST /recommendations
    max_future_s: float = 86_400.0  # how far ahead of the server clock a timestamp may be
    exact_max_items: int = 200_000  # larger catalogues are served from a FAISS index
    index_kind: str = "ivf"
    nprobe: int = 64  # IVF lists visited per query (of sqrt(n_items))
    hnsw_ef: int = 128  # HNSW search breadth
    cache_users: int = 100_000  # user states kept in memory
    blend_events: int = 3  # events after which a new user is served by the model alone
    popularity_half_life_days: float = 7.0
    # what "now" is for an event posted without a timestamp: "wall" (the server's clock),
    # "log" (the newest timestamp the service knows: its log's, then every event posted), or
    # "auto": "log" when the newest logged event is more than a month before the wall clock
    # (a past log replayed), else "wall"
    clock: str = "auto"
    threads: int = 1  # torch threads per request (requests already run concurrently)
    # baselines blended into the model's ranking, "NAME=WEIGHT,..." as `chronorec recommend
    # --weights` takes them; "" = the run's saved blend (RUN/blend.json) if any, "none" = none
    blend: str = ""

    def __post_init__(self) -> None:
        for key in (
            "max_body_bytes",
            "max_batch",
            "max_k",
            "max_history",
            "nprobe",
            "hnsw_ef",
            "cache_users",
            "threads",
        ):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"service setting {key} must be >= 1, not {getattr(self, key)}")
        if self.blend_events < 0 or self.exact_max_items < 0:
            raise ConfigError("service settings blend_events and exact_max_items must be >= 0")
        if self.max_future_s < 0 or self.popularity_half_life_days <= 0:
            raise ConfigError("max_future_s must be >= 0 and popularity_half_life_days > 0")
        if self.clock not in CLOCKS:
            raise ConfigError(f"clock {self.clock!r} is not one of {CLOCKS}")
        if self.index_kind not in INDEX_KINDS:
            raise ConfigError(f"index_kind {self.index_kind!r} is not one of {INDEX_KINDS}")
        if self.token is not None and not self.token.strip():
            raise ConfigError("the service token is empty")
        if self.read_token is not None and not self.read_token.strip():
            raise ConfigError("the service's read token is empty")
        self.blend_choice()  # a bad blend fails at start-up

    def blend_choice(self) -> Any:
        """What the service ranks with (:func:`chronorec.blend.choose_blend`): ``blend``
        ("NAME=W,...", or "none" for the model alone), or when it is empty the run's saved blend
        (``RUN/blend.json``, weights or a learned blend), else the model alone."""
        from chronorec.blend import choose_blend

        return choose_blend(self.blend or None, self.run_dir, "blend (--blend or CHRONOREC_BLEND)")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServiceSettings:
        """Settings from ``CHRONOREC_<FIELD>`` variables (e.g. ``CHRONOREC_TOKEN``,
        ``CHRONOREC_DB_URL``, ``CHRONOREC_MAX_BATCH``); ``overrides`` that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None and f.name == "db_url":
                raw = env.get(ENV_PREFIX + "DB")
            if raw is not None:
                values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> ServiceSettings:
        return dataclasses.replace(self, **changes)

    def check_startable(self) -> None:
        """Refuse to serve write endpoints without a token unless in dev mode."""
        if self.token is None and not self.dev:
            raise ConfigError(
                "refusing to start without a token: set CHRONOREC_TOKEN (clients then send "
                "'Authorization: Bearer <token>') or pass --dev for an open development server"
            )
        if self.run_dir is None:
            raise ConfigError("no run to serve: pass RUN or set CHRONOREC_RUN_DIR")


def _parse(name: str, type_name: str, raw: str) -> Any:
    env_name = ENV_PREFIX + name.upper()
    if "bool" in type_name:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{env_name}={raw!r} is not a boolean (use 1/0, true/false)")
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError:
        kind = "an integer" if type_name.startswith("int") else "a number"
        raise ConfigError(f"{env_name}={raw!r} is not {kind}") from None
    return raw
