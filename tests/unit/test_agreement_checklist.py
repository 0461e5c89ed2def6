"""The ICO data sharing code checklist: each item is found, where it is, and nowhere else.

Every test starts from a clean, complete agreement built on the shipped example
with every section set here (the example's own governance sections may change),
then breaks exactly one thing and expects exactly the finding for it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from agreements.checklist import Finding, check_agreement, summarise
from agreements.models import (
    Agreement,
    Dataset,
    FieldSpec,
    LawfulBasis,
    Party,
    Purpose,
    Release,
    ReleasedField,
)
from agreements.terms import (
    Approval,
    Contact,
    Linkage,
    PolicyTest,
    PolicyTestRequest,
    Retention,
    ReviewTerms,
    RightsTerms,
    TerminationTerms,
)
from tests.helpers import example_agreement

TODAY = date(2026, 6, 1)
PURPOSE = "safeguarding-triage"
BASIS = LawfulBasis(
    article_6="6(1)(e) public task",
    article_9="9(2)(g) substantial public interest",
    article_10="Article 10, authorised by DPA 2018 s.10(5)",
    dpa_schedule_1="Schedule 1 paragraph 18",
)
PARTIES = (
    Party(id="school", name="Northfield Academy", type="school", roles=("provider", "recipient")),
    Party(id="ed", name="Northshire Royal Infirmary", type="health", roles=("provider",)),
    Party(
        id="social-care",
        name="Northshire Children's Social Care",
        type="childrens_social_care",
        roles=("recipient", "lead"),
    ),
)
NAME_DOB_POSTCODE = ("given_name", "family_name", "date_of_birth", "postcode")
KEEP_A_YEAR = Retention(period_days=365, justification="one school year of triage")
SCHOOL = Dataset(
    id="school-attendance",
    provider="school",
    identifiers=NAME_DOB_POSTCODE,
    fields=(
        FieldSpec(name="attendance_pct", type="number", classification="personal"),
        FieldSpec(name="excluded", type="boolean", classification="personal"),
        FieldSpec(name="sen_support", type="boolean", classification="special_category"),
    ),
    retention=KEEP_A_YEAR,
)
ED = Dataset(
    id="ed-attendances",
    provider="ed",
    identifiers=(*NAME_DOB_POSTCODE, "nhs_number"),
    fields=(
        FieldSpec(name="attendance_date", type="date", classification="special_category"),
        FieldSpec(
            name="injury_type",
            type="code",
            classification="special_category",
            values=("sharps", "blunt", "other"),
        ),
    ),
    retention=KEEP_A_YEAR,
)
TO_SOCIAL_CARE = Release(
    purpose=PURPOSE,
    recipient="social-care",
    outputs=("lookup",),
    fields=(
        ReleasedField(dataset="school-attendance", field="attendance_pct"),
        ReleasedField(dataset="school-attendance", field="excluded"),
        ReleasedField(dataset="school-attendance", field="sen_support"),
        ReleasedField(dataset="ed-attendances", field="attendance_date", form="month"),
        ReleasedField(dataset="ed-attendances", field="injury_type"),
    ),
)
TO_SCHOOL = Release(
    purpose=PURPOSE,
    recipient="school",
    outputs=("aggregate",),
    fields=(ReleasedField(dataset="ed-attendances", field="attendance_date", form="month"),),
)
PERMIT = PolicyTest(
    name="social care sees the injury",
    request=PolicyTestRequest(agency="social-care", purpose=PURPOSE),
    expect="permit",
)
REFUSE = PolicyTest(
    name="the emergency department receives nothing",
    request=PolicyTestRequest(agency="ed", purpose=PURPOSE),
    expect="refuse",
    code="no_release",
)


def _approval(party: str) -> Approval:
    # The checklist asks only whether each party approved; signatures are the loader's concern.
    return Approval(
        party=party,
        approver=f"DPO of {party}",
        role="Data Protection Officer",
        approved_on=date(2025, 12, 1),
        public_key="A" * 44,
        signature="B" * 88,
    )


def _clean(**update: Any) -> Agreement:
    """A complete agreement that meets every checklist item, with ``update`` applied."""
    sections: dict[str, Any] = {
        "status": "active",
        "effective_from": date(2026, 1, 1),
        "review_by": date(2026, 12, 1),
        "expires_on": date(2028, 12, 31),
        "contacts": tuple(
            Contact(party=p.id, name=f"Lead for {p.id}", role="DPO", email=f"dpo@{p.id}.example")
            for p in PARTIES
        ),
        "parties": PARTIES,
        "purposes": (
            Purpose(
                id=PURPOSE,
                description="Same-day triage of a young person who has come to notice.",
                lawful_basis={p.id: BASIS for p in PARTIES},
            ),
        ),
        "datasets": (SCHOOL, ED),
        "releases": (TO_SOCIAL_CARE, TO_SCHOOL),
        "linkage": Linkage(match_keys=("name_dob_postcode",)),
        "data_quality": ("Providers correct errors within five working days of notice.",),
        "security": ("Records are encrypted at rest and in transit.",),
        "rights": RightsTerms(contact_email="rights@lead.example", procedure="Write to the lead."),
        "review": ReviewTerms(frequency_months=12, grace_days=30),
        "termination": TerminationTerms(notice_days=90, on_termination="destroy"),
        "policy_tests": (PERMIT, REFUSE),
        "approvals": tuple(_approval(p.id) for p in PARTIES),
    }
    sections.update(update)
    return example_agreement().model_copy(update=sections)


def _hits(
    agreement: Agreement, code: str, today: date = TODAY
) -> list[tuple[str, tuple[Any, ...]]]:
    return [(f.severity, f.path) for f in check_agreement(agreement, today=today) if f.code == code]


def _codes(agreement: Agreement, today: date = TODAY) -> list[str]:
    return [f.code for f in check_agreement(agreement, today=today)]


def _with_dataset(index: int, **update: Any) -> tuple[Dataset, ...]:
    datasets = list(_clean().datasets)
    datasets[index] = datasets[index].model_copy(update=update)
    return tuple(datasets)


def _with_release(index: int, **update: Any) -> tuple[Release, ...]:
    releases = list(_clean().releases)
    releases[index] = releases[index].model_copy(update=update)
    return tuple(releases)


def _with_form(release: int, field: int, form: str) -> tuple[Release, ...]:
    fields = list(_clean().releases[release].fields)
    fields[field] = fields[field].model_copy(update={"form": form})
    return _with_release(release, fields=tuple(fields))


def test_a_clean_complete_agreement_has_no_findings() -> None:
    findings = check_agreement(_clean(), today=TODAY)
    assert findings == []
    assert summarise(findings) == (0, 0)


# Errors


def test_missing_review_date_is_an_error() -> None:
    assert _codes(_clean(review_by=None)) == ["review_date_missing"]
    assert _hits(_clean(review_by=None), "review_date_missing") == [("error", ("review_by",))]


def test_a_party_without_a_contact_is_an_error() -> None:
    contacts = tuple(c for c in _clean().contacts if c.party != "ed")
    assert _codes(_clean(contacts=contacts)) == ["party_without_contact"]
    assert _hits(_clean(contacts=contacts), "party_without_contact") == [("error", ("parties", 1))]


@pytest.mark.parametrize(
    ("section", "empty", "code"),
    [
        ("rights", None, "rights_missing"),
        ("security", (), "security_missing"),
        ("termination", None, "termination_missing"),
    ],
)
def test_missing_governance_sections_are_errors(section: str, empty: Any, code: str) -> None:
    agreement = _clean(**{section: empty})
    assert _codes(agreement) == [code]
    assert _hits(agreement, code) == [("error", (section,))]


def test_a_dataset_without_retention_is_an_error() -> None:
    agreement = _clean(datasets=_with_dataset(1, retention=None))
    assert _codes(agreement) == ["retention_missing"]
    assert _hits(agreement, "retention_missing") == [("error", ("datasets", 1, "retention"))]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", [("error", ("parties", 2))]),
        ("approved", [("error", ("parties", 2))]),
        ("draft", []),
    ],
)
def test_an_active_agreement_needs_every_partys_approval(
    status: str, expected: list[tuple[str, tuple[Any, ...]]]
) -> None:
    approvals = tuple(a for a in _clean().approvals if a.party != "social-care")
    assert _hits(_clean(status=status, approvals=approvals), "approval_missing") == expected


def test_sensitive_data_as_supplied_in_aggregates_is_an_error_not_also_a_warning() -> None:
    agreement = _clean(releases=_with_form(1, 0, "as_supplied"))
    assert _codes(agreement) == ["sensitive_aggregate_as_supplied"]
    assert _hits(agreement, "sensitive_aggregate_as_supplied") == [
        ("error", ("releases", 1, "fields", 0))
    ]


@pytest.mark.parametrize(
    ("outputs", "size", "expected"),
    [
        (("aggregate",), 2, [("error", "cell_size_too_small")]),
        (("aggregate",), 1, [("error", "cell_size_too_small")]),
        (("aggregate",), 3, [("warning", "cell_size_small")]),
        (("aggregate",), 4, [("warning", "cell_size_small")]),
        (("aggregate",), 5, []),
        # Without aggregates, no count is published and the cell size does not matter.
        (("lookup",), 2, []),
    ],
)
def test_small_cells_in_aggregates(
    outputs: tuple[str, ...], size: int, expected: list[tuple[str, str]]
) -> None:
    agreement = _clean(releases=_with_release(1, outputs=outputs, minimum_cell_size=size))
    findings = check_agreement(agreement, today=TODAY)
    assert [(f.severity, f.code) for f in findings] == expected
    assert all(f.path == ("releases", 1, "minimum_cell_size") for f in findings)


# Warnings


@pytest.mark.parametrize(
    ("review_by", "review", "flagged"),
    [
        (date(2027, 1, 1), ReviewTerms(frequency_months=12), False),
        (date(2027, 1, 2), ReviewTerms(frequency_months=12), True),
        (date(2027, 1, 2), None, True),
        (date(2027, 1, 1), None, False),
        (date(2027, 6, 1), ReviewTerms(frequency_months=18), False),
        (date(2026, 7, 2), ReviewTerms(frequency_months=6), True),
    ],
)
def test_a_review_later_than_the_agreed_frequency_is_flagged(
    review_by: date, review: ReviewTerms | None, flagged: bool
) -> None:
    agreement = _clean(review_by=review_by, review=review)
    expected = [("warning", ("review_by",))] if flagged else []
    assert _hits(agreement, "review_interval_long") == expected


# Sharing continues through the last day of grace (decision.py refuses only after it).
@pytest.mark.parametrize("today", [date(2026, 12, 2), date(2026, 12, 21)])
def test_an_overdue_review_says_when_sharing_stops(today: date) -> None:
    agreement = _clean(review=ReviewTerms(frequency_months=12, grace_days=20))
    findings = check_agreement(agreement, today=today)
    assert [(f.severity, f.code, f.path) for f in findings] == [
        ("warning", "review_overdue", ("review_by",))
    ]
    assert "2026-12-01" in findings[0].message
    assert "stops after 2026-12-21" in findings[0].message


def test_a_review_overdue_beyond_grace_says_sharing_has_stopped() -> None:
    findings = check_agreement(_clean(), today=date(2027, 1, 5))
    assert [f.code for f in findings] == ["review_overdue"]
    assert "stopped after 2026-12-31" in findings[0].message


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 10, 31), []),
        (date(2026, 11, 1), ["review_due_soon"]),
        (date(2026, 12, 1), ["review_due_soon"]),
        (date(2026, 12, 2), ["review_overdue"]),
    ],
)
def test_a_review_due_within_30_days_is_flagged(today: date, expected: list[str]) -> None:
    assert _codes(_clean(), today=today) == expected


@pytest.mark.parametrize(
    ("expires_on", "flagged"), [(date(2029, 1, 1), False), (date(2029, 1, 2), True)]
)
def test_an_agreement_lasting_more_than_three_years_is_flagged(
    expires_on: date, flagged: bool
) -> None:
    expected = [("warning", ("expires_on",))] if flagged else []
    assert _hits(_clean(expires_on=expires_on), "expiry_long") == expected


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        # The clean agreement lives 1095 days (2026-01-01 to 2028-12-31).
        (1095, []),
        (1096, ["retention_exceeds_agreement"]),
        (2192, ["retention_exceeds_agreement"]),
        (2193, ["retention_exceeds_agreement", "retention_over_six_years"]),
    ],
)
def test_retention_longer_than_the_agreement_or_six_years_is_flagged(
    days: int, expected: list[str]
) -> None:
    retention = Retention(period_days=days, justification="as long as the partnership needs")
    agreement = _clean(datasets=_with_dataset(0, retention=retention))
    findings = check_agreement(agreement, today=TODAY)
    assert sorted(f.code for f in findings) == expected
    assert all(f.severity == "warning" for f in findings)
    assert all(f.path == ("datasets", 0, "retention", "period_days") for f in findings)


def test_sensitive_data_as_supplied_where_a_coarser_form_exists_is_flagged() -> None:
    agreement = _clean(releases=_with_form(0, 3, "as_supplied"))
    findings = check_agreement(agreement, today=TODAY)
    assert [(f.severity, f.code, f.path) for f in findings] == [
        ("warning", "sensitive_not_coarsened", ("releases", 0, "fields", 3))
    ]
    assert "special category data released as supplied where a coarsened form would do" in (
        findings[0].message
    )
    assert "as month" in findings[0].message


def test_criminal_offence_counts_are_flagged_as_sensitive_too() -> None:
    offences = FieldSpec(name="offences_12m", type="integer", classification="criminal_offence")
    datasets = _with_dataset(0, fields=(*SCHOOL.fields, offences))
    fields = (*TO_SOCIAL_CARE.fields, ReleasedField(dataset=SCHOOL.id, field="offences_12m"))
    agreement = _clean(datasets=datasets, releases=_with_release(0, fields=fields))
    findings = check_agreement(agreement, today=TODAY)
    assert [(f.code, f.path) for f in findings] == [
        ("sensitive_not_coarsened", ("releases", 0, "fields", 5))
    ]
    assert findings[0].message.startswith("criminal offence data")
    assert "as flag" in findings[0].message


def test_sensitive_fields_with_no_coarser_form_are_not_flagged() -> None:
    # sen_support (boolean) and injury_type (code) already leave as supplied in the clean agreement.
    released = {(f.field, f.form) for f in _clean().releases[0].fields}
    assert {("sen_support", "as_supplied"), ("injury_type", "as_supplied")} <= released
    assert _hits(_clean(), "sensitive_not_coarsened") == []


def test_a_field_never_released_is_flagged_for_data_minimisation() -> None:
    unused = FieldSpec(name="free_school_meals", type="boolean", classification="personal")
    agreement = _clean(datasets=_with_dataset(0, fields=(*SCHOOL.fields, unused)))
    findings = check_agreement(agreement, today=TODAY)
    assert [(f.severity, f.code, f.path) for f in findings] == [
        ("warning", "field_never_released", ("datasets", 0, "fields", 3))
    ]
    assert "free_school_meals" in findings[0].message


def test_no_data_quality_obligations_is_flagged() -> None:
    assert _codes(_clean(data_quality=())) == ["data_quality_missing"]
    assert _hits(_clean(data_quality=()), "data_quality_missing") == [
        ("warning", ("data_quality",))
    ]


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ((), ["policy_tests_missing"]),
        ((PERMIT,), ["policy_tests_no_refusal"]),
        ((REFUSE,), []),
    ],
)
def test_policy_tests_must_exist_and_include_a_refusal(
    tests: tuple[PolicyTest, ...], expected: list[str]
) -> None:
    agreement = _clean(policy_tests=tests)
    assert _codes(agreement) == expected
    assert all(f.path == ("policy_tests",) for f in check_agreement(agreement, today=TODAY))


def test_a_recipient_that_receives_nothing_is_flagged() -> None:
    agreement = _clean(releases=(TO_SOCIAL_CARE,))
    findings = check_agreement(agreement, today=TODAY)
    assert [(f.severity, f.code, f.path) for f in findings] == [
        ("warning", "recipient_receives_nothing", ("parties", 0, "roles"))
    ]


@pytest.mark.parametrize(
    ("match_keys", "school_identifiers", "expected"),
    [
        (("name_dob_postcode", "upn"), NAME_DOB_POSTCODE, ["match_key_unsupplied"]),
        (("nhs",), ("given_name", "family_name"), ["match_key_single_provider"]),
        (("upn",), (*NAME_DOB_POSTCODE, "upn"), ["match_key_single_provider"]),
        (("nhs",), (*NAME_DOB_POSTCODE, "nhs_number"), []),
    ],
)
def test_match_keys_need_identifiers_that_datasets_supply(
    match_keys: tuple[str, ...], school_identifiers: tuple[str, ...], expected: list[str]
) -> None:
    agreement = _clean(
        linkage=Linkage.model_validate({"match_keys": match_keys}),
        datasets=_with_dataset(0, identifiers=school_identifiers),
    )
    findings = check_agreement(agreement, today=TODAY)
    assert [f.code for f in findings] == expected
    last = len(match_keys) - 1
    assert all(f.path == ("linkage", "match_keys", last) for f in findings)


def test_name_dob_postcode_needs_all_four_identifiers_in_one_dataset() -> None:
    partial = ("given_name", "family_name", "date_of_birth")
    datasets = (
        SCHOOL.model_copy(update={"identifiers": partial}),
        ED.model_copy(update={"identifiers": (*partial, "nhs_number")}),
    )
    assert _hits(_clean(datasets=datasets), "match_key_unsupplied") == [
        ("warning", ("linkage", "match_keys", 0))
    ]


def test_a_joint_controller_among_separate_ones_is_flagged() -> None:
    parties = (PARTIES[0], PARTIES[1].model_copy(update={"controller": "joint"}), PARTIES[2])
    assert _codes(_clean(parties=parties)) == ["joint_controller_among_separate"]
    assert _hits(_clean(parties=parties), "joint_controller_among_separate") == [
        ("warning", ("parties", 1, "controller"))
    ]
    all_joint = tuple(p.model_copy(update={"controller": "joint"}) for p in PARTIES)
    assert _codes(_clean(parties=all_joint)) == []


def test_revealing_record_references_with_special_category_data_is_flagged() -> None:
    agreement = _clean(releases=_with_release(0, reveal_record_reference=True))
    findings = check_agreement(agreement, today=TODAY)
    assert [(f.severity, f.code, f.path) for f in findings] == [
        (
            "warning",
            "record_reference_with_sensitive_data",
            ("releases", 0, "reveal_record_reference"),
        )
    ]
    assert "special category" in findings[0].message


def test_revealing_record_references_with_only_personal_data_is_not_flagged() -> None:
    personal = tuple(f for f in TO_SOCIAL_CARE.fields if f.dataset == SCHOOL.id)[:2]
    releases = (
        TO_SOCIAL_CARE.model_copy(update={"fields": personal, "reveal_record_reference": True}),
        # The sensitive fields go elsewhere, so that every field is still released.
        TO_SCHOOL.model_copy(update={"outputs": ("lookup",), "fields": TO_SOCIAL_CARE.fields}),
    )
    assert _codes(_clean(releases=releases)) == []


# Order and summary


def test_findings_come_errors_first_then_by_path_with_indexes_in_number_order() -> None:
    datasets = tuple(
        SCHOOL.model_copy(update={"id": f"school-{n}", "retention": None}) for n in range(12)
    )
    agreement = _clean(
        datasets=(*_clean().datasets, *datasets),
        rights=None,
        data_quality=(),
        contacts=_clean().contacts[1:],
    )
    findings = check_agreement(agreement, today=TODAY)
    errors = [f for f in findings if f.severity == "error"]
    assert findings[: len(errors)] == errors
    assert [f.path for f in errors] == [
        *[("datasets", n, "retention") for n in range(2, 14)],
        ("parties", 0),
        ("rights",),
    ]
    warnings = [f.path for f in findings[len(errors) :]]
    assert warnings[0] == ("data_quality",)
    assert warnings[1:4] == [("datasets", 2, "fields", n) for n in range(3)]
    assert warnings[-1] == ("datasets", 13, "fields", 2)


def test_summarise_counts_errors_and_warnings() -> None:
    agreement = _clean(rights=None, security=(), data_quality=(), policy_tests=())
    findings = check_agreement(agreement, today=TODAY)
    assert summarise(findings) == (2, 2)
    assert summarise([]) == (0, 0)


def test_every_finding_points_into_the_agreement() -> None:
    agreement = _clean(
        review_by=None,
        rights=None,
        contacts=(),
        approvals=(),
        releases=(TO_SOCIAL_CARE.model_copy(update={"reveal_record_reference": True}),),
        linkage=Linkage(match_keys=("upn",)),
    )
    findings = check_agreement(agreement, today=TODAY)
    assert len({f.code for f in findings}) >= 6
    for finding in findings:
        assert isinstance(finding, Finding)
        assert finding.path[0] in Agreement.model_fields
        assert finding.message
