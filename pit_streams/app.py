"""``App`` and ``@app.handler``: declarations only — no I/O, no Kafka, no disk.

Example::

    import pit_streams
    from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

    pit = pit_streams.App("nav-consumer", version="0.1.0")

    @pit.handler("pit.v1.exec.trade_fill", TradeFillEvent,
                 emits={"pit.v1.acct.nav_update": NAVUpdateEvent})
    async def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit("pit.v1.acct.nav_update", NAVUpdateEvent(nav_usd_micros=fill.notional_usd_micros))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeAlias, TypeVar

from google.protobuf.message import Message

from pit_streams.context import Context
from pit_streams.contract.naming import DEAD_LETTER_TOPIC, changelog_topic, is_changelog, is_topic_name
from pit_streams.errors import DeclarationError
from pit_streams.handler_signature import check_handler_signature
from pit_streams.transport.base import GUARANTEES, Guarantee

__all__ = ["DEAD_LETTER_TOPIC", "App", "HandlerSpec"]

P = TypeVar("P", bound=Message)
"""The payload class a handler is declared for (``@app.handler(topic, TradeFillEvent)``)."""
R = TypeVar("R", bound=Awaitable[None] | None)
"""What the handler returns: ``None``, or an awaitable of ``None`` (an ``async def`` handler)."""

HandlerFn: TypeAlias = Callable[[Any, Context], Awaitable[None] | None]
"""A registered handler as the runtime stores it (its payload class lives beside it in ``HandlerSpec``)."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One ``@app.handler`` declaration."""

    topic: str
    payload_class: type[Message]
    fn: HandlerFn
    emits: Mapping[str, type[Message]]
    migration_only: bool = False

    @property
    def is_ops_topic(self) -> bool:
        return self.topic.split(".")[2:3] == ["ops"]


@dataclass
class App:
    """A stream-processing app: one consumer group, its handlers and their declared outputs.

    Args:
        name: the app's name, which is also its consumer group (``nav-consumer``).
        version: written into every envelope's ``producer`` as ``name@version``.
        tenants: if given, envelopes of any other tenant are dead-lettered (``tenant_not_allowed``).
        dedupe_ttl: how long a processed ``event_id`` is remembered.
        handler_retries: attempts after the first before a failing record is dead-lettered.
        retry_backoff: the first retry's delay; it doubles on each further retry.
        on_handler_error: ``"dead_letter"`` (default) or ``"stop"`` — stop the worker unhealthy
            without committing the failing record.
        handler_timeout: an ``async`` handler that has not returned by then has failed.
        guarantee: ``"at_least_once"`` (default: outputs are visible as soon as they are written;
            after a crash a reader may see an output twice, with the same ``event_id``) or
            ``"exactly_once"`` (outputs, dead letters, state and offsets commit in one Kafka
            transaction: a ``read_committed`` reader sees each output once). State and dedupe
            marks are transactional, and stale owners fenced, in both (docs/adr/0003).
        signed_inputs: input topics whose envelopes must carry a valid Ed25519 signature of the
            topic's catalogued owner (keys from the worker's ``--trust-bundle``); any other is
            dead-lettered with ``bad_signature`` (docs/adr/0008-verification.md).
    """

    name: str
    version: str = "0.0.0"
    tenants: Collection[str] | None = None
    dedupe_ttl: timedelta = timedelta(days=7)
    handler_retries: int = 3
    retry_backoff: timedelta = timedelta(milliseconds=100)
    on_handler_error: Literal["dead_letter", "stop"] = "dead_letter"
    handler_timeout: timedelta = timedelta(seconds=30)
    guarantee: Guarantee = "at_least_once"
    signed_inputs: Collection[str] = ()
    _handlers: dict[str, HandlerSpec] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        changelog_topic(self.name)  # a DeclarationError if the name cannot be a consumer group
        if self.guarantee not in GUARANTEES:
            raise DeclarationError(f"guarantee must be one of {', '.join(GUARANTEES)}, not {self.guarantee!r}")
        if self.on_handler_error not in ("dead_letter", "stop"):
            raise DeclarationError("on_handler_error must be 'dead_letter' or 'stop'")
        retries = self.handler_retries
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise DeclarationError(f"handler_retries must be a whole number >= 0 (0 = no retry), not {retries!r}")
        if self.tenants is not None:
            if isinstance(self.tenants, str | bytes) or not isinstance(self.tenants, Collection):
                # A str is a collection of its characters: tenants="demo" would serve 'd', 'e', 'm', 'o'.
                raise DeclarationError(
                    f"tenants must be a collection of tenant names, e.g. tenants={{{self.tenants!r}}}"
                )
            if not all(isinstance(t, str) and t for t in self.tenants):
                raise DeclarationError(f"tenants must be non-empty strings, not {sorted(map(repr, self.tenants))}")
            self.tenants = frozenset(self.tenants)
        _positive("dedupe_ttl", self.dedupe_ttl, "e.g. timedelta(days=7)")
        _positive("handler_timeout", self.handler_timeout, "e.g. timedelta(seconds=30)")
        if not isinstance(self.retry_backoff, timedelta) or self.retry_backoff < timedelta(0):
            raise DeclarationError(
                f"retry_backoff must be a timedelta >= 0, e.g. timedelta(milliseconds=100), not {self.retry_backoff!r}"
            )

    @property
    def group(self) -> str:
        return self.name

    @property
    def producer(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def changelog_topic(self) -> str:
        return changelog_topic(self.name)

    @property
    def handlers(self) -> Mapping[str, HandlerSpec]:
        return dict(self._handlers)

    def handler(
        self,
        topic: str,
        payload_type: type[P],
        *,
        emits: Mapping[str, type[Message]] | None = None,
        migration_only: bool = False,
    ) -> Callable[[Callable[[P, Context], R]], Callable[[P, Context], R]]:
        """Declare ``fn(payload, ctx)`` as the handler of ``topic``, whose records carry ``payload_type``.

        The decorator is generic in ``payload_type``: mypy rejects a handler whose first parameter
        does not accept a ``payload_type`` or whose second does not accept a ``Context``, and the
        same mismatch in an unchecked module is a ``DeclarationError`` when it is imported.
        ``fn`` may be ``def`` or ``async def``; it returns ``None``.

        ``emits`` names every topic the handler may ``ctx.emit`` to, with its message type;
        emitting anywhere else is an error. ``migration_only=True`` is the contract's
        escape hatch: the records are not envelopes, and the handler's payload (still a
        ``payload_type``) is decoded from the raw record bytes.
        """
        _check_topic(topic)
        if topic == DEAD_LETTER_TOPIC:
            raise DeclarationError(
                f"{DEAD_LETTER_TOPIC} cannot have a handler: it is read by ops tooling, and a handler there"
                " would feed its own refusals back to itself"
            )
        if not (isinstance(payload_type, type) and issubclass(payload_type, Message)):
            raise DeclarationError(
                f"payload type {payload_type!r} for {topic} is not a protobuf message class:"
                " pass a generated class from pit-proto, e.g. TradeFillEvent"
            )
        outputs = dict(emits or {})
        for out_topic, out_type in outputs.items():
            _check_topic(out_topic)
            if out_topic == DEAD_LETTER_TOPIC or is_changelog(out_topic):
                # Written by the framework on the app's behalf (and another app's changelog is its state).
                raise DeclarationError(
                    f"{out_topic} is written by the framework, not by handlers: remove it from emits="
                    " (a handler dead-letters a record by raising)"
                )
            if not (isinstance(out_type, type) and issubclass(out_type, Message)):
                raise DeclarationError(f"emitted type {out_type!r} for {out_topic} is not a protobuf message class")
        if topic in self._handlers:
            raise DeclarationError(f"{topic} already has a handler in app {self.name!r}: one handler per topic")

        def register(fn: Callable[[P, Context], R]) -> Callable[[P, Context], R]:
            if not callable(fn):
                raise DeclarationError(f"handler {fn!r} for {topic} must be a function taking (payload, ctx)")
            check_handler_signature(fn, topic, payload_type)
            self._handlers[topic] = HandlerSpec(topic, payload_type, fn, outputs, migration_only)
            return fn

        return register

    def reads(self) -> list[str]:
        return sorted(self._handlers)

    def writes(self) -> list[str]:
        """Every topic the app's workers write to: outputs, dead letters and the changelog."""
        out = {t for spec in self._handlers.values() for t in spec.emits}
        return sorted(out | {DEAD_LETTER_TOPIC, self.changelog_topic})


def _positive(name: str, value: object, example: str) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise DeclarationError(f"{name} must be a positive timedelta, {example}, not {value!r}")


def _check_topic(topic: str) -> None:
    if not is_topic_name(topic):
        raise DeclarationError(
            f"topic {topic!r} does not follow pit.v{{N}}.{{domain}}.{{event}} with domain in"
            " exec|acct|risk|policy|strategy|runtime|checkpoint|ops"
        )
