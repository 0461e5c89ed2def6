"""Properties of ``broker.permissions.allowed`` over random principals, operations and parties."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.permissions import (
    MATRIX,
    Allow,
    CheckedBy,
    Membership,
    Refusal,
    allowed,
)
from broker.principal import AGENCY_ROLES, Principal, Role

AGENCIES = ["school", "police", "social-care", "ed", "mace", "stranger"]
PARTY_ROLES = ["provider", "recipient", "lead"]
OPERATIONS = st.sampled_from(sorted(MATRIX)) | st.text(min_size=1, max_size=30)
REFUSAL_CODES = {
    "unauthenticated",
    "role_not_allowed",
    "not_a_party",
    "operation_not_in_matrix",
} | {e.non_party.code for e in MATRIX.values()}


@st.composite
def principals(draw: st.DrawFn) -> Principal | None:
    role = draw(st.sampled_from([*Role, None]))
    if role is None:
        return None
    agency = draw(st.sampled_from(AGENCIES)) if role in AGENCY_ROLES else None
    return Principal(subject=draw(st.text(min_size=1, max_size=12)), role=role, agency=agency)


PARTIES: st.SearchStrategy[Mapping[str, frozenset[str]] | None] = st.none() | st.dictionaries(
    st.sampled_from(AGENCIES),
    st.frozensets(st.sampled_from(PARTY_ROLES), min_size=1),
    max_size=len(AGENCIES),
)


@settings(max_examples=1000)
@given(operation=OPERATIONS, principal=principals(), parties=PARTIES)
def test_never_allows_what_the_table_does_not_list(
    operation: str,
    principal: Principal | None,
    parties: Mapping[str, frozenset[str]] | None,
) -> None:
    decision = allowed(operation, principal, parties)
    entry = MATRIX.get(operation)
    if isinstance(decision, Refusal):
        assert decision.code in REFUSAL_CODES
        assert decision.status in {401, 403, 404}
        assert entry is None or not entry.public
        return
    assert isinstance(decision, Allow)
    assert decision.operation == operation
    assert entry is not None
    if entry.public:
        return
    assert principal is not None
    assert principal.role in entry.roles


@settings(max_examples=1000)
@given(operation=OPERATIONS, principal=principals(), parties=PARTIES)
def test_membership_is_required_where_declared(
    operation: str,
    principal: Principal | None,
    parties: Mapping[str, frozenset[str]] | None,
) -> None:
    decision = allowed(operation, principal, parties)
    entry = MATRIX.get(operation)
    if entry is None or entry.public or principal is None or principal.role not in entry.roles:
        return
    membership = entry.roles[principal.role]
    if membership is Membership.NONE:
        assert decision == Allow(operation)
        return
    if parties is None:
        # Without the agreement's parties only the service can still check it.
        if entry.checked_by is CheckedBy.SERVICE:
            assert decision == Allow(operation, service_checks=membership)
        else:
            assert decision == entry.non_party
        return
    roles_there = parties.get(principal.agency or "")
    holds = roles_there is not None and (
        membership is Membership.PARTY or membership.value in roles_there
    )
    assert decision == (Allow(operation) if holds else entry.non_party)


@given(operation=st.sampled_from(sorted(MATRIX)), parties=PARTIES)
def test_without_credentials_only_public_operations_are_allowed(
    operation: str, parties: Mapping[str, frozenset[str]] | None
) -> None:
    decision = allowed(operation, None, parties)
    if MATRIX[operation].public:
        assert decision == Allow(operation)
    else:
        assert isinstance(decision, Refusal)
        assert (decision.status, decision.code) == (401, "unauthenticated")


@given(operation=st.text(max_size=40), principal=principals(), parties=PARTIES)
def test_an_operation_missing_from_the_matrix_is_refused(
    operation: str, principal: Principal | None, parties: Mapping[str, frozenset[str]] | None
) -> None:
    if operation in MATRIX:
        return
    decision = allowed(operation, principal, parties)
    assert isinstance(decision, Refusal)
    assert decision.code == "operation_not_in_matrix"
