"""The checker: reads every input, output and dead letter of one scenario run back from Kafka
and says what happened to each input.

Inputs are this run's records on ``pit.v1.exec.trade_fill`` (header ``chaos.run``), judged in
log order by ``bench.chaos.oracle`` (``ok`` = must have one effect). Outputs are the records
on ``pit.v1.acct.nav_update`` whose envelope ``producer`` is the run's app (its group is unique
to the run). Dead letters are the records on ``pit.v1.ops.dead_letter`` whose ``pit.group``
header is the run's group; each names its source with ``pit.source.partition/offset``.

Figures (``lost`` and ``duplicate_effects`` are the targets: 0):

- ``lost``: valid inputs with no output whose ``causation_id`` is their ``event_id``; of them
  ``lost_committed`` lie below the group's committed offset (data loss proper — the rest were
  never committed, i.e. the run ended with them stuck);
- ``duplicate_effects``: distinct output versions beyond one per input, a version being an output
  ``event_id`` with its bytes: a second output id, or the same id with other bytes — the input
  applied again on other state (``reapplied`` counts those inputs; the ids are derived from the
  input's, so a re-application shows only in the bytes);
- ``raw_duplicates``: output records beyond one per distinct output ``event_id`` (at-least-once
  redelivery, allowed; in exactly-once mode the target is 0), ``divergent_duplicates``: those
  whose bytes differ from the first copy. Outputs are read as a ``read_committed`` reader sees
  them, up to the last stable offset (``nav_open_transactions``: partitions whose last stable
  offset is below the high watermark — a transaction left open; ``nav_read_short``: where that
  reader stopped below the end it was given; ``uncommitted_output_records``: records only a
  ``read_uncommitted`` reader sees: aborted or open transactions);
- ``wrong_values``: outputs whose NAV differs from the offline replay (``apps.nav_math``), in
  ``wrong_cells`` distinct cells;
- ``unexpected_outputs``: outputs caused by no valid input of the run (a rejected or duplicate one);
- dead letters: ``dlq_missing`` (expected, absent), ``dlq_wrong_reason``, ``dlq_unexpected`` (for a
  valid or duplicate input), ``dlq_raw_duplicates``, ``dlq_altered`` (value/key not byte-identical);
- ``expect_header_mismatches``: the generator's ``chaos.expect`` differs from the log-order oracle.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent

from bench.chaos.inputs import EXPECT_HEADER, KIND_HEADER, RUN_HEADER, SEQ_HEADER
from bench.chaos.kafka_io import DEAD_LETTER, FILLS, NAV, Kafka
from bench.chaos.oracle import DUP, OK, Oracle, Verdict, snapshot_of
from pit_streams.runtime.deadletter import read_dead_letter

_SAMPLES = 10


@dataclass
class Report:
    input_records: int = 0
    valid_inputs: int = 0
    expected_duplicates: int = 0
    expected_dead_letters: int = 0
    output_records: int = 0
    distinct_outputs: int = 0
    lost: int = 0
    lost_committed: int = 0
    duplicate_effects: int = 0
    raw_duplicates: int = 0
    divergent_duplicates: int = 0
    reapplied: int = 0
    nav_read_short: dict[int, tuple[int, int]] = field(default_factory=dict)
    nav_open_transactions: dict[int, tuple[int, int]] = field(default_factory=dict)
    uncommitted_output_records: int = 0
    wrong_values: int = 0
    wrong_cells: int = 0  # distinct cells (keys) with a wrong value
    unexpected_outputs: int = 0
    dead_letters: int = 0
    dlq_missing: int = 0
    dlq_wrong_reason: int = 0
    dlq_unexpected: int = 0
    dlq_raw_duplicates: int = 0
    dlq_altered: int = 0
    expect_header_mismatches: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    expected_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)

    def sample(self, what: str, text: str) -> None:
        got = self.samples.setdefault(what, [])
        if len(got) < _SAMPLES:
            got.append(text)

    @property
    def contract_ok(self) -> bool:
        """No lost input and no duplicate effect: the scenario's target."""
        return self.lost == 0 and self.duplicate_effects == 0

    @property
    def dead_letters_ok(self) -> bool:
        return not (self.dlq_missing or self.dlq_wrong_reason or self.dlq_unexpected or self.dlq_altered)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def check(kafka: Kafka, *, run_id: str, group: str, producer: str, start: Mapping[str, Mapping[int, int]],
          committed: Mapping[int, int] | None = None, count_uncommitted: bool = False) -> Report:  # fmt: skip
    """``start``: per topic, the offsets the run began at (records before are not the run's).
    ``count_uncommitted``: also read the outputs as ``read_uncommitted`` (exactly-once runs)."""
    rep = Report()
    ends = {t: kafka.end_offsets(t) for t in (FILLS, NAV, DEAD_LETTER)}
    run = run_id.encode()

    # -- inputs, judged in log order ------------------------------------------------------------
    oracle = Oracle()
    verdicts: dict[tuple[int, int], tuple[Verdict, dict[str, bytes], bytes | None, bytes | None]] = {}
    # (tenant, event_id) -> first (partition, offset), verdict: ids are unique per tenant only
    valid: dict[tuple[str, str], tuple[int, int, Verdict]] = {}
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for r in kafka.read(FILLS, start[FILLS], ends[FILLS]):
        if r.header_map.get(RUN_HEADER) != run:
            continue
        rep.input_records += 1
        v = oracle.judge(r.partition, r.key, r.value)
        verdicts[r.partition, r.offset] = (v, r.header_map, r.key, r.value)
        by_kind[r.header_map.get(KIND_HEADER, b"?").decode()][v.expect] += 1
        generated = r.header_map.get(EXPECT_HEADER, b"").decode()
        if generated and generated != v.expect:
            rep.expect_header_mismatches += 1
            rep.sample("expect_header_mismatches", f"p{r.partition}@{r.offset} seq={r.header_map.get(SEQ_HEADER)!r}"
                       f" generated={generated} log-order={v.expect}")  # fmt: skip
        if v.expect == OK:
            valid[_tenant_of(v.key), v.event_id] = (r.partition, r.offset, v)
        elif v.expect == DUP:
            rep.expected_duplicates += 1
        else:
            rep.expected_dead_letters += 1
    rep.valid_inputs = len(valid)
    rep.expected_by_kind = {k: dict(c) for k, c in sorted(by_kind.items())}

    # -- outputs --------------------------------------------------------------------------------
    copies: dict[str, list[bytes]] = defaultdict(list)  # output event_id -> raw values
    caused: dict[tuple[str, str], set[str]] = defaultdict(set)  # input (tenant, id) -> distinct output ids
    versions: dict[tuple[str, str], set[tuple[str, bytes]]] = defaultdict(set)  # input -> (output id, bytes)
    wrong_keys: set[str] = set()

    def ours(r: Any) -> EventEnvelope | None:
        env = EventEnvelope()
        try:
            env.ParseFromString(r.value or b"")
        except DecodeError:
            return None  # not ours (ours are envelopes by construction)
        return env if env.producer == producer else None

    for r in kafka.read(NAV, start[NAV], ends[NAV], isolation="read_committed"):
        env = ours(r)
        if env is None:
            continue
        rep.output_records += 1
        first = not copies[env.event_id]
        copies[env.event_id].append(r.value or b"")
        cause = (env.tenant, env.causation_id)
        versions[cause].add((env.event_id, r.value or b""))
        if not first:
            if r.value != copies[env.event_id][0]:
                rep.divergent_duplicates += 1
                rep.sample("divergent_duplicates", f"output {env.event_id} p{r.partition}@{r.offset}")
            continue
        caused[cause].add(env.event_id)
        source = valid.get(cause)
        if source is None:
            rep.unexpected_outputs += 1
            rep.sample("unexpected_outputs", f"output {env.event_id} caused by {env.causation_id} (no valid input)")
            continue
        nav = NAVUpdateEvent()
        nav.ParseFromString(env.payload)
        if snapshot_of(nav) != source[2].snapshot:
            rep.wrong_values += 1
            wrong_keys.add(source[2].key)
            rep.sample("wrong_values", f"input {env.causation_id} p{source[0]}@{source[1]} key {source[2].key}:"
                       f" got {snapshot_of(nav)}, replay says {source[2].snapshot}")  # fmt: skip
    rep.nav_read_short = dict(kafka.stopped_short)
    hwm = kafka.end_offsets(NAV, isolation="read_uncommitted")
    rep.nav_open_transactions = {p: (ends[NAV].get(p, 0), h) for p, h in hwm.items() if h > ends[NAV].get(p, 0)}
    if count_uncommitted:  # exactly-once: what a read_uncommitted reader sees in addition (aborted, open)
        seen = sum(1 for r in kafka.read(NAV, start[NAV], hwm, isolation="read_uncommitted") if ours(r) is not None)
        rep.uncommitted_output_records = seen - rep.output_records
    rep.distinct_outputs = len(copies)
    rep.wrong_cells = len(wrong_keys)
    rep.raw_duplicates = rep.output_records - rep.distinct_outputs
    for (tenant, event_id), (p, o, _) in valid.items():
        n = len(caused.get((tenant, event_id), ()))
        extra = len(versions.get((tenant, event_id), ())) - n  # same output id, other bytes
        if extra > 0:
            rep.reapplied += 1
            rep.duplicate_effects += extra
            rep.sample("reapplied", f"input {event_id} p{p}@{o}: {extra + n} versions of its {n} output(s)")
        if n == 0:
            rep.lost += 1
            if committed is not None and committed.get(p, 0) > o:
                rep.lost_committed += 1
            where = f" (group committed p{p} up to {committed.get(p)})" if committed is not None else ""
            rep.sample("lost", f"input {event_id} p{p}@{o}{where}")
        elif n > 1:
            rep.duplicate_effects += n - 1
            rep.sample("duplicate_effects", f"input {event_id} p{p}@{o}: {n} distinct outputs")

    # -- dead letters ---------------------------------------------------------------------------
    reasons: Counter[str] = Counter()
    dead: Counter[tuple[int, int]] = Counter()
    grp = group.encode()
    for r in kafka.read(DEAD_LETTER, start[DEAD_LETTER], ends[DEAD_LETTER], isolation="read_committed"):
        if r.header_map.get("pit.group") != grp:
            continue
        rep.dead_letters += 1
        reason = r.header_map.get("pit.reason", b"").decode()
        reasons[reason] += 1
        try:
            h = r.header_map
            src = (int(h.get("pit.source.partition", b"-1")), int(h.get("pit.source.offset", b"-1")))
        except ValueError:
            src = (-1, -1)
        dead[src] += 1
        if dead[src] > 1:
            rep.dlq_raw_duplicates += 1
            continue
        judged = verdicts.get(src) if r.header_map.get("pit.source.topic") == FILLS.encode() else None
        if judged is None:
            rep.dlq_unexpected += 1
            rep.sample("dlq_unexpected", f"dead letter of unknown source {src} reason={reason}")
            continue
        v, headers, key, value = judged
        if v.expect in (OK, DUP):
            rep.dlq_unexpected += 1
            rep.sample("dlq_unexpected", f"p{src[0]}@{src[1]} kind={headers.get(KIND_HEADER)!r} expected {v.expect},"
                       f" dead-lettered {reason}: {r.header_map.get('pit.detail', b'')[:200]!r}")  # fmt: skip
        elif reason != v.expect:
            rep.dlq_wrong_reason += 1
            rep.sample("dlq_wrong_reason", f"p{src[0]}@{src[1]} kind={headers.get(KIND_HEADER)!r} expected {v.expect}"
                       f" ({v.detail[:120]}), got {reason}: {r.header_map.get('pit.detail', b'')[:200]!r}")  # fmt: skip
        try:
            refused = read_dead_letter(r.value or b"").value
        except (ValueError, DecodeError):
            refused = None  # not an envelope of the refused bytes: altered
        if r.header_map.get("pit.source.key") != key or refused != (value or b""):
            rep.dlq_altered += 1
            rep.sample("dlq_altered", f"p{src[0]}@{src[1]}: dead letter key/value differ from the source record")
    for src, (v, headers, _, _) in verdicts.items():
        if v.expect not in (OK, DUP) and src not in dead:
            rep.dlq_missing += 1
            rep.sample("dlq_missing", f"p{src[0]}@{src[1]} kind={headers.get(KIND_HEADER)!r} expected {v.expect}"
                       " has no dead letter")  # fmt: skip
    rep.dlq_reasons = dict(sorted(reasons.items()))
    return rep


def _tenant_of(key: str) -> str:
    """``t/{tenant}/...`` -> tenant."""
    return key.split("/")[1] if key.startswith("t/") else ""
