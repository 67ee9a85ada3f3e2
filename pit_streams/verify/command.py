"""``pit-streams verify -A apps.nav``: replay an app's inputs and compare with what it wrote.

Exit 0 only if every output and dead letter caused by the range matches byte for byte and two
replays agree (a handler that reads the clock or randomness is non-deterministic); 1 on any
mismatch; 2 on bad usage. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from pit_streams.app import DEAD_LETTER_TOPIC, App
from pit_streams.transport.base import Record, TopicPartition, Transport
from pit_streams.verify.attest import add_broker_options, add_range_options, offset_range
from pit_streams.verify.ranges import OffsetRange, read_range

if TYPE_CHECKING:  # the replay machinery loads only when a verification runs: the CLI stays light
    from pit_streams.verify.compare import Report

WHOLE = OffsetRange()  # every offset, up to the current end


async def verify_app(app: App, transport: Transport, *, partition: int | None = None,
                     offsets: OffsetRange = WHOLE, signature_ok: Callable[[bytes], bool] | None = None,
                     progress: bool = False) -> Report:
    """Replay ``app``'s inputs (from offset 0 up to ``offsets.end``) twice and compare; the
    transport must be started. Only what inputs in ``offsets`` caused is compared."""
    from pit_streams.verify.compare import compare, first_difference
    from pit_streams.verify.replay import emit_topics, replay

    counts = {t: await transport.partitions_for(t) for t in {*app.reads(), *emit_topics(app), DEAD_LETTER_TOPIC}}
    sources = max(counts[t] for t in app.reads())
    if partition is not None and not 0 <= partition < sources:
        from pit_streams.errors import ConfigError

        raise ConfigError(f"the inputs have {sources} partition(s): pass --partition between 0 and {sources - 1}")
    inputs: dict[TopicPartition, list[Record]] = {}
    for topic in app.reads():
        for p in range(counts[topic]) if partition is None else [partition]:
            tp = TopicPartition(topic, p)
            inputs[tp] = await read_range(transport, tp, OffsetRange(0, offsets.end))
            if progress:
                print(f"pit-streams verify: read {len(inputs[tp])} record(s) of {tp}", file=sys.stderr)
    first = await replay(app, inputs, counts, progress=progress)
    second = await replay(app, inputs, counts)
    outputs = [r for t in emit_topics(app) for p in range(counts[t])
               for r in await transport.read_partition(TopicPartition(t, p), 0)]
    dead = [r for p in range(counts[DEAD_LETTER_TOPIC])
            for r in await transport.read_partition(TopicPartition(DEAD_LETTER_TOPIC, p), 0)]
    report = compare(app, inputs, offsets, first, outputs, dead, signature_ok)
    types = {t: c for spec in app.handlers.values() for t, c in spec.emits.items()}
    report.nondeterministic = first_difference(first, second, types)
    return report


def format_report(report: Report) -> list[str]:
    lines = []
    total = dict.fromkeys(("inputs", "matched", "missing", "unexpected", "different", "dead_letters_matched",
                           "dead_letters_missing", "dead_letters_unexpected", "bad_signatures"), 0)
    for p in sorted(report.partitions.values(), key=lambda p: p.partition):
        for name in total:
            total[name] += getattr(p, name)
        lines.append(
            f"partition {p.partition}: {p.inputs} input(s) replayed, {p.matched} output(s) matched,"
            f" {p.missing} missing, {p.unexpected} unexpected, {p.different} same id different bytes,"
            f" {p.dead_letters_matched} dead"
            f" letter(s) matched ({p.dead_letters_missing} missing, {p.dead_letters_unexpected} unexpected)"
            + (f", {p.bad_signatures} bad signature(s)" if p.bad_signatures else "")
            + f"; input root {p.input_root.hex()}, output root {p.output_root.hex()}")
    for m in report.mismatches:
        lines.append(f"same id, different bytes: {m.event_id} on {m.topic} (caused by {_coord(m.cause)})")
        lines.extend(f"    {d}" for d in m.diff)
    lines.extend(f"missing: {i}" for i in report.missing_ids)
    lines.extend(f"unexpected: {i}" for i in report.unexpected_ids)
    if report.nondeterministic is not None:
        n = report.nondeterministic
        lines.append(f"non-deterministic: two replays of the same input wrote {n.event_id} on {n.topic}"
                     f" (caused by {_coord(n.cause)}) differently; the handler reads the clock or randomness")
        lines.extend(f"    {d}" for d in n.diff)
    lines.append(summary(report, total))
    return lines


def summary(report: Report, total: dict[str, int] | None = None) -> str:
    """The one-line result (``make demo`` prints it)."""
    if total is None:
        total = {"inputs": sum(p.inputs for p in report.partitions.values()),
                 "matched": sum(p.matched for p in report.partitions.values()),
                 "dead_letters_matched": sum(p.dead_letters_matched for p in report.partitions.values())}
    verdict = "OK" if report.ok else "MISMATCH"
    if report.nondeterministic is not None:
        verdict = "NON-DETERMINISTIC"
    return (f"verify {verdict}: {total['inputs']} input(s) replayed, {total['matched']} output(s) and"
            f" {total['dead_letters_matched']} dead letter(s) matched"
            + ("" if report.ok else f", first problem: {_first_problem(report)}"))


def _first_problem(report: Report) -> str:
    if report.nondeterministic is not None:
        return f"non-deterministic output {report.nondeterministic.event_id}"
    if report.mismatches:
        return f"{report.mismatches[0].event_id} differs"
    if report.missing_ids:
        return f"{report.missing_ids[0]} missing"
    if report.unexpected_ids:
        return f"{report.unexpected_ids[0]} unexpected"
    return "bad signature(s)"


def _coord(cause: tuple[str, int, int] | None) -> str:
    return f"{cause[0]}[{cause[1]}]@{cause[2]}" if cause else "an unknown input"


def run_verify(app: App | str, *, broker: str | None = None, transport: str = "confluent",
               partition: int | None = None, offsets: OffsetRange = WHOLE,
               trust_bundle: str | None = None, allow_plaintext: bool | None = None,
               progress: bool = False) -> tuple[int, Report]:
    """Verify ``app`` (or an ``-A`` spec like ``apps.nav``) against the broker: (exit code, report).
    ``summary(report)`` is its one-line result."""
    from pit_streams.loader import load_app
    from pit_streams.transport.factory import make_transport

    target = load_app(app) if isinstance(app, str) else app
    check = _signature_check(target, trust_bundle) if trust_bundle else None
    client = make_transport(transport, broker, client_id=f"{target.name}-verify", allow_plaintext=allow_plaintext)

    async def main() -> Report:
        await client.start(None)
        try:
            return await verify_app(target, client, partition=partition, offsets=offsets, signature_ok=check,
                                    progress=progress)
        finally:
            await client.stop()

    report = asyncio.run(main())
    return (0 if report.ok else 1), report


def verify_line(app: App | str, *, broker: str | None = None, transport: str = "confluent") -> tuple[int, str]:
    """``run_verify`` of everything on the topics, for ``make demo``: (exit code, the one-line result)."""
    code, report = run_verify(app, broker=broker, transport=transport)
    return code, summary(report)


def _signature_check(app: App, path: str) -> Callable[[bytes], bool]:
    """Outputs must be signed by the app itself: its key in the trust bundle."""
    from pit_streams.contract.signing import load_trust_bundle, verify_signature
    from pit_streams.errors import ConfigError
    from pit_streams.verify.replay import parse_envelope

    keys = load_trust_bundle(path)
    if app.name not in keys:
        raise ConfigError(f"trust bundle {path} has no key for {app.name!r}: add its public key")
    key = keys[app.name]

    def ok(value: bytes) -> bool:
        env = parse_envelope(value)
        return env is not None and verify_signature(env, key)

    return ok


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help="replay an app's inputs and compare with its outputs and dead letters")
    p.add_argument("-A", "--app", required=True, help="handler module, e.g. apps.nav (or apps.nav:attr)")
    add_range_options(p)
    add_broker_options(p)
    p.add_argument("--trust-bundle", default=None,
                   help="JSON {owner: PEM public key}: also check that every output is signed by the app")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    offsets = offset_range(args)
    code, report = run_verify(args.app, broker=args.broker, transport=args.transport, partition=args.partition,
                              offsets=offsets, trust_bundle=args.trust_bundle, allow_plaintext=args.allow_plaintext,
                              progress=True)
    for line in format_report(report):
        print(line)
    return code
