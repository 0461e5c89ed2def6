"""AuditQuery validation, and SqlAuditQueries on a SQLite database: filters, scope, pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

from audit.events import AuditEvent, LoggedEntry
from audit.queries import AuditQuery, normalise_time
from broker.db import tables  # noqa: F401 - registers the tables on the metadata
from broker.db.audit_queries import SqlAuditQueries
from broker.db.repositories import SqlAudit
from broker.errors import ValidationError

AGREEMENT = "sv-early-identification"


def _entry(seq: int, at: str, **event: Any) -> LoggedEntry:
    fields: dict[str, Any] = {"actor": "social-care", "action": "lookup", "outcome": "permitted"}
    fields.update(event)
    return LoggedEntry(seq=seq, at=at, event=AuditEvent(**fields), leaf_hash=f"{seq:064x}")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"limit": 0}, "page_size_invalid"),
        ({"limit": 1001}, "page_size_invalid"),
        ({"limit": -5}, "page_size_invalid"),
        ({"after": -1}, "page_invalid"),
        ({"since": "2026-11-27", "until": "2026-11-25"}, "time_range_invalid"),
        ({"since": "yesterday"}, "time_range_invalid"),
        ({"until": "2026-13-45T00:00:00"}, "time_range_invalid"),
        ({"purpose": "x" * 65}, "filter_invalid"),
        ({"subject_ids": tuple(f"sub_{i}" for i in range(101))}, "filter_invalid"),
    ],
)
def test_invalid_queries_are_refused_with_their_code(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AuditQuery(**changes).validate()
    assert caught.value.code == code


def test_times_are_normalised_to_the_logs_form() -> None:
    checked = AuditQuery(since="2026-11-26", until="2026-11-26", limit=1000).validate()
    assert checked.since == "2026-11-26T00:00:00.000000+00:00"
    # A bare date as the upper bound includes that whole day.
    assert checked.until == "2026-11-27T00:00:00.000000+00:00"
    assert normalise_time("2026-11-26T13:00:00+01:00", "since", end_of_day=False) == (
        "2026-11-26T12:00:00.000000+00:00"
    )
    assert normalise_time("2026-11-26T12:00:00Z", "until", end_of_day=True) == (
        "2026-11-26T12:00:00.000000+00:00"
    )
    assert AuditQuery(since="2026-11-26T10:00:00", until="2026-11-26T10:00:00").validate()


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        audit = SqlAudit(conn)
        for entry in ENTRIES:
            audit.append(entry)
        yield conn
    engine.dispose()


ENTRIES = [
    _entry(
        1,
        "2026-11-24T09:00:00.000000+00:00",
        action="ingest",
        actor="school",
        agreement_id=AGREEMENT,
        agreement_version=1,
    ),
    _entry(
        2,
        "2026-11-25T09:00:00.000000+00:00",
        agreement_id=AGREEMENT,
        agreement_version=1,
        purpose="safeguarding-triage",
        detail={"subject": "sub_a", "matched": True},
    ),
    _entry(
        3,
        "2026-11-25T10:00:00.000000+00:00",
        actor="police",
        agreement_id=AGREEMENT,
        purpose="violence-reduction",
        detail={"subject": "sub_a", "matched": True},
    ),
    _entry(
        4,
        "2026-11-26T09:00:00.000000+00:00",
        actor="police",
        agreement_id=AGREEMENT,
        outcome="refused",
        reason_code="purpose_unknown",
    ),
    _entry(
        5,
        "2026-11-26T10:00:00.000000+00:00",
        actor="vru",
        agreement_id="other",
        detail={"subject": "sub_b", "matched": True},
    ),
    _entry(
        6,
        "2026-11-26T11:00:00.000000+00:00",
        actor="operator",
        action="credential_issued",
        detail={"agency": "vru"},
    ),
]


def _seqs(conn: Connection, **filters: Any) -> list[int]:
    query = AuditQuery(**filters).validate()
    return [e.seq for e in SqlAuditQueries(conn).search(query)]


def test_each_filter_narrows_the_search(connection: Connection) -> None:
    assert _seqs(connection) == [1, 2, 3, 4, 5, 6]
    assert _seqs(connection, agency="police") == [3, 4]
    assert _seqs(connection, agreement_id="other") == [5]
    assert _seqs(connection, purpose="violence-reduction") == [3]
    assert _seqs(connection, action="ingest") == [1]
    assert _seqs(connection, outcome="refused") == [4]
    assert _seqs(connection, reason_code="purpose_unknown") == [4]
    assert _seqs(connection, subject_ids=("sub_a",)) == [2, 3]
    assert _seqs(connection, subject_ids=("sub_a", "sub_b"), agency="vru") == [5]
    assert _seqs(connection, subject_ids=()) == []
    assert _seqs(connection, since="2026-11-25", until="2026-11-25") == [2, 3]
    assert _seqs(connection, since="2026-11-26T10:00:00Z") == [5, 6]
    assert _seqs(connection, until="2026-11-26T10:00:00Z") == [1, 2, 3, 4]


def test_scope_keeps_the_agreements_and_the_viewers_own_entries(connection: Connection) -> None:
    assert _seqs(connection, scope_agreement_ids=(AGREEMENT,), scope_actor="vru") == [1, 2, 3, 4, 5]
    assert _seqs(connection, scope_agreement_ids=("other",), scope_actor="nobody") == [5]
    assert _seqs(connection, scope_agreement_ids=(), scope_actor="operator") == [6]
    assert _seqs(connection, scope_agreement_ids=(), scope_actor=None) == []


def test_pages_follow_seq_order(connection: Connection) -> None:
    assert _seqs(connection, limit=2) == [1, 2]
    assert _seqs(connection, after=2, limit=2) == [3, 4]
    assert _seqs(connection, after=6) == []
    found = SqlAuditQueries(connection).search(AuditQuery(subject_ids=("sub_a",)).validate())
    assert found[0].event.detail == {"subject": "sub_a", "matched": True}


def test_entries_between(connection: Connection) -> None:
    queries = SqlAuditQueries(connection)
    assert [e.seq for e in queries.entries_between(None, None)] == [1, 2, 3, 4, 5, 6]
    between = queries.entries_between(
        "2026-11-25T00:00:00.000000+00:00", "2026-11-26T10:00:00.000000+00:00"
    )
    assert [e.seq for e in between] == [2, 3, 4]
    assert [e.seq for e in queries.entries_between(None, None, actor="police")] == [3, 4]
