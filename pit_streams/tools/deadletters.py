"""``pit-streams dead-letters``: list refused records with their reasons; replay fixed ones.

    pit-streams dead-letters [list] [--reason handler_error] [--since 2h] [--group nav-consumer] [--json]
    pit-streams dead-letters replay --reason handler_error --since 2h            # dry run: says what it would do
    pit-streams dead-letters replay --reason handler_error --since 2h --apply    # puts them back

A replay produces the refused record's exact bytes, Kafka key and headers back to its source
topic, on the partition its key hashes to (murmur2, so a ``wrong_partition`` refusal lands right),
with a ``pit.replayed_from`` header naming the dead letter. Only dead letters the framework wrote,
naming a catalogued topic their group reads, are replayed (``replay_checks.py``); the others are
listed as "not replayable". Each refused record is replayed once: dead letters of the same source
record (a rewound batch writes its dead letters again) are replayed as one, and replay first reads
the source topic from a margin before the dead letter's time on, skipping a dead letter whose
``pit.replayed_from`` copy with the same key and value is already there, so running the same replay
twice sends nothing the second time. Should two replays race, the copy keeps its original envelope
``event_id``, so the consumer's dedupe (within ``App(dedupe_ttl=...)``) drops the second one.
"""

from __future__ import annotations

import argparse
import hashlib
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
from pit_streams.tools import replay_checks
from pit_streams.tools.common import ClientConfig, add_broker_args, client_config, read_topic

REPLAYED_FROM = "pit.replayed_from"
_DURATION_RE = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Replays are looked for from this long before their dead letter's time: broker clocks disagree.
SCAN_MARGIN_MS = 5 * 60 * 1000


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
    forged: str = ""  # why it cannot be replayed as it is (not written by the framework, or bare), or ""

    @property
    def source(self) -> tuple[str, int, int]:
        """The refused record's coordinates: dead letters of one record are one replay."""
        return self.source_topic, self.source_partition, self.source_offset


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
    # Both Kafka clients return None for a header sent without a value.
    headers: list[tuple[str, bytes]] = [(k, v if v is not None else b"") for k, v in msg.headers() or []]
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
    partition, offset = _int(text.get(deadletter.SOURCE_PARTITION)), _int(text.get(deadletter.SOURCE_OFFSET))
    omitted = text.get(deadletter.SOURCE_OMITTED)
    letter = DeadLetter(
        coordinates=f"{msg.topic()}/{msg.partition()}/{msg.offset()}",
        refused_at_ms=msg.timestamp()[1],
        reason=text[deadletter.REASON],
        detail=text.get(deadletter.DETAIL, ""),
        group=text.get(deadletter.GROUP, ""),
        source_topic=text[deadletter.SOURCE_TOPIC],
        source_partition=partition,
        source_offset=offset,
        key=pit.get(deadletter.SOURCE_KEY),
        value=value,
        headers=source_headers,
    )
    if omitted is not None:  # a bare dead letter: the record is only at its source coordinates
        return DeadLetter(**{**letter.__dict__, "value": None, "forged": (
            f"it carries no copy of the record ({omitted} bytes left out: too large for the dead-letter topic);"
            f" read it at {letter.source_topic}/{partition}/{offset}")})
    forged = replay_checks.forged(
        msg.key(), msg.value() or b"", headers, source_topic=letter.source_topic, source_partition=partition,
        source_offset=offset, reason=letter.reason, detail=letter.detail, group=letter.group, key=letter.key,
        value=value, source_headers=source_headers)
    return DeadLetter(**{**letter.__dict__, "forged": forged}) if forged else letter


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else -1
    except ValueError:
        return -1


def select(letters: Iterable[DeadLetter], args: argparse.Namespace) -> list[DeadLetter]:
    """The dead letters the filters select."""
    return [d for d in letters
            if (not args.reason or d.reason in args.reason)
            and (args.since is None or d.refused_at_ms >= args.since)
            and (args.group is None or d.group == args.group)
            and (args.source_topic is None or d.source_topic == args.source_topic)]


def _digest(key: bytes | None, value: bytes | None) -> tuple[bytes | None, str | None]:
    return key, hashlib.sha256(value).hexdigest() if value is not None else None


def already_replayed(config: ClientConfig, letters: Sequence[DeadLetter]) -> set[str]:
    """Coordinates of the dead letters whose replayed copy — naming it in ``pit.replayed_from``
    and carrying its key and value — is already on its source topic. Read from a margin before
    the earliest dead letter's time on (a replay comes after its dead letter, give or take skew)."""
    from confluent_kafka import Consumer, TopicPartition

    wanted = {d.coordinates: _digest(d.key, d.value) for d in letters}
    done: set[str] = set()
    for topic in sorted({d.source_topic for d in letters}):
        since = max(0, min(d.refused_at_ms for d in letters if d.source_topic == topic) - SCAN_MARGIN_MS)
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
                if name != REPLAYED_FROM or value is None:
                    continue
                # Anyone can write that header: only a copy of the very record counts.
                named = value.decode("utf-8", "replace")
                if wanted.get(named) == _digest(msg.key(), msg.value()):
                    done.add(named)
    return done


def _replayable(config: ClientConfig, letters: Sequence[DeadLetter], catalog_path: str | None,
                lines: list[str]) -> list[tuple[DeadLetter, list[str]]]:
    """One letter per refused record (with the coordinates of all its copies), eligible ones only;
    the rest are reported in ``lines``."""
    from pit_streams.catalog import load_catalog

    catalogued = set(load_catalog(catalog_path).names())
    by_source: dict[tuple[str, int, int], tuple[DeadLetter, list[str]]] = {}
    reads: dict[tuple[str, str], bool] = {}
    for d in letters:
        if d.forged:
            lines.append(f"not replayable {d.coordinates}: {d.forged}")
            continue
        problem = replay_checks.target_problem(d.source_topic, d.group, catalogued, None)
        if not problem:
            asked = (d.group, d.source_topic)
            if asked not in reads:
                reads[asked] = replay_checks.group_reads(config, d.group, d.source_topic)
            problem = replay_checks.target_problem(d.source_topic, d.group, catalogued, reads[asked])
        if problem:
            lines.append(f"not replayable {d.coordinates}: {problem}")
        elif d.source in by_source:
            first, copies = by_source[d.source]
            copies.append(d.coordinates)
            lines.append(f"skip      {d.coordinates}: the same refused record as {first.coordinates}")
        else:
            by_source[d.source] = (d, [d.coordinates])
    return list(by_source.values())


def replay(config: ClientConfig, letters: Sequence[DeadLetter], *, apply: bool,
           catalog_path: str | None = None) -> tuple[list[str], int]:
    """Produce each of ``letters`` not yet replayed back to its source (only with ``apply``).
    Returns one line per dead letter and how many were (or would be) sent."""
    from confluent_kafka import Producer

    from pit_streams.contract.partition import murmur2_partition

    lines: list[str] = []
    eligible = _replayable(config, letters, catalog_path, lines)
    copies = [DeadLetter(**{**d.__dict__, "coordinates": c}) for d, cs in eligible for c in cs]
    done = already_replayed(config, copies) if copies else set()
    todo = [d for d, cs in eligible if not done.intersection(cs)]
    lines += [f"skip      {d.coordinates}: already replayed" for d, cs in eligible if done.intersection(cs)]
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
    lines, count = replay(config, letters, apply=args.apply, catalog_path=args.catalog)
    for line in lines:
        print(line)
    if args.apply:
        print(f"{count} replayed", file=sys.stderr)
    else:
        print(f"dry run: {count} would be replayed; pass --apply to replay them", file=sys.stderr)
    return 0
