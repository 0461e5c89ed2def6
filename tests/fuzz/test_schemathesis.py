"""Schemathesis against the live OpenAPI schema of a running broker, as every role.

For each operation in ``/openapi.json`` Hypothesis draws cases from
schemathesis's strategies (valid and invalid data; path parameters either
generated or the example agreement's real ids, so that requests get past the
404s) and sends each as a role drawn from the server's role headers. Every
response must pass ``not_a_server_error``, ``status_code_conformance``,
``content_type_conformance`` and ``response_schema_conformance``. Failures are
collected across all operations and reported together; the counts (cases per
operation, status codes seen) are printed.

CI: ``FUZZ_EXAMPLES`` cases per operation (default 200), SQLite. ``make fuzz``
sets ``ACCORD_FUZZ=1`` (2,000 per operation, and PostgreSQL as well).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (  # type: ignore[attr-defined]
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode

from tests.conftest import _fresh_postgres, require_postgres
from tests.fuzz.conftest import LiveServer, start_server, stop_server
from tests.helpers import AGREEMENT

LONG = os.environ.get("ACCORD_FUZZ") == "1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000" if LONG else "200"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Real ids, so that a share of the cases reach the code behind the 404s.
KNOWN_PATH = {
    "agreement_id": AGREEMENT,
    "dataset_id": "school-attendance",
    "version": 1,
    "size": 1,
}


@dataclass
class Tally:
    """What one operation produced: cases sent, statuses seen, failures (deduplicated)."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_role: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    # An operation with no parameters and no body has only as many cases as roles.
    has_input: bool = True


def _strategy(operation: Any) -> st.SearchStrategy[Any]:
    names = {p.name for p in operation.path_parameters}
    known = {k: v for k, v in KNOWN_PATH.items() if k in names}
    choices = [
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    ]
    if known:
        choices.append(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=known)
        )
    return st.one_of(choices)


def _exercise(operation: Any, server: LiveServer, examples: int, tally: Tally) -> None:
    held = server.fresh_roles()
    roles = sorted(held)
    session = requests.Session()

    @settings(
        max_examples=examples,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not LONG,
    )
    @given(case=_strategy(operation), role=st.sampled_from(roles))
    def run(case: Any, role: str) -> None:
        headers = {**held[role]}
        try:
            response = case.call(base_url=server.base_url, session=session, headers=headers)
        except requests.RequestException as failed:
            tally.failures.setdefault(type(failed).__name__, "the request failed")
            return
        tally.cases += 1
        tally.statuses[response.status_code] += 1
        tally.by_role[role] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as failed:
            found = failed.exceptions if isinstance(failed, FailureGroup) else (failed,)
            for one in found:
                key = f"{case.method} {response.status_code} {one.title}"
                sent = f"path {case.path_parameters!r} query {case.query!r}"[:300]
                detail = f"{role}: {sent} -> {response.text[:300]}"
                tally.failures.setdefault(key, detail)

    run()


def _report(tallies: dict[str, Tally], server: LiveServer) -> str:
    lines = [f"\nschemathesis: {len(tallies)} operations, roles {sorted(server.roles)}"]
    for role, why in server.uncovered.items():
        lines.append(f"  role {role} not covered: {why}")
    total: Counter[int] = Counter()
    for label, tally in sorted(tallies.items()):
        total.update(tally.statuses)
        codes = " ".join(f"{code}x{n}" for code, n in sorted(tally.statuses.items()))
        lines.append(f"  {label}: {tally.cases} cases; {codes}")
    lines.append(
        f"  all: {sum(total.values())} cases; "
        + " ".join(f"{code}x{n}" for code, n in sorted(total.items()))
    )
    return "\n".join(lines)


def fuzz_server(server: LiveServer, examples: int) -> dict[str, Tally]:
    """Every operation of the live schema, ``examples`` cases each; the tallies by operation."""
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    tallies = {operation.label: Tally() for operation in operations}
    for operation in operations:
        groups = (operation.path_parameters, operation.query, operation.body)
        tallies[operation.label].has_input = any(len(list(group)) for group in groups)
    # One operation at a time: Hypothesis's caches are not safe across threads on Python 3.11
    # (tried: an AST recursion SystemError and a cache KeyError under a thread pool).
    for operation in operations:
        _exercise(operation, server, examples, tallies[operation.label])
    return tallies


def _assert_clean(tallies: dict[str, Tally], server: LiveServer, examples: int) -> None:
    print(_report(tallies, server))
    failures = {
        f"{label}: {key}": detail
        for label, tally in tallies.items()
        for key, detail in tally.failures.items()
    }
    logged = "\n".join(server.unexpected_errors()[:20])
    assert not failures, "\n".join(f"{key}\n    {detail}" for key, detail in failures.items()) + (
        f"\nserver log:\n{logged}"
    )
    assert len(tallies) >= 30
    for label, tally in tallies.items():
        # Generation may repeat a case; Hypothesis still runs close to max_examples.
        wanted = examples * 0.9 if tally.has_input else len(server.roles)
        assert tally.cases >= wanted, f"{label}: only {tally.cases} cases"
        assert not [s for s in tally.statuses if s >= 500], label
    assert set(server.roles) >= {"system:school", "ig_lead:social-care", "dpo:police"}


def test_live_schema_sqlite(live_sqlite: LiveServer) -> None:
    _assert_clean(fuzz_server(live_sqlite, EXAMPLES), live_sqlite, EXAMPLES)


@pytest.fixture
def live_postgres(tmp_path: Path) -> Iterator[LiveServer]:
    """A server on a fresh PostgreSQL database (``make fuzz`` only)."""
    require_postgres()
    databases = _fresh_postgres()
    url = next(databases)
    server = start_server(url, tmp_path)
    try:
        yield server
    finally:
        stop_server(server)
        databases.close()


@pytest.mark.postgres
@pytest.mark.fuzz_long
@pytest.mark.skipif(not LONG, reason="the PostgreSQL run is part of make fuzz (ACCORD_FUZZ=1)")
def test_live_schema_postgres(live_postgres: LiveServer) -> None:
    _assert_clean(fuzz_server(live_postgres, EXAMPLES), live_postgres, EXAMPLES)


def run_stateful(server: LiveServer, role: str, examples: int) -> Counter[str]:
    """Schemathesis's link-following phase: sequences of calls joined by the links it infers.

    Returns how many calls each operation received.
    """
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    base_url = server.base_url
    calls: Counter[str] = Counter()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            calls[case.operation.label] += 1
            return {"base_url": base_url, "headers": server.fresh_roles()[role]}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            kwargs.pop("additional_checks", None)
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            stateful_step_count=6,
        )
    )
    return calls


@pytest.mark.fuzz_long
@pytest.mark.skipif(not LONG, reason="the stateful phase is part of make fuzz (ACCORD_FUZZ=1)")
@pytest.mark.parametrize("role", ["system:social-care", "dpo:police"])
def test_stateful_links_sqlite(live_sqlite: LiveServer, role: str) -> None:
    calls = run_stateful(live_sqlite, role, int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "100")))
    print(f"\nstateful as {role}: {sum(calls.values())} calls over {len(calls)} operations")
    assert len(calls) >= 5
