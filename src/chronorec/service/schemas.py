"""Request and response bodies. Requests forbid unknown fields and non-finite numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StringConstraints,
    Tag,
    WithJsonSchema,
    field_validator,
)

# Hard caps that bound the schema itself; the settings may lower them (never raise them).
MAX_BATCH = 1000
MAX_K = 1000
MAX_HISTORY = 1000

# No NUL character anywhere: PostgreSQL's text cannot hold one (and no id or name needs one)
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=20_000, pattern=NO_NUL)]


def _no_bool(value: object) -> object:
    """A count or a time is a number in JSON, never ``true``/``false`` (nor a string, for a
    count): what the schema says, where pydantic's lax mode would read 1 or 10."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _integer(value: object) -> object:
    if isinstance(value, str):
        raise ValueError("expected an integer, not a string")
    return _no_bool(value)


Count = Annotated[int, BeforeValidator(_integer)]
# ItemIn.fields as JSON Schema says it plainly (pydantic would put the key pattern in
# patternProperties, which leaves other keys unconstrained)
FIELDS_SCHEMA = {
    "type": "object",
    "maxProperties": 20,
    "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": NO_NUL},
    "additionalProperties": {"type": "string", "maxLength": 20_000, "pattern": NO_NUL},
    "description": 'other text fields, e.g. {"colour": "red"}',
}


def _parse_time(value: object) -> object:
    """ISO 8601 strings become epoch seconds (UTC when no zone is given); numbers pass."""
    _no_bool(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("timestamp must be seconds since the epoch or ISO 8601") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    return value


# the last second of year 9999: ISO 8601's own range, and far inside int64 seconds
MAX_TIMESTAMP = 253_402_300_799
# (the bounds first, so that the schema shows them as minimum and maximum)
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP), BeforeValidator(_parse_time)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def to_seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


class EventIn(Request):
    user_id: Id
    item_id: Id
    behaviour: Name | None = Field(None, description="default: the model's first behaviour")
    timestamp: Timestamp | None = Field(
        None, description="seconds since the epoch or ISO 8601; default: the server's clock"
    )
    event_id: Id | None = Field(None, description="client id: a replay is not stored twice")


class EventBatch(Request):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


def _events_kind(value: object) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "event"


# One event as an object, or a batch as {"events": [...]}; errors name the branch that applies.
EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(_events_kind),
]


class EventsAccepted(BaseModel):
    stored: int
    duplicates: int
    results: list[Literal["stored", "duplicate"]]


class HistoryEvent(Request):
    item_id: Id
    behaviour: Name | None = None
    timestamp: Timestamp | None = None


class RecommendRequest(Request):
    history: list[HistoryEvent] = Field(max_length=MAX_HISTORY, description="oldest first")
    k: Count = Field(10, ge=1, le=MAX_K)
    # true or false, never 0 or "no"; default: the run's data.exclude_seen, as it was evaluated
    exclude_seen: StrictBool | None = None
    behaviour: Name | None = None
    block: list[Id] = Field(
        default_factory=list, max_length=MAX_HISTORY, description="items never to recommend"
    )


class RecommendedItem(BaseModel):
    item_id: str
    name: str
    score: float


class Recommendations(BaseModel):
    user_id: str | None = None
    model_version: str
    # "model+baselines": the model blended with the baselines of the `blend` setting;
    # "blend": a user with few events, the model's list fused with popularity's
    source: Literal["model", "model+baselines", "popularity", "blend"]
    n_events: int
    items: list[RecommendedItem]


class ItemIn(Request):
    item_id: Id
    title: Text | None = None
    description: Text | None = None
    brand: Text | None = None
    category: Text | None = None
    categories: list[Text] | None = Field(None, max_length=50)
    price: Annotated[float, Field(ge=0), BeforeValidator(_no_bool)] | None = None
    fields: Annotated[dict[Name, Text], WithJsonSchema(FIELDS_SCHEMA)] = Field(
        default_factory=dict, max_length=20, description='other text fields, e.g. {"colour": "red"}'
    )

    @field_validator("fields")
    @classmethod
    def _no_shadowing(cls, value: dict[str, str]) -> dict[str, str]:
        named = {"item_id", "title", "description", "brand", "category", "categories", "price"}
        clash = sorted(set(value) & named)
        if clash:
            raise ValueError(f"fields must not repeat the named field(s) {', '.join(clash)}")
        return value

    def text_fields(self) -> dict[str, object]:
        out: dict[str, object] = {
            k: v for k, v in self.model_dump(exclude={"item_id", "fields"}).items() if v is not None
        }
        out.update(self.fields)
        return out


class ItemAdded(BaseModel):
    item_id: str
    model_version: str
    n_items: int


class UserForgotten(BaseModel):
    user_id: str
    deleted_events: int


class ReloadRequest(Request):
    run: str | None = Field(None, max_length=4096, description="default: the run being served")
    dataset: str | None = Field(None, max_length=4096)


class Reloaded(BaseModel):
    model_version: str
    previous_version: str
    n_items: int
    seconds: float


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    model_version: str | None = None
    n_items: int | None = None
    retrieval: str | None = None
    index_recall_at_10: float | None = None
    blend: dict[str, float] | None = None  # baseline weights blended into the model's ranking
    # the baselines of a learned blend (a re-ranker over them and the model), when it ranks
    learned_blend: list[str] | None = None
    # what an event posted without a timestamp is dated: "wall" (the server's clock) or "log"
    # (the newest timestamp known, for a past log replayed)
    clock: Literal["wall", "log"] | None = None
    fine_tuned: int = 0  # rounds of `chronorec finetune` behind the served weights
    fine_tuned_at: str | None = None  # when the last one finished (ISO 8601, UTC)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, object]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
