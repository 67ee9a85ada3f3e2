"""What a replay would write against what the log holds, matched by derived ``event_id``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message

from pit_streams.app import App
from pit_streams.transport.base import Record, TopicPartition
from pit_streams.verify.diff import field_diff, without_signature
from pit_streams.verify.merkle import RangeHasher
from pit_streams.verify.ranges import OffsetRange, record_leaf
from pit_streams.verify.replay import Coord, Emitted, Replay, dead_letter_of, input_ids, parse_envelope

MAX_DIFFS = 5


@dataclass
class Mismatch:
    event_id: str
    topic: str
    cause: Coord | None
    diff: list[str]


@dataclass
class PartitionReport:
    partition: int
    inputs: int = 0
    matched: int = 0
    missing: int = 0
    unexpected: int = 0
    different: int = 0
    dead_letters_matched: int = 0
    dead_letters_missing: int = 0
    dead_letters_unexpected: int = 0
    bad_signatures: int = 0
    input_root: bytes = b""
    output_root: bytes = b""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.different or self.dead_letters_missing
                    or self.dead_letters_unexpected or self.bad_signatures)


@dataclass
class Report:
    partitions: dict[int, PartitionReport] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)  # the first few, with diffs
    missing_ids: list[str] = field(default_factory=list)
    unexpected_ids: list[str] = field(default_factory=list)
    nondeterministic: Mismatch | None = None

    @property
    def ok(self) -> bool:
        return self.nondeterministic is None and all(p.ok for p in self.partitions.values())

    def part(self, partition: int) -> PartitionReport:
        return self.partitions.setdefault(partition, PartitionReport(partition))


SignatureCheck = Callable[[bytes], bool]


def compare(app: App, inputs: Mapping[TopicPartition, Sequence[Record]], offsets: OffsetRange, replayed: Replay,
            outputs_on_log: Sequence[Record], dead_letters_on_log: Sequence[Record],
            signature_ok: SignatureCheck | None = None) -> Report:
    """The report of one verification. Only what inputs in ``offsets`` caused is compared; the
    inputs before ``offsets.start`` were replayed for the state they leave."""
    report = Report()
    in_range: dict[Coord, Record] = {}
    for tp, records in sorted(inputs.items()):
        part = report.part(tp.partition)
        for rec in records:
            if rec.offset in offsets:
                in_range[(rec.topic, rec.partition, rec.offset)] = rec
                part.inputs += 1
    _input_roots(report, in_range)
    ids = input_ids(inputs)
    types = {t: c for spec in app.handlers.values() for t, c in spec.emits.items()}
    expected = [e for e in replayed.outputs if e.cause in in_range]
    expected_ids = {e.event_id for e in expected}

    on_log: dict[str, list[Record]] = defaultdict(list)
    strays: list[tuple[Record, Coord]] = []
    for rec in outputs_on_log:
        env = parse_envelope(rec.value)
        if env is None:
            continue
        if env.event_id in expected_ids:
            on_log[env.event_id].append(rec)
            continue
        cause = ids.get((env.tenant, env.causation_id))
        if cause in in_range and env.producer == app.producer:
            strays.append((rec, cause))

    hashers: dict[int, RangeHasher] = defaultdict(RangeHasher)
    for want in expected:
        assert want.cause is not None
        part = report.part(want.cause[1])
        copies = on_log.get(want.event_id, [])
        if not copies:
            part.missing += 1
            _note(report.missing_ids, want.event_id)
            continue
        differing = [c for c in copies if without_signature(c.value or b"") != want.value]
        if differing:
            part.different += 1
            if len(report.mismatches) < MAX_DIFFS:
                report.mismatches.append(Mismatch(want.event_id, want.topic, want.cause, field_diff(
                    want.value, without_signature(differing[0].value or b""), types.get(want.topic))))
        else:
            part.matched += 1
        if signature_ok is not None:
            part.bad_signatures += sum(1 for c in copies if not signature_ok(c.value or b""))
        hashers[want.cause[1]].add(record_leaf(copies[0]))
    for rec, cause in strays:
        report.part(cause[1]).unexpected += 1
        env = parse_envelope(rec.value)
        _note(report.unexpected_ids, env.event_id if env else "?")
    for partition, part in report.partitions.items():
        part.output_root = hashers[partition].root()

    _dead_letters(app, report, in_range, replayed.dead_letters, dead_letters_on_log)
    return report


def _input_roots(report: Report, in_range: Mapping[Coord, Record]) -> None:
    hashers: dict[int, RangeHasher] = defaultdict(RangeHasher)
    for coord in sorted(in_range):  # per partition: by topic, then offset
        hashers[coord[1]].add(record_leaf(in_range[coord]))
    for partition, part in report.partitions.items():
        part.input_root = hashers[partition].root()


def _dead_letters(app: App, report: Report, in_range: Mapping[Coord, Record], replayed: Sequence[Emitted],
                  on_log: Sequence[Record]) -> None:
    want = {e.event_id: e for e in replayed if e.cause in in_range}
    seen: set[str] = set()
    for rec in on_log:
        got = dead_letter_of(rec)
        if got is None or got.group != app.group or got.cause not in in_range:
            continue
        assert got.cause is not None
        part = report.part(got.cause[1])
        expected = want.get(got.event_id)
        if expected is None:
            part.dead_letters_unexpected += 1
            _note(report.unexpected_ids, f"{got.event_id} (dead letter {got.reason})")
        elif expected.reason != got.reason or expected.value != without_signature(got.value):
            part.dead_letters_unexpected += 1
            if len(report.mismatches) < MAX_DIFFS:
                diff = [f"pit.reason: {expected.reason!r} != {got.reason!r}"] if expected.reason != got.reason else []
                diff += field_diff(expected.value, without_signature(got.value))
                report.mismatches.append(Mismatch(got.event_id, got.topic, got.cause, diff))
        elif got.event_id not in seen:
            part.dead_letters_matched += 1
        seen.add(got.event_id)
    for event_id, expected in want.items():
        if event_id not in seen:
            assert expected.cause is not None
            report.part(expected.cause[1]).dead_letters_missing += 1
            _note(report.missing_ids, f"{event_id} (dead letter {expected.reason})")


def _note(ids: list[str], event_id: str) -> None:
    if len(ids) < MAX_DIFFS:
        ids.append(event_id)


def first_difference(a: Replay, b: Replay, types: Mapping[str, type[Message]]) -> Mismatch | None:
    """The first record two replays of the same inputs wrote differently (or only one wrote)."""
    for left, right in ((a.outputs, b.outputs), (a.dead_letters, b.dead_letters)):
        other = {e.event_id: e for e in right}
        for e in left:
            twin = other.pop(e.event_id, None)
            if twin is None:
                return Mismatch(e.event_id, e.topic, e.cause, ["written by one replay only"])
            if twin.value != e.value or twin.reason != e.reason:
                diff = [f"pit.reason: {e.reason!r} != {twin.reason!r}"] if twin.reason != e.reason else []
                diff += field_diff(e.value, twin.value, types.get(e.topic))
                return Mismatch(e.event_id, e.topic, e.cause, diff)
        for e in other.values():
            return Mismatch(e.event_id, e.topic, e.cause, ["written by one replay only"])
    return None
