"""``pit-streams dead-letters``: list refused records with their reasons; replay fixed ones.

    pit-streams dead-letters [list] [--reason handler_error] [--since 2h] [--group nav-consumer] [--json]
    pit-streams dead-letters replay --reason handler_error --since 2h            # dry run: says what it would do
    pit-streams dead-letters replay --reason handler_error --since 2h --apply    # puts them back

A replay produces the refused record's exact bytes, Kafka key and headers back to its source
topic, on the partition its key hashes to (murmur2, so a ``wrong_partition`` refusal lands right),
with a ``pit.replayed_from`` header naming the dead letter. Each dead letter is replayed once:
replay first reads the source topic from the dead letter's time on and skips a dead letter whose
``pit.replayed_from`` copy is already there, so running the same replay twice sends nothing the
second time. Should two replays race, the copy keeps its original envelope ``event_id``, so the
consumer's dedupe (within ``App(dedupe_ttl=...)``) drops the second one.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.errors import ConfigError
from pit_streams.runtime import deadletter
from pit_streams.tools.common import ClientConfig, add_broker_args, client_config, read_topic

REPLAYED_FROM = "pit.replayed_from"
_DURATION_RE = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter read back: where it sits, why, and the refused record to replay."""

    coordinates: str  # pit.v1.ops.dead_letter/{partition}/{offset}
    refused_at_ms: int
    reason: str
    detail: str
    group: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dead-letters``."""
    p = sub.add_parser("dead-letters", help="list refused records with their reasons; replay fixed ones")
    p.add_argument("action", nargs="?", choices=("list", "replay"), default="list")
    add_broker_args(p)
    p.add_argument("--reason", action="append", help="only this reason (repeatable), e.g. handler_error")
    p.add_argument("--since", type=since_ms, metavar="WHEN",
                   help="only dead letters refused since WHEN: an ISO time (2026-12-02T10:00:00Z) or an age"
                   " (30m, 2h, 1d)")
    p.add_argument("--group", help="only those refused by this app (consumer group)")
    p.add_argument("--source-topic", help="only those refused on this topic")
    p.add_argument("--json", action="store_true", help="list as JSON lines")
    p.add_argument("--apply", action="store_true", help="replay: produce them (default: a dry run, sends nothing)")
    p.set_defaults(func=run)


def since_ms(text: str) -> int:
    """``--since``: epoch milliseconds of an ISO time or of now minus an age."""
    match = _DURATION_RE.match(text.strip())
    if match:
        return int((time.time() - int(match.group(1)) * _UNIT_S[match.group(2)]) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO time nor an age like 30m, 2h, 1d") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or +00:00")
    return int(moment.timestamp() * 1000)


def parse(msg: Any) -> DeadLetter | None:
    """A confluent-kafka ``Message`` of the dead-letter topic, or None if it is not one of ours."""
    headers: list[tuple[str, bytes]] = list(msg.headers() or [])
    pit = {k: v for k, v in headers if k.startswith("pit.") and not k.startswith(deadletter.SOURCE_HEADER_PREFIX)}
    if deadletter.REASON not in pit or deadletter.SOURCE_TOPIC not in pit:
        return None
    try:
        value: bytes | None = deadletter.read_dead_letter(msg.value() or b"").value
    except Exception:
        return None
    if deadletter.SOURCE_VALUE_NULL in pit:
        value = None
    source_headers = [(k[len(deadletter.SOURCE_HEADER_PREFIX):], v) for k, v in headers
                      if k.startswith(deadletter.SOURCE_HEADER_PREFIX)]
    text = {k: v.decode("utf-8", "replace") for k, v in pit.items() if k != deadletter.SOURCE_KEY}
    return DeadLetter(
        coordinates=f"{msg.topic()}/{msg.partition()}/{msg.offset()}",
        refused_at_ms=msg.timestamp()[1],
        reason=text[deadletter.REASON],
        detail=text.get(deadletter.DETAIL, ""),
        group=text.get(deadletter.GROUP, ""),
        source_topic=text[deadletter.SOURCE_TOPIC],
        source_partition=int(text.get(deadletter.SOURCE_PARTITION, "-1")),
        source_offset=int(text.get(deadletter.SOURCE_OFFSET, "-1")),
        key=pit.get(deadletter.SOURCE_KEY),
        value=value,
        headers=source_headers,
    )


def select(letters: Iterable[DeadLetter], args: argparse.Namespace) -> list[DeadLetter]:
    """The dead letters the filters select."""
    return [d for d in letters
            if (not args.reason or d.reason in args.reason)
            and (args.since is None or d.refused_at_ms >= args.since)
            and (args.group is None or d.group == args.group)
            and (args.source_topic is None or d.source_topic == args.source_topic)]


def already_replayed(config: ClientConfig, letters: Sequence[DeadLetter]) -> set[str]:
    """Coordinates of the dead letters whose replayed copy is already on its source topic: read
    from the earliest dead letter's time on (a replay always comes after its dead letter)."""
    from confluent_kafka import Consumer, TopicPartition

    done: set[str] = set()
    for topic in sorted({d.source_topic for d in letters}):
        since = min(d.refused_at_ms for d in letters if d.source_topic == topic)
        probe = Consumer({**config, "group.id": "pit-streams-tool-probe", "enable.auto.commit": False})
        try:
            meta = probe.list_topics(topic, timeout=10).topics.get(topic)
            partitions = sorted(meta.partitions) if meta is not None and meta.error is None else []
            starts = probe.offsets_for_times([TopicPartition(topic, p, since) for p in partitions], timeout=10)
        finally:
            probe.close()
        # -1: no record at or after that time on the partition, so no replay either.
        first = {tp.partition: tp.offset for tp in starts}
        for msg in read_topic(config, topic, start=first):
            for name, value in msg.headers() or []:
                if name == REPLAYED_FROM:
                    done.add(value.decode("utf-8", "replace"))
    return done


def replay(config: ClientConfig, letters: Sequence[DeadLetter], *, apply: bool) -> tuple[list[str], int]:
    """Produce each of ``letters`` not yet replayed back to its source (only with ``apply``).
    Returns one line per dead letter and how many were (or would be) sent."""
    from confluent_kafka import Producer

    from pit_streams.contract.partition import murmur2_partition

    done = already_replayed(config, letters)
    lines: list[str] = []
    todo = [d for d in letters if d.coordinates not in done]
    lines += [f"skip      {d.coordinates}: already replayed" for d in letters if d.coordinates in done]
    producer = Producer({**config, "enable.idempotence": True, "acks": "all"}) if apply and todo else None
    counts: dict[str, int] = {}
    errors: list[str] = []
    for d in todo:
        if d.source_topic not in counts and producer is not None:
            meta = producer.list_topics(d.source_topic, timeout=10).topics.get(d.source_topic)
            counts[d.source_topic] = len(meta.partitions) if meta is not None and meta.error is None else 0
        target = f"{d.source_topic}" + (f" (key {d.key.decode('utf-8', 'replace')})" if d.key else "")
        if producer is None:
            lines.append(f"would replay {d.coordinates} [{d.reason}] to {target}")
            continue
        if not counts[d.source_topic]:
            raise ConfigError(f"{d.source_topic} does not exist on the broker: run 'pit-streams topics apply'")
        # The partition its key hashes to, as the worker checks (-1: the client's choice, no key).
        partition = murmur2_partition(d.key, counts[d.source_topic]) if d.key is not None else -1

        def report(err: Any, _msg: Any, coords: str = d.coordinates) -> None:
            if err is not None:
                errors.append(f"{coords}: {err}")

        producer.produce(d.source_topic, value=d.value, key=d.key,
                         headers=[*d.headers, (REPLAYED_FROM, d.coordinates.encode())], on_delivery=report,
                         partition=partition)
        lines.append(f"replayed  {d.coordinates} [{d.reason}] to {target}")
    if producer is not None and producer.flush(30):
        errors.append("some replays were not acknowledged within 30 s: run the replay again (it skips sent ones)")
    if errors:
        raise ConfigError(f"replay failed: {'; '.join(errors[:5])}")
    return lines, len(todo)


def _as_line(d: DeadLetter) -> str:
    when = datetime.fromtimestamp(d.refused_at_ms / 1000).astimezone().isoformat(timespec="seconds")
    key = d.key.decode("utf-8", "replace") if d.key else "-"
    return (f"{d.coordinates} {when} [{d.reason}] {d.source_topic}[{d.source_partition}]@{d.source_offset}"
            f" group={d.group} key={key}: {d.detail}")


def _as_json(d: DeadLetter) -> str:
    import json

    return json.dumps({"dead_letter": d.coordinates, "refused_at_ms": d.refused_at_ms, "reason": d.reason,
                       "detail": d.detail, "group": d.group, "source_topic": d.source_topic,
                       "source_partition": d.source_partition, "source_offset": d.source_offset,
                       "key": d.key.decode("utf-8", "replace") if d.key else None}, sort_keys=True)


def run(args: argparse.Namespace) -> int:
    config = client_config(args)
    letters = select((d for msg in read_topic(config, DEAD_LETTER_TOPIC) if (d := parse(msg)) is not None), args)
    if args.action == "list":
        show = _as_json if args.json else _as_line
        for d in letters:
            print(show(d))
        print(f"{len(letters)} dead letter(s)", file=sys.stderr)
        return 0
    lines, count = replay(config, letters, apply=args.apply)
    for line in lines:
        print(line)
    if args.apply:
        print(f"{count} replayed", file=sys.stderr)
    else:
        print(f"dry run: {count} would be replayed; pass --apply to replay them", file=sys.stderr)
    return 0
