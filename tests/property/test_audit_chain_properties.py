"""Any single change to a random audit chain is detected, at the first bad position."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from audit.chain import GENESIS_HASH, canonical_entry, seal_entry, verify_chain
from audit.events import AuditEvent, LoggedEntry
from broker.errors import AuditIntegrityError
from tests.fakes import audit_head

# Mostly a few awkward strings (empty, quotes, escapes, non-ASCII), now and then any text.
SHORT = st.sampled_from(["", "a", "b", '"', "\\", "é", "x y", "\u2028", "null"]) | st.text(
    max_size=4
)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | SHORT
DETAIL = st.dictionaries(
    st.text(max_size=8),
    JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3),
    max_size=3,
)
EVENTS = st.builds(
    AuditEvent,
    actor=st.sampled_from(["school", "police", "social-care", "ed", "broker"]),
    action=st.sampled_from(
        ["ingest", "link", "lookup", "key_operation", "credential_issued", "credential_revoked"]
    ),
    outcome=st.sampled_from(["permitted", "refused"]),
    reason_code=st.none() | SHORT,
    agreement_id=st.none() | SHORT,
    agreement_version=st.none() | st.integers(1, 5),
    purpose=st.none() | SHORT,
    dataset_id=st.none() | SHORT,
    request_id=st.none() | SHORT,
    detail=DETAIL,
)
EVENT_FIELDS = [f.name for f in dataclasses.fields(AuditEvent)]


@st.composite
def chains(draw: st.DrawFn, min_size: int = 1) -> list[LoggedEntry]:
    events = draw(st.lists(EVENTS, min_size=min_size, max_size=6))
    entries: list[LoggedEntry] = []
    prev = GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        at = draw(st.sampled_from(["2026-11-26T12:00:00+00:00", "2026-11-26T12:00:01+00:00"]))
        entry = seal_entry(seq, at, event, prev)
        entries.append(entry)
        prev = entry.entry_hash
    return entries


def _first_bad(entries: list[LoggedEntry], head: dict[str, Any]) -> int | None:
    try:
        verify_chain(entries, **head)
    except AuditIntegrityError as error:
        return error.location.record
    return None


@settings(max_examples=40, deadline=None)
@given(entries=chains(min_size=0))
def test_an_untouched_chain_verifies(entries: list[LoggedEntry]) -> None:
    verified = verify_chain(entries, **audit_head(entries))
    assert verified.size == len(entries)


@settings(max_examples=60, deadline=None)
@given(entries=chains(), data=st.data())
def test_changing_one_event_field_is_detected_where_it_is(
    entries: list[LoggedEntry], data: st.DataObject
) -> None:
    head = audit_head(entries)
    position = data.draw(st.integers(0, len(entries) - 1))
    name = data.draw(st.sampled_from(EVENT_FIELDS))
    original = entries[position]
    replacement = data.draw(EVENTS)
    changed = dataclasses.replace(original.event, **{name: getattr(replacement, name)})
    # A change must change what was recorded (dict key order, for one, is not recorded).
    assume(
        canonical_entry(original.seq, original.at, changed)
        != canonical_entry(original.seq, original.at, original.event)
    )
    tampered = list(entries)
    tampered[position] = dataclasses.replace(original, event=changed)
    assert _first_bad(tampered, head) == position + 1


@settings(max_examples=60, deadline=None)
@given(entries=chains(), data=st.data())
def test_changing_time_or_hashes_is_detected_where_it_is(
    entries: list[LoggedEntry], data: st.DataObject
) -> None:
    head = audit_head(entries)
    position = data.draw(st.integers(0, len(entries) - 1))
    name = data.draw(st.sampled_from(["at", "prev_hash", "entry_hash", "seq"]))
    original = entries[position]
    if name == "seq":
        value: Any = data.draw(st.integers(-5, 20).filter(lambda s: s != original.seq))
    elif name == "at":
        value = data.draw(SHORT.filter(lambda at: at != original.at))
    else:
        value = data.draw(
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).filter(
                lambda h: h != getattr(original, name)
            )
        )
    tampered = list(entries)
    tampered[position] = dataclasses.replace(original, **{name: value})
    assert _first_bad(tampered, head) == position + 1


@settings(max_examples=60, deadline=None)
@given(entries=chains(), data=st.data())
def test_deleting_one_entry_is_detected_where_it_was(
    entries: list[LoggedEntry], data: st.DataObject
) -> None:
    head = audit_head(entries)
    position = data.draw(st.integers(0, len(entries) - 1))
    tampered = entries[:position] + entries[position + 1 :]
    assert _first_bad(tampered, head) == position + 1


@settings(max_examples=60, deadline=None)
@given(entries=chains(min_size=2), data=st.data())
def test_swapping_two_entries_is_detected_at_the_first(
    entries: list[LoggedEntry], data: st.DataObject
) -> None:
    head = audit_head(entries)
    first = data.draw(st.integers(0, len(entries) - 2))
    second = data.draw(st.integers(first + 1, len(entries) - 1))
    tampered = list(entries)
    tampered[first], tampered[second] = tampered[second], tampered[first]
    assert _first_bad(tampered, head) == first + 1


@settings(max_examples=60, deadline=None)
@given(entries=chains(), data=st.data())
def test_truncating_is_detected_after_the_last_kept(
    entries: list[LoggedEntry], data: st.DataObject
) -> None:
    head = audit_head(entries)
    keep = data.draw(st.integers(0, len(entries) - 1))
    assert _first_bad(entries[:keep], head) == keep + 1


@settings(max_examples=40, deadline=None)
@given(entries=chains(), extra=EVENTS)
def test_appending_without_moving_the_head_is_detected(
    entries: list[LoggedEntry], extra: AuditEvent
) -> None:
    head = audit_head(entries)
    appended = seal_entry(len(entries) + 1, "2026-11-27", extra, entries[-1].entry_hash)
    assert _first_bad([*entries, appended], head) == len(entries) + 1


@settings(max_examples=40, deadline=None)
@given(entries=chains(), other=chains())
def test_a_different_chain_does_not_verify_against_thisaudit_head(
    entries: list[LoggedEntry], other: list[LoggedEntry]
) -> None:
    assume([e.entry_hash for e in entries] != [e.entry_hash for e in other])
    assert _first_bad(other, audit_head(entries)) is not None
