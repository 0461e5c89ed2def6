"""The audit hash chain: a good chain verifies, and each kind of tampering is located."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from audit.chain import (
    GENESIS_HASH,
    Verified,
    canonical_entry,
    chain_hash,
    seal_entry,
    verify_chain,
)
from audit.events import AuditEvent, LoggedEntry
from broker.errors import AuditIntegrityError
from tests.fakes import audit_head

EVENTS = [
    AuditEvent(
        actor="school",
        action="ingest",
        outcome="permitted",
        dataset_id="school-attendance",
        agreement_id="sv-early-identification",
        agreement_version=1,
        detail={"records": 3},
    ),
    AuditEvent(actor="broker", action="link", outcome="permitted", detail={"new_subjects": 2}),
    AuditEvent(
        actor="social-care",
        action="lookup",
        outcome="permitted",
        purpose="safeguarding-triage",
        request_id="req-1",
        detail={"fields": ["attendance_pct"], "subject": "s-1"},
    ),
    AuditEvent(
        actor="police",
        action="lookup",
        outcome="refused",
        reason_code="no_release_for_recipient",
        purpose="safeguarding-triage",
    ),
    AuditEvent(
        actor="operator",
        action="key_operation",
        outcome="permitted",
        detail={"operation": "rotate", "version": 2},
    ),
]


def _chain(events: list[AuditEvent]) -> list[LoggedEntry]:
    entries: list[LoggedEntry] = []
    prev = GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        entry = seal_entry(seq, f"2026-11-26T12:00:{seq:02d}+00:00", event, prev)
        entries.append(entry)
        prev = entry.entry_hash
    return entries


def _bad_at(entries: list[LoggedEntry], head: dict[str, Any]) -> int | None:
    with pytest.raises(AuditIntegrityError) as caught:
        verify_chain(entries, **head)
    error = caught.value
    assert error.code == "audit_tampered"
    assert error.one_line() == error.message
    return error.location.record


def test_good_chain_verifies() -> None:
    entries = _chain(EVENTS)
    assert verify_chain(entries, **audit_head(entries)) == Verified(
        size=len(EVENTS), head_hash=entries[-1].entry_hash
    )


def test_empty_chain_verifies() -> None:
    assert verify_chain([], head_size=0, head_hash=GENESIS_HASH) == Verified(0, GENESIS_HASH)


def test_entries_are_linked() -> None:
    entries = _chain(EVENTS)
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
    assert len({e.entry_hash for e in entries}) == len(entries)


def test_entry_hash_is_domain_separated_sha256() -> None:
    entry = _chain(EVENTS)[0]
    canonical = canonical_entry(entry.seq, entry.at, entry.event)
    assert entry.entry_hash == chain_hash(GENESIS_HASH, canonical)
    assert b'"seq":1' in canonical
    assert b" " not in canonical.replace(b"sv-early-identification", b"")


def test_canonical_entry_is_independent_of_detail_key_order() -> None:
    one = AuditEvent(actor="a", action="lookup", outcome="permitted", detail={"x": 1, "y": 2})
    two = AuditEvent(actor="a", action="lookup", outcome="permitted", detail={"y": 2, "x": 1})
    assert canonical_entry(1, "t", one) == canonical_entry(1, "t", two)


CHANGES: list[tuple[str, Any]] = [
    ("actor", "someone-else"),
    ("action", "ingest"),
    ("outcome", "refused"),
    ("reason_code", "tampered"),
    ("agreement_id", "other-agreement"),
    ("agreement_version", 2),
    ("purpose", "violence-reduction"),
    ("dataset_id", "police-incidents"),
    ("request_id", "req-2"),
    ("detail", {"fields": ["attendance_pct", "sen_support"], "subject": "s-1"}),
]


@pytest.mark.parametrize(("name", "value"), CHANGES)
@pytest.mark.parametrize("position", range(len(EVENTS)))
def test_changing_any_event_field_is_located(name: str, value: Any, position: int) -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    original = entries[position]
    if getattr(original.event, name) == value:
        value = "changed-" + str(value)
    changed_event = dataclasses.replace(original.event, **{name: value})
    entries[position] = dataclasses.replace(original, event=changed_event)
    assert _bad_at(entries, head) == position + 1


@pytest.mark.parametrize("position", range(len(EVENTS)))
def test_changing_time_sequence_or_hashes_is_located(position: int) -> None:
    original = _chain(EVENTS)
    head = audit_head(original)
    for change in (
        {"at": "2026-11-27T00:00:00+00:00"},
        {"prev_hash": "f" * 64},
        {"entry_hash": "e" * 64},
        {"seq": position + 10},
    ):
        entries = list(original)
        entries[position] = dataclasses.replace(entries[position], **change)
        assert _bad_at(entries, head) == position + 1, change


def test_changing_detail_in_place_is_located() -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    entries[2].event.detail["fields"].append("sen_support")
    assert _bad_at(entries, head) == 3


@pytest.mark.parametrize("position", range(len(EVENTS)))
def test_deleting_an_entry_is_located(position: int) -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    del entries[position]
    assert _bad_at(entries, head) == position + 1


@pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 2), (0, 4), (2, 4), (3, 4)])
def test_reordering_is_located(first: int, second: int) -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    entries[first], entries[second] = entries[second], entries[first]
    assert _bad_at(entries, head) == first + 1


@pytest.mark.parametrize("keep", range(len(EVENTS)))
def test_truncating_the_end_is_located(keep: int) -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    assert _bad_at(entries[:keep], head) == keep + 1


def test_appending_without_updating_the_head_is_located() -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    extra = seal_entry(
        len(entries) + 1,
        "2026-11-26T13:00:00+00:00",
        AuditEvent(actor="intruder", action="lookup", outcome="permitted"),
        entries[-1].entry_hash,
    )
    assert _bad_at([*entries, extra], head) == len(entries) + 1


def test_head_hash_must_match() -> None:
    entries = _chain(EVENTS)
    assert _bad_at(entries, {"head_size": len(entries), "head_hash": "0" * 64}) is not None


def test_rewriting_the_tail_with_fresh_hashes_is_still_detected_by_theaudit_head() -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    forged = AuditEvent(actor="police", action="lookup", outcome="permitted")
    entries[-1] = seal_entry(len(entries), entries[-1].at, forged, entries[-2].entry_hash)
    with pytest.raises(AuditIntegrityError):
        verify_chain(entries, **head)


def test_inserting_an_entry_is_located() -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    inserted = seal_entry(
        3,
        "2026-11-26T12:00:02+00:00",
        AuditEvent(actor="intruder", action="lookup", outcome="permitted"),
        entries[1].entry_hash,
    )
    assert _bad_at([*entries[:2], inserted, *entries[2:]], head) == 4


def test_verify_accepts_any_iterable() -> None:
    entries = _chain(EVENTS)
    assert verify_chain(iter(entries), **audit_head(entries)).size == len(entries)


def test_a_rewritten_last_entry_is_located_at_that_entry() -> None:
    entries = _chain(EVENTS)
    head = audit_head(entries)
    forged = AuditEvent(actor="police", action="lookup", outcome="permitted")
    entries[-1] = seal_entry(len(entries), entries[-1].at, forged, entries[-2].entry_hash)
    assert _bad_at(entries, head) == len(entries)
