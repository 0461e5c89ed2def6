"""The shipped example agreements: each loads, is approved by every party, and does what it says.

The examples are what a DPO reads first, so they must be complete and correct:
their approvals verify, their own policy tests pass, between them they use
every output kind, and none releases an identifier that only links records.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from pathlib import Path
from typing import get_args

import pytest

import agreements
from agreements.approval import check_approvals, unapproved_parties
from agreements.loader import load_agreement, parse_agreement
from agreements.models import Agreement, OutputKind
from agreements.policytests import run_policy_tests
from broker.errors import AgreementError

EXAMPLES = Path(agreements.__file__).resolve().parent / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))
# The day the demonstration approvals were made; loading on a fixed day keeps these
# tests from failing merely because the calendar moved past an expiry date.
TODAY = date(2026, 11, 26)
NEW_EXAMPLES = (
    "ed-sharps-notification",
    "mace-cohort",
    "education-welfare-absence",
    "partnership-dashboard",
)
LINK_ONLY = {"given_name", "family_name", "nhs_number", "upn"}
COARSE_FORMS = {"age_band", "postcode_district", "month", "flag"}
# A different form each released form can change to and stay valid for the same field,
# so that the only thing an edit breaks is the approvals.
OTHER_FORM = {
    "age_band": "age",
    "age": "age_band",
    "postcode_district": "postcode_sector",
    "postcode_sector": "postcode_district",
    "month": "age_band",
    "flag": "as_supplied",
}
FORM_IN_TEXT = re.compile(r"\bform: (age_band|age|postcode_district|postcode_sector|month|flag)\b")


def _load(path: Path) -> Agreement:
    return load_agreement(path, today=TODAY)


def _ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def _months_after(start: date, months: int) -> date:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def test_the_examples_are_all_there() -> None:
    names = {path.stem for path in FILES}
    assert {"sv-early-identification", *NEW_EXAMPLES} <= names


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_example_loads_as_an_active_agreement_named_after_its_file(path: Path) -> None:
    agreement = _load(path)
    assert agreement.id == path.stem
    assert agreement.status == "active"
    assert agreement.effective_from < agreement.expires_on


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_every_party_approved_and_every_approval_verifies(path: Path) -> None:
    agreement = _load(path)
    checks = check_approvals(agreement)
    assert [c.problem for c in checks if c.problem is not None] == []
    assert sorted(c.party for c in checks) == sorted(p.id for p in agreement.parties)
    assert unapproved_parties(agreement) == []


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_every_policy_test_passes(path: Path) -> None:
    results = run_policy_tests(_load(path))
    assert results
    failed = [f"{r.test.name}: {r.explanation}" for r in results if not r.passed]
    assert failed == []


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_each_example_tests_at_least_two_permits_and_two_coded_refusals(path: Path) -> None:
    tests = _load(path).policy_tests
    permits = [t for t in tests if t.expect == "permit"]
    refusals = [t for t in tests if t.expect == "refuse"]
    assert len(permits) >= 2
    assert len(refusals) >= 2
    # A refusal without its code would pass for the wrong reason.
    assert all(t.code for t in refusals)


def test_the_main_example_covers_each_kind_of_refusal() -> None:
    agreement = _load(EXAMPLES / "sv-early-identification.yaml")
    codes = {t.code for t in agreement.policy_tests if t.expect == "refuse"}
    assert {
        "agency_not_recipient",
        "field_not_permitted",
        "purpose_unknown",
        "output_not_allowed",
        "agreement_expired",
    } <= codes
    assert sum(t.expect == "permit" for t in agreement.policy_tests) >= 4
    assert sum(t.expect == "refuse" for t in agreement.policy_tests) >= 4


def test_the_examples_use_every_output_kind() -> None:
    used = {kind for path in FILES for r in _load(path).releases for kind in r.outputs}
    assert used == set(get_args(OutputKind))


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_no_release_names_an_identifier_that_only_links(path: Path) -> None:
    named = {f.field for release in _load(path).releases for f in release.fields}
    assert named & LINK_ONLY == set()


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_aggregates_are_coarse_and_withhold_small_counts(path: Path) -> None:
    for release in _load(path).releases:
        if "aggregate" not in release.outputs:
            continue
        assert release.minimum_cell_size >= 5
        for released in release.fields:
            coarse = released.form in COARSE_FORMS
            assert coarse or (released.field == "sex" and released.form == "as_supplied"), released


def test_the_dashboard_releases_aggregates_only() -> None:
    agreement = _load(EXAMPLES / "partnership-dashboard.yaml")
    assert {kind for r in agreement.releases for kind in r.outputs} == {"aggregate"}


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_every_party_has_one_fictional_contact_and_every_dataset_a_retention(path: Path) -> None:
    agreement = _load(path)
    assert sorted(c.party for c in agreement.contacts) == sorted(p.id for p in agreement.parties)
    # Reserved example domains only: the examples must never reach a real mailbox.
    emails = [c.email for c in agreement.contacts]
    assert agreement.rights is not None
    emails.append(agreement.rights.contact_email)
    assert all(email.endswith(".example.org") for email in emails), emails
    assert all(d.retention is not None for d in agreement.datasets)
    assert agreement.review is not None
    assert agreement.termination is not None
    assert agreement.security
    assert agreement.data_quality


@pytest.mark.parametrize("name", NEW_EXAMPLES)
def test_new_examples_have_dates_a_partnership_would_sign(name: str) -> None:
    agreement = _load(EXAMPLES / f"{name}.yaml")
    assert date(2026, 1, 1) <= agreement.effective_from <= date(2026, 11, 26)
    assert agreement.review_by is not None
    start = agreement.effective_from
    assert _months_after(start, 12) <= agreement.review_by <= _months_after(start, 18)
    assert agreement.review_by < agreement.expires_on


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_changing_one_released_form_breaks_every_approval(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    match = FORM_IN_TEXT.search(text)
    assert match is not None, "every example releases at least one field in a coarser form"
    edited = f"{text[: match.start(1)]}{OTHER_FORM[match.group(1)]}{text[match.end(1) :]}"
    parties = len(parse_agreement(text, source=path.name, today=TODAY).parties)
    with pytest.raises(AgreementError) as caught:
        parse_agreement(edited, source=path.name, today=TODAY)
    messages = [problem.message for problem in caught.value.problems]
    assert "approve it again" in str(caught.value)
    # The edit is otherwise valid, so the approvals are all that it breaks, each of them.
    assert len(messages) == parties
    assert all("approve it again" in message for message in messages)


@pytest.mark.parametrize("path", FILES, ids=_ids(FILES))
def test_examples_are_free_of_checklist_errors(path: Path) -> None:
    checklist = pytest.importorskip("agreements.checklist")
    agreement = _load(path)
    errors = [
        f"{finding.code}: {finding.message}"
        for finding in checklist.check_agreement(agreement, today=agreement.effective_from)
        if finding.severity == "error"
    ]
    assert errors == []
