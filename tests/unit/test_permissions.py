"""The permission matrix: it names exactly the app's routes, and each rule decides as written."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from broker import permissions
from broker.bootstrap import Runtime
from broker.permissions import (
    MATRIX,
    NOT_A_PARTY,
    PUBLIC_OPERATIONS,
    ROLE_NOT_ALLOWED,
    UNAUTHENTICATED,
    UNKNOWN_OPERATION,
    Allow,
    Membership,
    allowed,
    markdown,
)
from broker.principal import Principal, Role
from broker.web.app import create_app
from broker.web.authorise import PrincipalDep
from broker.web.errors import install_error_handlers

SYSTEM = Principal("client-school", Role.SYSTEM, "school")
DPO = Principal("dpo-school", Role.DPO, "school")
IG_LEAD = Principal("ig-school", Role.IG_LEAD, "school")
ADMIN = Principal("admin", Role.ADMIN, None)
PARTIES = {"school": frozenset({"provider", "recipient"}), "ed": frozenset({"provider"})}

RECORDS_AND_RELEASES = {
    "post_batch",
    "post_rekey",
    "post_lookup",
    "post_aggregate",
    "post_subscription",
    "get_subscriptions",
    "delete_subscription",
    "get_notifications",
    "post_acknowledgements",
    "get_deliveries",
}
LIFECYCLE = {
    "upload_draft",
    "validate_document",
    "approve_version",
    "activate_version",
    "suspend",
    "resume",
    "terminate",
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the app's route table does not depend on the database."""
    return f"sqlite:///{tmp_path / 'accord.db'}"


def _names(routes: list[BaseRoute]) -> list[str]:
    # iter_route_contexts walks included routers too (FastAPI keeps them nested).
    return [str(context.name) for context in iter_route_contexts(routes)]


def test_every_route_is_in_the_matrix_and_every_entry_is_a_route(runtime: Runtime) -> None:
    app = create_app(runtime)
    names = _names(app.routes)
    assert len(names) == len(set(names)), "two routes share a name; the matrix could not tell"
    assert set(names) == set(MATRIX)


def test_only_the_declared_public_operations_skip_authentication(runtime: Runtime) -> None:
    app = create_app(runtime)
    api_routes = {
        str(c.name)
        for c in iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute)
    }
    # Public API routes: probes, the log key, signing in; the rest are FastAPI's own pages.
    assert PUBLIC_OPERATIONS & api_routes == {
        "health",
        "ready",
        "telemetry_health",
        "log_key",
        "token",
        "sign_in",
    }
    assert PUBLIC_OPERATIONS - api_routes == {
        "openapi",
        "swagger_ui_html",
        "swagger_ui_redirect",
        "redoc_html",
    }


def test_an_operation_not_in_the_matrix_is_refused_for_everyone() -> None:
    for principal in (None, SYSTEM, DPO, IG_LEAD, ADMIN):
        assert allowed("drop_everything", principal, PARTIES) == UNKNOWN_OPERATION
    assert UNKNOWN_OPERATION.status == 403


def test_public_operations_need_no_principal() -> None:
    assert allowed("health", None, None) == Allow("health")
    assert allowed("log_key", None, None) == Allow("log_key")


def test_no_principal_is_401_on_everything_else() -> None:
    for name in set(MATRIX) - PUBLIC_OPERATIONS:
        assert allowed(name, None, PARTIES) == UNAUTHENTICATED
    assert (UNAUTHENTICATED.status, UNAUTHENTICATED.code) == (401, "unauthenticated")


def test_a_role_the_row_does_not_list_is_403_role_not_allowed() -> None:
    assert allowed("post_lookup", DPO, PARTIES) == ROLE_NOT_ALLOWED
    assert allowed("search", SYSTEM, None) == ROLE_NOT_ALLOWED
    assert allowed("approve_version", ADMIN, PARTIES) == ROLE_NOT_ALLOWED
    assert (ROLE_NOT_ALLOWED.status, ROLE_NOT_ALLOWED.code) == (403, "role_not_allowed")


def test_party_membership_checked_here_refuses_a_stranger_as_if_the_agreement_were_unknown() -> (
    None
):
    stranger = Principal("client-mace", Role.SYSTEM, "mace")
    assert allowed("get_notifications", SYSTEM, PARTIES) == Allow("get_notifications")
    assert allowed("get_notifications", stranger, PARTIES) == NOT_A_PARTY
    # An unknown agreement has no parties: the same answer, so existence does not leak.
    assert allowed("get_notifications", SYSTEM, {}) == NOT_A_PARTY
    assert (NOT_A_PARTY.status, NOT_A_PARTY.code) == (404, "not_a_party")
    # Owed here but not given the parties: refused, never waved through.
    assert allowed("get_notifications", SYSTEM, None) == NOT_A_PARTY


def test_recipient_and_provider_need_that_role_in_the_agreement() -> None:
    ed = Principal("client-ed", Role.SYSTEM, "ed")
    assert allowed("post_lookup", SYSTEM, PARTIES) == Allow("post_lookup")
    assert allowed("post_lookup", ed, PARTIES) == MATRIX["post_lookup"].non_party
    assert allowed("post_batch", ed, PARTIES) == Allow("post_batch")
    assert allowed("post_batch", SYSTEM, {"school": frozenset({"recipient"})}) == (
        MATRIX["post_batch"].non_party
    )


def test_membership_the_service_checks_is_passed_on_when_parties_are_not_read_here() -> None:
    assert allowed("post_lookup", SYSTEM, None) == Allow(
        "post_lookup", service_checks=Membership.RECIPIENT
    )
    assert allowed("suspend", DPO, None) == Allow("suspend", service_checks=Membership.PARTY)


def test_the_administrator_only_oversees() -> None:
    admin_may = {n for n, e in MATRIX.items() if Role.ADMIN in e.roles}
    assert not admin_may & (RECORDS_AND_RELEASES | LIFECYCLE | {"cosign", "search"})
    assert not admin_may & {"subject_report", "recipient_report"}
    assert {"list_agreements", "show_version", "audit_entries", "consistency"} <= admin_may
    # Acting for no agency, the administrator is never bound by membership.
    assert all(MATRIX[n].roles[Role.ADMIN] is Membership.NONE for n in admin_may)


def test_people_never_touch_records_and_ig_leads_never_lifecycle() -> None:
    for name in RECORDS_AND_RELEASES:
        assert set(MATRIX[name].roles) == {Role.SYSTEM}, name
    for name in LIFECYCLE:
        assert set(MATRIX[name].roles) == {Role.DPO}, name


def test_markdown_has_a_row_per_operation() -> None:
    table = markdown()
    lines = table.splitlines()
    assert lines[0] == (
        "| operation | system | dpo | ig_lead | admin | membership checked by | "
        "non-party gets | why |"
    )
    assert len(lines) == 2 + len(MATRIX)
    assert "| `get_notifications` | party | — | — | — | authorise | 404 `not_a_party` |" in table
    assert "| `search` | — | — | yes | — | — | — |" in table


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert permissions.main(["--markdown"]) == 0
    assert capsys.readouterr().out == markdown()
    assert permissions.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_a_principal_is_never_read_where_authorise_did_not_run() -> None:
    bare = FastAPI()

    @bare.get("/who")
    def who(principal: PrincipalDep) -> dict[str, str]:
        return {"subject": principal.subject}

    install_error_handlers(bare)
    with TestClient(bare) as client:
        response = client.get("/who", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
