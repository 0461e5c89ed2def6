"""The permission matrix against the real app: every route, every role, no credentials, a stranger.

For each operation of the app (named by its route) and each caller — nobody,
an agency's system, DPO and IG lead (``social-care``: a party to the agreement
in the path with every party role), the administrator, and the system, DPO
and IG lead of ``mace`` (a party to another agreement only) — the exact status
is asserted: 401 ``unauthenticated`` without credentials, 403
``role_not_allowed`` for a role the matrix refuses, the matrix's membership
refusal (status and code) for the stranger, and for every allowed call the
status an example request gets, which is never 401 or 403: a 2xx, or a domain
answer such as 404, 409 or 422 that only a caller let through can reach.

Paths and methods come from the app's routes; only the example bodies are
written here, one per operation. Everything runs in process (TestClient) on
SQLite and PostgreSQL, and once more over HTTP through a real uvicorn server
on SQLite.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import make_url

from broker.bootstrap import Runtime, build_runtime
from broker.clock import FixedClock
from broker.config import Settings, load_settings
from broker.permissions import MATRIX, CheckedBy, Membership
from broker.principal import Role
from broker.service import Broker
from broker.web.app import create_app
from tests.auth_helpers import agency_headers, person_headers
from tests.conftest import EXAMPLES, POSTGRES_URL, require_postgres
from tests.helpers import EXAMPLE_FILE, IDENTIFIERS

AGREEMENT = "sv-early-identification"
#: A party to AGREEMENT holding every party role (provider, recipient, lead).
PARTY = "social-care"
#: A party to mace-cohort only: a stranger to AGREEMENT.
STRANGER = "mace"
DATASET = "csc-involvement"  # provided by PARTY
PATH_DEFAULTS = {
    "agreement_id": AGREEMENT,
    "dataset_id": DATASET,
    "version": "1",
    "size": "1",
    "subscription_id": "nsub_nothing",
    "notification_id": "ntf_nothing",
    "pair_id": "pm_nothing",
}
UNREFUSED = {401, 403}
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Call:
    """One request: what fills the path, the body, the query; and the status it must get."""

    status: int
    path: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """How an operation is exercised.

    ``allowed`` is sent by every caller the matrix lets through (``by_role``
    changes the status a role gets). ``stranger`` is what the non-party sends
    where the service checks membership: a request that would pass every
    other check, so that membership is what answers.
    """

    allowed: Call
    by_role: Mapping[Role, int] = field(default_factory=dict)
    stranger: Call | None = None


def _draft_version_2(broker: Broker) -> None:
    text = EXAMPLE_FILE.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^version: 1$", "version: 2", text)
    # Approvals sign version 1's content; a new draft starts unapproved (they come last).
    text = text[: text.index("\napprovals:")] + "\n"
    broker.agreements.upload_draft(text, actor=PARTY, today=broker.today())


EXAMPLE_DOCUMENT = EXAMPLE_FILE.read_text(encoding="utf-8")
REASON = {"reason": "the matrix test asks"}
LOOKUP = {"purpose": "safeguarding-triage", "identifiers": IDENTIFIERS}
AGGREGATE = {
    "purpose": "safeguarding-triage",
    "measure": {"count": "subjects", "dataset": "school-attendance"},
    "dimensions": [{"by": "postcode_district"}],
}
SUBSCRIPTION = {
    "purpose": "safeguarding-triage",
    "url": "https://social-care.example.org/accord",
    "rule": {
        "dataset": "police-incidents",
        "all_of": [{"field": "incident_type", "equals": "knife"}],
    },
}

EXAMPLES_BY_OPERATION: dict[str, Example] = {
    # Public: the probes, the log key, signing in, the schema and its pages.
    "health": Example(Call(200)),
    "ready": Example(Call(200)),
    "telemetry_health": Example(Call(200)),
    "log_key": Example(Call(200)),
    "token": Example(Call(400, form={})),
    "sign_in": Example(Call(422, json={})),
    "openapi": Example(Call(200)),
    "swagger_ui_html": Example(Call(200)),
    "swagger_ui_redirect": Example(Call(200)),
    "redoc_html": Example(Call(200)),
    # The agreement register.
    "list_agreements": Example(Call(200)),
    "list_versions": Example(Call(200)),
    "show_version": Example(Call(200)),
    "validate_document": Example(Call(200, json={"document": EXAMPLE_DOCUMENT})),
    # Version 1 is held: a party's upload is a conflict, a stranger's is refused first.
    "upload_draft": Example(Call(409, json={"document": EXAMPLE_DOCUMENT})),
    # Version 1 is active, not a draft (409); the stranger tries the draft version 2
    # (uploaded when the module's broker is made).
    "approve_version": Example(
        Call(
            409,
            json={
                "approver": "A. Tester",
                "role": "Data Protection Officer",
                "approved_on": "2026-11-26",
                "public_key": "A" * 44,
                "signature": "A" * 88,
            },
        ),
        stranger=Call(
            403,
            path={"version": "2"},
            json={
                "approver": "A. Tester",
                "role": "Data Protection Officer",
                "approved_on": "2026-11-26",
                "public_key": "A" * 44,
                "signature": "A" * 88,
            },
        ),
    ),
    # Version 1 is active, not approved: the lead's request is a conflict.
    "activate_version": Example(Call(409)),
    # An empty reason is refused by the service (422) before anything changes.
    "suspend": Example(Call(422, json={"reason": " "}), stranger=Call(403, json=REASON)),
    "resume": Example(Call(409)),
    "terminate": Example(Call(422, json={"reason": " "}), stranger=Call(403, json=REASON)),
    # Records: a batch that is not a list is 422; the stranger's well-formed batch is refused.
    "post_batch": Example(
        Call(422, json={"records": "none"}),
        stranger=Call(403, json={"records": []}, headers={"Idempotency-Key": "matrix-1"}),
    ),
    "post_rekey": Example(
        Call(409, json={"records": []}), stranger=Call(403, json={"records": []})
    ),
    "post_lookup": Example(Call(200, json=LOOKUP)),
    # AGREEMENT releases lookups only, so a party's well-formed request is refused by its
    # release; an empty body (422) shows the caller was let through.
    "post_aggregate": Example(Call(422, json={}), stranger=Call(403, json=AGGREGATE)),
    "post_subscription": Example(Call(422, json={}), stranger=Call(403, json=SUBSCRIPTION)),
    "get_subscriptions": Example(Call(200)),
    "delete_subscription": Example(Call(404)),
    "get_notifications": Example(Call(200)),
    "post_acknowledgements": Example(Call(200, json={"ids": ["ntf_nothing"]})),
    "get_deliveries": Example(Call(404)),
    # The linkage engine's possible-match queue and quality (issue 5).
    "get_possible_matches": Example(Call(200)),
    "post_possible_match_decision": Example(Call(404, json={"decision": "same", "reason": "x"})),
    "get_linkage_quality": Example(Call(200)),
    # The audit log.
    "audit_entries": Example(Call(200)),
    "audit_head": Example(Call(200)),
    "latest_checkpoint": Example(Call(200)),
    "checkpoint_at": Example(Call(200)),
    # Entry 1 is the operator's: an agency is told it is not one of its own (404).
    "inclusion": Example(Call(404, params={"entry": 1}), by_role={Role.ADMIN: 200}),
    "consistency": Example(Call(200, params={"old": 1, "new": 1})),
    "cosign": Example(Call(422, json={"note": "not a signed note"})),
    "search": Example(Call(200, json={})),
    "subject_report": Example(Call(422, json={})),
    "recipient_report": Example(Call(200, params={"agency": "police"})),
    "refusals_report": Example(Call(200)),
    "volume_report": Example(Call(200)),
    "patterns_report": Example(Call(200)),
}


@dataclass(frozen=True)
class Caller:
    """Who sends a request: nobody, or a role at an agency (None for the administrator)."""

    name: str
    role: Role | None = None
    agency: str | None = None

    @property
    def stranger(self) -> bool:
        return self.agency == STRANGER


# Refusals first, so that nothing an allowed call changes can hide one.
CALLERS = (
    Caller("nobody"),
    Caller("stranger-system", Role.SYSTEM, STRANGER),
    Caller("stranger-dpo", Role.DPO, STRANGER),
    Caller("stranger-ig_lead", Role.IG_LEAD, STRANGER),
    Caller("admin", Role.ADMIN),
    Caller("ig_lead", Role.IG_LEAD, PARTY),
    Caller("dpo", Role.DPO, PARTY),
    Caller("system", Role.SYSTEM, PARTY),
)


def _settings(database_url: str, folder: Path) -> Settings:
    """The main example agreement, and mace-cohort so that ``mace`` is a party elsewhere."""
    agreements = folder / "agreements"
    agreements.mkdir()
    for name in (f"{AGREEMENT}.yaml", "mace-cohort.yaml"):
        shutil.copy(EXAMPLES / name, agreements)
    return load_settings(
        database_url=database_url,
        key_file=folder / "keys" / "broker.key",
        agreements_dir=agreements,
    )


def _new_postgres_database() -> Iterator[str]:
    name = f"accord_matrix_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class World:
    """One broker for the whole module: its app, its routes and every caller's headers.

    Shared because making the people's accounts (scrypt) dominates the cost;
    the example calls are chosen so that none changes what another one sees
    (see ``EXAMPLES_BY_OPERATION``), and refusals come first within each test.
    """

    runtime: Runtime
    client: TestClient
    routes: dict[str, RouteContext]
    headers: dict[str, dict[str, str]]


def _world(runtime: Runtime) -> Iterator[World]:
    app = create_app(runtime)
    with TestClient(app) as client:
        headers = {caller.name: _headers(runtime.broker, caller) for caller in CALLERS}
        routes = {str(c.name): c for c in iter_route_contexts(app.routes)}
        _draft_version_2(runtime.broker)
        yield World(runtime, client, routes, headers)


def _world_on(url: str, folder: Path) -> Iterator[World]:
    runtime = build_runtime(_settings(url, folder), clock=FixedClock(START))
    try:
        yield from _world(runtime)
    finally:
        runtime.engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The broker on SQLite, or on a new PostgreSQL database."""
    folder = tmp_path_factory.mktemp("matrix")
    if request.param == "sqlite":
        yield from _world_on(f"sqlite:///{folder / 'accord.db'}", folder)
        return
    require_postgres()
    for url in _new_postgres_database():
        yield from _world_on(url, folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A broker of its own on SQLite, for the run over a real server."""
    folder = tmp_path_factory.mktemp("served")
    yield from _world_on(f"sqlite:///{folder / 'accord.db'}", folder)


def _headers(broker: Broker, caller: Caller) -> dict[str, str]:
    if caller.role is None:
        return {}
    if caller.role is Role.SYSTEM:
        assert caller.agency is not None
        return agency_headers(broker, caller.agency)
    return person_headers(broker, caller.role.value, caller.agency)


def _request(route: RouteContext, call: Call) -> tuple[str, str]:
    methods = sorted(set(route.methods or ()) - {"HEAD"})
    assert len(methods) == 1, f"{route.name} answers {methods}"
    values = {**PATH_DEFAULTS, **call.path}
    path = re.sub(r"{(\w+)(:\w+)?}", lambda m: str(values[m.group(1)]), str(route.path_format))
    return methods[0], path


def _send(client: httpx.Client, route: RouteContext, call: Call, auth: dict[str, str]) -> Response:
    method, path = _request(route, call)
    headers = {**call.headers, **auth}
    if call.form is not None:
        return client.request(method, path, data=dict(call.form), headers=headers)
    return client.request(method, path, json=call.json, params=dict(call.params), headers=headers)


def _expected(operation: str, caller: Caller) -> tuple[int, str | None]:
    """The status and error code the matrix promises; code None means "let through"."""
    entry = MATRIX[operation]
    example = EXAMPLES_BY_OPERATION[operation]
    if entry.public:
        return example.allowed.status, None
    if caller.role is None:
        return 401, "unauthenticated"
    membership = entry.roles.get(caller.role)
    if membership is None:
        return 403, "role_not_allowed"
    if caller.stranger and membership is not Membership.NONE:
        return entry.non_party.status, entry.non_party.code
    return example.by_role.get(caller.role, example.allowed.status), None


def test_every_route_has_an_example_and_a_row(world: World) -> None:
    names = set(world.routes)
    assert names == set(MATRIX)
    assert names == set(EXAMPLES_BY_OPERATION)


def _check_every_caller(
    operation: str, route: RouteContext, client: httpx.Client, headers: dict[str, dict[str, str]]
) -> list[str]:
    example = EXAMPLES_BY_OPERATION[operation]
    seen: list[str] = []
    for caller in CALLERS:
        status, code = _expected(operation, caller)
        call = example.allowed
        if caller.stranger and example.stranger is not None and code is not None:
            call = example.stranger
        response = _send(client, route, call, headers[caller.name])
        seen.append(f"{caller.name}={response.status_code}")
        where = f"{operation} as {caller.name}: {response.text[:300]}"
        assert response.status_code == status, where
        if code is not None:
            assert response.json()["error"]["code"] == code, where
        elif not MATRIX[operation].public:
            # Let through: the answer is the operation's own, never an authorisation refusal.
            assert response.status_code not in UNREFUSED, where
    return seen


@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_each_caller_gets_exactly_what_the_matrix_says(operation: str, world: World) -> None:
    route = world.routes.get(operation)
    assert route is not None, f"the matrix names '{operation}' but the app has no such route"
    seen = _check_every_caller(operation, route, world.client, world.headers)
    assert len(seen) == len(CALLERS)


@pytest.fixture(scope="module")
def live(served: World) -> Iterator[httpx.Client]:
    """The app served by a real uvicorn server on a free port (in a thread)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        served.client.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while not server.started:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.02)
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_over_a_real_server_too(operation: str, served: World, live: httpx.Client) -> None:
    seen = _check_every_caller(operation, served.routes[operation], live, served.headers)
    assert len(seen) == len(CALLERS)


def test_openapi_declares_a_token_only_where_one_is_needed(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    for operation, context in world.routes.items():
        if not isinstance(context.original_route, APIRoute):
            continue
        methods = sorted(set(context.methods or ()) - {"HEAD"})
        declared = schema["paths"][str(context.path_format)][methods[0].lower()]
        needs_token = not MATRIX[operation].public
        assert bool(declared.get("security")) is needs_token, operation


def test_a_route_missing_from_the_matrix_is_refused_to_everyone(world: World) -> None:
    app = create_app(world.runtime)

    def unlisted() -> dict[str, str]:
        return {"reached": "yes"}

    app.add_api_route("/v1/unlisted", unlisted, name="unlisted")
    with TestClient(app) as client:
        for caller in CALLERS:
            response = client.get("/v1/unlisted", headers=world.headers[caller.name])
            assert response.status_code == 403, caller.name
            assert response.json()["error"]["code"] == "operation_not_in_matrix"


def test_the_administrator_oversees_every_agreement_and_the_whole_log(world: World) -> None:
    admin, stranger = world.headers["admin"], world.headers["stranger-system"]
    listed = world.client.get("/v1/agreements", headers=admin).json()
    assert sorted(a["id"] for a in listed) == sorted([AGREEMENT, "mace-cohort"])
    assert all(a["roles"] == [] for a in listed)
    mine = world.client.get("/v1/agreements", headers=stranger).json()
    assert [(a["id"], a["roles"]) for a in mine] == [("mace-cohort", ["lead", "recipient"])]
    everyone = world.client.get("/v1/audit/entries", headers=admin).json()["entries"]
    own = world.client.get("/v1/audit/entries", headers=stranger).json()["entries"]
    assert {"operator", PARTY} <= {e["actor"] for e in everyone}
    assert all(e["actor"] == STRANGER for e in own)
    assert all("subject_id" not in e or e["subject_id"] is None for e in everyone)


@pytest.mark.parametrize(
    "operation", sorted(n for n, e in MATRIX.items() if e.checked_by is CheckedBy.SERVICE)
)
def test_membership_the_service_checks_is_refused_and_audited(operation: str, world: World) -> None:
    """Why those checks stay in the service: each refusal is an audit entry IG leads count."""
    entry, example = MATRIX[operation], EXAMPLES_BY_OPERATION[operation]
    role = next(iter(entry.roles))
    caller = next(c for c in CALLERS if c.stranger and c.role is role)
    broker = world.runtime.broker
    before = broker.audit_head()[0]
    response = _send(
        world.client,
        world.routes[operation],
        example.stranger or example.allowed,
        world.headers[caller.name],
    )
    assert response.status_code == entry.non_party.status, response.text
    added = broker.audit_page(actor=None, after=before, limit=100)
    refusals = [e.event for e in added if e.event.outcome == "refused"]
    assert [(e.actor, e.reason_code) for e in refusals] == [(STRANGER, entry.non_party.code)]
