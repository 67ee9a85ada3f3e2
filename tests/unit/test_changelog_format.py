"""The dense dedupe-mark record (issue 12): what it holds, what still reads, and restores in chunks."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.struct_pb2 import ListValue
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Key, derive_event_id, wrap
from pit_streams.state.changelog import MARK_BYTES_PER_RECORD, MARKS_PER_RECORD, mark_records, restore_changes
from pit_streams.state.store import Mark, PartitionStore, mark_key
from pit_streams.transport.base import Record

KEY = Key("demo", "alpha", "0001")
OTHER = Key("other", "alpha", "0001")
TTL = 60_000
OLD, NEW = Timestamp(seconds=1_000), Timestamp(seconds=2_000)


def _records(*pairs: tuple[str, bytes | None]) -> list[Record]:
    return [Record("cl", 0, i, k.encode(), v) for i, (k, v) in enumerate(pairs)]


def _restore(store: PartitionStore, *chunks: list[Record]) -> None:
    for chunk in chunks:
        restored = restore_changes(chunk, TTL)
        assert restored.unreadable == 0
        store.apply(restored.changes, chunk[-1].offset)


def _one(key: Key, marks: list[tuple[str, str, str]], ts: Timestamp) -> tuple[str, bytes]:
    [(clkey, value, chunk)] = mark_records(key, marks, producer="p@1", ts=ts)
    assert chunk == marks
    return clkey, value


def test_a_mark_record_holds_columns_of_ids_per_scope(tmp_path: Path) -> None:
    marks = [("", "a", "d1"), ("s2", "b", "d2"), ("", "c", "d3")]
    clkey, value = _one(KEY, marks, OLD)
    body = ListValue.FromString(EventEnvelope.FromString(value).payload)
    assert [v.string_value for v in body.values] == ["", "a\x1fc", "d1\x1fd3", "s2", "b", "d2"]
    store = PartitionStore(tmp_path / "p0")
    _restore(store, _records((clkey, value)))
    expiry = 1_000_000 + TTL
    assert store.marks([mark_key("demo", s, i) for s, i, _ in marks]) == [
        Mark(expiry, "d1", KEY.text), Mark(expiry, "d2", KEY.text), Mark(expiry, "d3", KEY.text)]
    assert store.marks([mark_key("demo", "s2", "a"), mark_key("demo", "", "b")]) == [None, None]
    assert [(g.changelog_key, g.marks) for g in store.expired_groups(expiry, 10)] == [
        (clkey, [mark_key("demo", "", "a"), mark_key("demo", "", "c"), mark_key("demo", "s2", "b")])]


def _old_format(key: Key, marks: list[tuple[str, str, str]], ts: Timestamp) -> tuple[str, bytes]:
    """A mark record as releases before issue 12 wrote it: a ListValue of [scope, id, digest]."""
    clkey = f"d/{key}/{derive_event_id('p@1', marks[0][1], ts.ToMilliseconds())}"
    body = ListValue()
    for mark in marks:
        body.values.add().list_value.extend(list(mark))
    env = wrap(body, key=key, event_id=derive_event_id("p@1", clkey, 0), producer="p@1", ts=ts)
    return clkey, env.SerializeToString()


def test_old_format_records_still_restore_and_their_tombstones_still_forget(tmp_path: Path) -> None:
    g1, v1 = _old_format(KEY, [("", "gone", "d1"), ("s", "kept", "d2")], OLD)
    g2, v2 = _old_format(KEY, [("", "new", "d3")], NEW)
    store = PartitionStore(tmp_path / "p0")
    _restore(store, _records((g1, v1), (g2, v2)))
    assert store.marks([mark_key("demo", "", "gone"), mark_key("demo", "s", "kept"), mark_key("demo", "", "new")]) == [
        Mark(1_000_000 + TTL, "d1", KEY.text), Mark(1_000_000 + TTL, "d2", KEY.text),
        Mark(2_000_000 + TTL, "d3", KEY.text)]
    _restore(store, [Record("cl", 0, 2, g1.encode(), None)])
    assert store.marks([mark_key("demo", "", "gone"), mark_key("demo", "", "new")]) == [
        None, Mark(2_000_000 + TTL, "d3", KEY.text)]


def test_ids_with_odd_printable_characters_stay_apart(tmp_path: Path) -> None:
    odd = ["x", "x y", "x/y", "x/", "/x", " ", "é✓ 日本", "x\u00a0y", "2:x", "0:"]
    marks = [(scope, event_id, f"d{n}") for n, (scope, event_id) in
             enumerate([("", i) for i in odd] + [("x", "y"), ("x/", ""), ("", "xy")])]
    marks = [m for m in marks if m[1]]  # an event id is never empty (contract)
    store = PartitionStore(tmp_path / "p0")
    _restore(store, _records(_one(KEY, marks, OLD)))
    got = store.marks([mark_key("demo", s, i) for s, i, _ in marks])
    assert [m.digest if m else None for m in got] == [d for _, _, d in marks]
    assert store.marks([mark_key("demo", "", "y"), mark_key("demo", "x", "x y"), mark_key("demo", "", "x\x1fy")]) == [
        None, None, None]


def test_a_tombstone_in_a_later_chunk_forgets_the_marks_unless_made_again(tmp_path: Path) -> None:
    g1, v1 = _one(KEY, [("", "gone", "d1"), ("", "again", "d2")], OLD)
    g2, v2 = _one(KEY, [("", "again", "d2")], NEW)
    g3, v3 = _one(KEY, [("", "stays", "d3")], OLD)
    store = PartitionStore(tmp_path / "p0")
    chunk1 = _records((g1, v1), (g3, v3))
    chunk2 = [Record("cl", 0, 2, g2.encode(), v2), Record("cl", 0, 3, g1.encode(), None)]
    _restore(store, chunk1, chunk2)
    gone, again, stays = (mark_key("demo", "", i) for i in ("gone", "again", "stays"))
    assert store.marks([gone, again, stays]) == [
        None, Mark(2_000_000 + TTL, "d2", KEY.text), Mark(1_000_000 + TTL, "d3", KEY.text)]
    # The forgotten group left the expiry index too: only the live groups are ever swept.
    assert sorted(g.changelog_key for g in store.expired_groups(10**12, 10)) == sorted([g2, g3])
    assert store.changelog_offset == 3
    # The re-made mark's own tombstone, a chunk later again, does forget it.
    _restore(store, [Record("cl", 0, 4, g2.encode(), None)])
    assert store.marks([again, stays]) == [None, Mark(1_000_000 + TTL, "d3", KEY.text)]
    assert [g.changelog_key for g in store.expired_groups(10**12, 10)] == [g3]


def test_a_tombstone_of_a_group_the_store_never_held_changes_nothing(tmp_path: Path) -> None:
    g1, v1 = _one(KEY, [("", "a", "d1")], OLD)
    store = PartitionStore(tmp_path / "p0")
    _restore(store, _records((g1, v1)), [Record("cl", 0, 1, b"d/demo/alpha/0001/unknown", None)])
    assert store.marks([mark_key("demo", "", "a")]) == [Mark(1_000_000 + TTL, "d1", KEY.text)]


def test_two_tenants_with_the_same_id_stay_apart(tmp_path: Path) -> None:
    mine, v1 = _one(KEY, [("", "same", "d1")], OLD)
    theirs, v2 = _one(OTHER, [("", "same", "d2")], OLD)
    store = PartitionStore(tmp_path / "p0")
    _restore(store, _records((mine, v1), (theirs, v2)), [Record("cl", 0, 2, theirs.encode(), None)])
    assert store.marks([mark_key("demo", "", "same"), mark_key("other", "", "same")]) == [
        Mark(1_000_000 + TTL, "d1", KEY.text), None]


def test_a_record_at_the_byte_bound_splits_and_every_part_restores(tmp_path: Path) -> None:
    long_id = "日" * 120  # 360 bytes: the byte bound, not the count bound, splits
    count = MARK_BYTES_PER_RECORD // (len(long_id.encode()) + 6 + 34) + 50
    assert count < MARKS_PER_RECORD
    marks = [("", f"{n:06d}{long_id}", f"{n:032x}") for n in range(count)]
    made = mark_records(KEY, marks, producer="p@1", ts=OLD)
    assert len(made) == 2
    assert [m for _, _, chunk in made for m in chunk] == marks
    assert all(len(value) <= MARK_BYTES_PER_RECORD + 1024 for _, value, _ in made)
    store = PartitionStore(tmp_path / "p0")
    _restore(store, _records(*((clkey, value) for clkey, value, _ in made)))
    got = store.marks([mark_key("demo", "", i) for _, i, _ in marks])
    assert [m.digest if m else None for m in got] == [d for _, _, d in marks]


def test_a_record_holds_at_most_marks_per_record() -> None:
    marks = [("", f"id{n}", "d") for n in range(MARKS_PER_RECORD + 1)]
    assert [len(chunk) for _, _, chunk in mark_records(KEY, marks, producer="p@1", ts=OLD)] == [MARKS_PER_RECORD, 1]


def test_a_malformed_dense_record_is_unreadable_not_half_restored() -> None:
    body = ListValue()
    for text in ("", "a\x1fb", "d1"):  # two ids, one digest
        body.values.add().string_value = text
    env = wrap(body, key=KEY, event_id="e", producer="p@1", ts=OLD)
    restored = restore_changes(_records(("d/demo/alpha/0001/x", env.SerializeToString())), TTL)
    assert restored.unreadable == 1 and not restored.changes.mark_groups


def test_a_tombstone_spares_a_mark_a_later_group_made_again_in_an_earlier_chunk(tmp_path: Path) -> None:
    g1, v1 = _one(KEY, [("", "gone", "d1"), ("", "again", "d2")], OLD)
    g2, v2 = _one(KEY, [("", "again", "d2")], NEW)
    store = PartitionStore(tmp_path / "p0")
    # Both groups are in the store before the tombstone arrives: the store's own mark decides.
    _restore(store, _records((g1, v1), (g2, v2)), [Record("cl", 0, 2, g1.encode(), None)])
    assert store.marks([mark_key("demo", "", "gone"), mark_key("demo", "", "again")]) == [
        None, Mark(2_000_000 + TTL, "d2", KEY.text)]


def test_a_store_of_the_previous_layout_is_cleared_on_open(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    options = Options(raw_mode=True)
    options.create_if_missing(True)
    old = Rdict(str(tmp_path / "p0"), options)
    old[b"v"] = b"2"
    old[b"x/000000000001000/d/g"] = b'["d/4:demo0:a"]'  # a JSON index entry this layout cannot read
    old[b"c"] = b"7"
    old.close()
    store = PartitionStore(tmp_path / "p0")
    assert store.changelog_offset == -1 and store.expired_groups(10**12, 10) == []


def test_marked_ids_reads_both_formats() -> None:
    from pit_streams.state.changelog import marked_ids

    marks = [("", "a", "d1"), ("s2", "b", "d2"), ("", "c", "d3")]
    for _, value in (_one(KEY, marks, OLD), _old_format(KEY, marks, OLD)):
        assert sorted(marked_ids(EventEnvelope.FromString(value).payload)) == [("", "a"), ("", "c"), ("s2", "b")]
    assert marked_ids(b"\xff not a ListValue") == []
