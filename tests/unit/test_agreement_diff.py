"""The diff of two agreement versions: each kind of change, its effect and its wording."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from agreements.diff import Change, describe_versions, diff_agreements, is_narrowing_only
from agreements.models import Agreement, Dataset, LawfulBasis, Party, Purpose, Release
from agreements.terms import (
    Approval,
    Contact,
    Linkage,
    PolicyTest,
    PolicyTestRequest,
    Retention,
    ReviewTerms,
)
from tests.helpers import example_agreement

BASE = example_agreement()
ED = "Northshire Royal Infirmary Emergency Department"
POLICE = "Northshire Police"
CSC = "Northshire Council Children's Social Care"
TO_POLICE = "to Northshire Police for purpose `violence-reduction`"


def _only(old: Agreement, new: Agreement) -> Change:
    changes = diff_agreements(old, new)
    assert len(changes) == 1, changes
    return changes[0]


def _release(agreement: Agreement, recipient: str, purpose: str) -> Release:
    return next(r for r in agreement.releases if (r.recipient, r.purpose) == (recipient, purpose))


def _with_release(agreement: Agreement, recipient: str, purpose: str, **update: Any) -> Agreement:
    releases = tuple(
        r.model_copy(update=update) if (r.recipient, r.purpose) == (recipient, purpose) else r
        for r in agreement.releases
    )
    return agreement.model_copy(update={"releases": releases})


def _police(**update: Any) -> Agreement:
    return _with_release(BASE, "police", "violence-reduction", **update)


def _with_party(agreement: Agreement, party_id: str, **update: Any) -> Agreement:
    parties = tuple(
        p.model_copy(update=update) if p.id == party_id else p for p in agreement.parties
    )
    return agreement.model_copy(update={"parties": parties})


def _with_dataset(agreement: Agreement, dataset_id: str, **update: Any) -> Agreement:
    datasets = tuple(
        d.model_copy(update=update) if d.id == dataset_id else d for d in agreement.datasets
    )
    return agreement.model_copy(update={"datasets": datasets})


POLICE_RELEASE = _release(BASE, "police", "violence-reduction")


# --- identity, ordering, helpers -----------------------------------------


def test_an_agreement_has_no_changes_from_itself() -> None:
    assert diff_agreements(BASE, BASE) == []
    assert diff_agreements(BASE, example_agreement()) == []


def test_the_version_number_is_not_a_change_but_heads_the_diff() -> None:
    later = BASE.model_copy(update={"version": 2})
    assert diff_agreements(BASE, later) == []
    assert describe_versions(BASE, later) == "sv-early-identification: version 1 -> version 2"


def test_reordering_releases_and_fields_is_not_a_change() -> None:
    shuffled = BASE.model_copy(update={"releases": tuple(reversed(BASE.releases))})
    shuffled = _with_release(
        shuffled, "police", "violence-reduction", fields=tuple(reversed(POLICE_RELEASE.fields))
    )
    assert diff_agreements(BASE, shuffled) == []


def test_changes_are_ordered_by_area_then_message() -> None:
    new = _police(outputs=("lookup", "aggregate"), minimum_cell_size=3).model_copy(
        update={"expires_on": date(2029, 3, 31), "status": "suspended"}
    )
    changes = diff_agreements(BASE, new)
    assert [c.area for c in changes] == ["dates", "release", "release", "status"]
    assert changes == sorted(changes, key=lambda c: (c.area, c.message))
    assert changes == diff_agreements(BASE, new)


def test_is_narrowing_only() -> None:
    narrow = Change("narrowing", "release", "x")
    assert is_narrowing_only([])
    assert is_narrowing_only([narrow, Change("neutral", "terms", "y")])
    assert not is_narrowing_only([narrow, Change("widening", "release", "z")])


# --- releases ----------------------------------------------------------------


def test_a_field_newly_released_is_widening_and_names_its_provider() -> None:
    extra = POLICE_RELEASE.fields[0].model_copy(update={"field": "arrival_mode"})
    change = _only(BASE, _police(fields=(*POLICE_RELEASE.fields, extra)))
    assert change == Change(
        "widening",
        "release",
        f"{ED}'s `ed-attendances.arrival_mode` is now released {TO_POLICE} (as supplied)",
    )


def test_a_field_no_longer_released_is_narrowing() -> None:
    kept = tuple(f for f in POLICE_RELEASE.fields if f.field != "attendance_date")
    change = _only(BASE, _police(fields=kept))
    assert change == Change(
        "narrowing",
        "release",
        f"`ed-attendances.attendance_date` is no longer released {TO_POLICE}",
    )


@pytest.mark.parametrize(
    ("old_form", "new_form", "effect"),
    [
        ("as_supplied", "month", "narrowing"),
        ("month", "as_supplied", "widening"),
        ("month", "redacted", "narrowing"),
        ("redacted", "month", "widening"),
        ("age", "age_band", "narrowing"),
        ("age_band", "age", "widening"),
        ("postcode_sector", "postcode_district", "narrowing"),
        ("postcode_district", "postcode_sector", "widening"),
        # Unrelated forms cannot be ranked: the safe reading is widening, either way round.
        ("month", "flag", "widening"),
        ("flag", "month", "widening"),
    ],
)
def test_a_change_of_form(old_form: str, new_form: str, effect: str) -> None:
    def with_form(form: str) -> Agreement:
        fields = tuple(
            f.model_copy(update={"form": form}) if f.field == "attendance_date" else f
            for f in POLICE_RELEASE.fields
        )
        return _police(fields=fields)

    change = _only(with_form(old_form), with_form(new_form))
    assert change.effect == effect
    assert change.area == "release"
    assert change.message == (
        f"`ed-attendances.attendance_date` released {TO_POLICE} changes form from "
        f"{old_form.replace('_', ' ')} to {new_form.replace('_', ' ')}"
    )


def test_output_kinds_added_widen_and_removed_narrow() -> None:
    wider = _police(outputs=("lookup", "notification", "cohort"))
    changes = diff_agreements(BASE, wider)
    assert changes == [
        Change("widening", "release", f"Release {TO_POLICE} now also allows output cohort"),
        Change("widening", "release", f"Release {TO_POLICE} now also allows output notification"),
    ]
    back = diff_agreements(wider, BASE)
    assert [c.effect for c in back] == ["narrowing", "narrowing"]
    assert "no longer allows output cohort" in back[0].message


def test_a_whole_release_added_or_removed() -> None:
    without = BASE.model_copy(
        update={"releases": tuple(r for r in BASE.releases if r is not POLICE_RELEASE)}
    )
    removed = _only(BASE, without)
    assert removed.effect == "narrowing"
    assert removed.message.startswith(f"Nothing is released {TO_POLICE} any longer")
    assert "`ed-attendances.injury_type`" in removed.message
    added = _only(without, BASE)
    assert added.effect == "widening"
    assert added.message == (
        f"New release {TO_POLICE}, by lookup: `ed-attendances.injury_type` (as supplied), "
        "`ed-attendances.attendance_date` (month), `school-attendance.excluded` (as supplied)"
    )


def test_revealing_record_references() -> None:
    revealing = _police(reveal_record_reference=True)
    on = _only(BASE, revealing)
    off = _only(revealing, BASE)
    assert (on.effect, off.effect) == ("widening", "narrowing")
    assert on.message == f"Release {TO_POLICE} now reveals providers' record references"
    assert off.message == f"Release {TO_POLICE} no longer reveals providers' record references"


@pytest.mark.parametrize(("size", "effect"), [(3, "widening"), (10, "narrowing")])
def test_minimum_cell_size(size: int, effect: str) -> None:
    change = _only(_police(minimum_cell_size=5), _police(minimum_cell_size=size))
    assert change.effect == effect
    assert change.message == f"Release {TO_POLICE} sets the minimum cell size to {size} (was 5)"


# --- parties -------------------------------------------------------------------


YOT = Party(
    id="yot",
    name="Northshire Youth Justice Service",
    type="youth_justice",
    roles=("provider", "recipient"),
)


def test_a_party_joining_widens_and_leaving_narrows() -> None:
    joined = BASE.model_copy(update={"parties": (*BASE.parties, YOT)})
    assert _only(BASE, joined) == Change(
        "widening",
        "party",
        "Northshire Youth Justice Service (`yot`) joins as provider and recipient",
    )
    assert _only(joined, BASE) == Change(
        "narrowing", "party", "Northshire Youth Justice Service (`yot`) is no longer a party"
    )


def test_roles_gained_widen_and_lost_narrow() -> None:
    receiving = _with_party(BASE, "ed", roles=("provider", "recipient"))
    assert _only(BASE, receiving) == Change("widening", "party", f"{ED} gains the role recipient")
    assert _only(receiving, BASE) == Change("narrowing", "party", f"{ED} loses the role recipient")


def test_controller_and_name_changes_are_neutral() -> None:
    joint = _with_party(BASE, "police", controller="joint")
    assert _only(BASE, joint) == Change(
        "neutral", "party", f"{POLICE} is now a joint controller (was separate)"
    )
    renamed = _with_party(BASE, "police", name="Northshire Constabulary")
    change = _only(BASE, renamed)
    assert change.effect == "neutral"
    assert change.message == "`police` is renamed from Northshire Police to Northshire Constabulary"


def test_a_renamed_recipient_is_named_as_the_new_version_names_it() -> None:
    renamed = _with_party(_police(minimum_cell_size=9), "police", name="Northshire Constabulary")
    messages = [c.message for c in diff_agreements(BASE, renamed)]
    assert any(m.startswith("Release to Northshire Constabulary for purpose") for m in messages)


# --- purposes --------------------------------------------------------------------


def test_a_purpose_added_widens_and_removed_narrows() -> None:
    mace = Purpose(
        id="mace-identification",
        description="Identify children at risk of exploitation for the MACE panel.",
        lawful_basis={"police": LawfulBasis(article_6="6(1)(e) public task")},
    )
    more = BASE.model_copy(update={"purposes": (*BASE.purposes, mace)})
    added = _only(BASE, more)
    assert added.effect == "widening"
    assert added.area == "purpose"
    assert added.message.startswith("Purpose `mace-identification` is added")
    assert _only(more, BASE) == Change(
        "narrowing", "purpose", "Purpose `mace-identification` is removed"
    )


def _with_bases(agreement: Agreement, bases: dict[str, LawfulBasis]) -> Agreement:
    purposes = tuple(
        p.model_copy(update={"lawful_basis": bases}) if p.id == "violence-reduction" else p
        for p in agreement.purposes
    )
    return agreement.model_copy(update={"purposes": purposes})


SCHOOL_BASIS = LawfulBasis(
    article_6="6(1)(e) public task", statutory_gateway="PCSC Act 2022 (serious violence duty)"
)
# The school's basis for violence reduction is pinned here, whatever the example says.
PINNED = _with_bases(BASE, {"police": SCHOOL_BASIS, "school": SCHOOL_BASIS})


def _with_basis(**update: Any) -> Agreement:
    school = SCHOOL_BASIS.model_copy(update=update)
    return _with_bases(PINNED, {"police": SCHOOL_BASIS, "school": school})


def test_a_changed_lawful_basis_is_neutral_and_names_the_article() -> None:
    change = _only(PINNED, _with_basis(article_6="6(1)(c) legal obligation"))
    assert change == Change(
        "neutral",
        "purpose",
        "Northfield Academy Trust's Article 6 basis for `violence-reduction` changes from "
        "'6(1)(e) public task' to '6(1)(c) legal obligation'",
    )
    added = _only(PINNED, _with_basis(article_9="9(2)(g) substantial public interest"))
    assert added.effect == "neutral"
    assert added.message.startswith(
        "Northfield Academy Trust's Article 9 basis for `violence-reduction` is added"
    )
    removed = _only(PINNED, _with_basis(statutory_gateway=None))
    assert "statutory gateway basis" in removed.message
    assert "is removed" in removed.message


# --- datasets and retention ---------------------------------------------------------


def test_a_dataset_added_widens_and_removed_narrows() -> None:
    yot = Dataset.model_validate(
        {
            "id": "yot-cases",
            "provider": "police",
            "identifiers": ["given_name"],
            "fields": [{"name": "open_case", "type": "boolean", "classification": "personal"}],
        }
    )
    more = BASE.model_copy(update={"datasets": (*BASE.datasets, yot)})
    assert _only(BASE, more) == Change(
        "widening", "dataset", f"Dataset `yot-cases` from {POLICE} is added (`open_case`)"
    )
    assert _only(more, BASE) == Change(
        "narrowing", "dataset", f"Dataset `yot-cases` from {POLICE} is removed"
    )


def test_fields_added_widen_removed_narrow_and_reclassified_are_flagged() -> None:
    ed = BASE.dataset("ed-attendances")
    assert ed is not None
    extra = ed.fields[0].model_copy(update={"name": "attendance_reason", "required": False})
    more = _with_dataset(BASE, "ed-attendances", fields=(*ed.fields, extra))
    assert _only(BASE, more) == Change(
        "widening", "dataset", "`ed-attendances` gains field `attendance_reason` (special category)"
    )
    assert _only(more, BASE).effect == "narrowing"
    police = BASE.dataset("police-incidents")
    assert police is not None
    fields = tuple(
        f.model_copy(update={"classification": "special_category"})
        if f.name == "exploitation_concern"
        else f
        for f in police.fields
    )
    change = _only(BASE, _with_dataset(BASE, "police-incidents", fields=fields))
    assert change.effect == "neutral"
    assert change.message.startswith(
        "RECLASSIFIED: `police-incidents.exploitation_concern` changes from personal to "
        "special category"
    )


def _kept(days: int | None) -> Agreement:
    retention = None if days is None else Retention(period_days=days, justification="Triage.")
    return _with_dataset(BASE, "ed-attendances", retention=retention)


@pytest.mark.parametrize(
    ("old", "new", "effect"),
    [
        (90, 180, "widening"),
        (180, 90, "narrowing"),
        (None, 90, "narrowing"),
        (90, None, "widening"),
    ],
)
def test_retention_longer_widens_and_shorter_narrows(
    old: int | None, new: int | None, effect: str
) -> None:
    change = _only(_kept(old), _kept(new))
    assert (change.area, change.effect) == ("retention", effect)
    assert "`ed-attendances`" in change.message


# --- dates, status, linkage ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "effect"),
    [
        ("expires_on", date(2029, 3, 31), "widening"),
        ("expires_on", date(2027, 3, 31), "narrowing"),
        ("review_by", date(2028, 1, 31), "widening"),
        ("review_by", date(2027, 3, 31), "narrowing"),
        ("review_by", None, "widening"),
        ("effective_from", date(2025, 6, 1), "widening"),
        ("effective_from", date(2026, 6, 1), "narrowing"),
    ],
)
def test_dates_moved(field: str, value: date | None, effect: str) -> None:
    change = _only(BASE, BASE.model_copy(update={field: value}))
    assert (change.area, change.effect) == ("dates", effect)
    assert str(value or "none") in change.message
    assert str(getattr(BASE, field)) in change.message


def test_review_grace_period() -> None:
    short = BASE.model_copy(update={"review": ReviewTerms(frequency_months=12, grace_days=10)})
    long = BASE.model_copy(update={"review": ReviewTerms(frequency_months=12, grace_days=60)})
    assert _only(short, long) == Change(
        "widening", "dates", "Sharing continues 60 days past an overdue review (was 10)"
    )
    assert _only(long, short).effect == "narrowing"


def test_a_status_change_is_neutral_and_gives_the_reason() -> None:
    suspended = BASE.model_copy(update={"status": "suspended", "status_reason": "DPIA review"})
    assert _only(BASE, suspended) == Change(
        "neutral", "status", "Status changes from active to suspended (DPIA review)"
    )


def test_match_keys_added_widen_and_removed_narrow() -> None:
    nhs_only = BASE.model_copy(update={"linkage": Linkage(match_keys=("nhs",))})
    both = BASE.model_copy(update={"linkage": Linkage(match_keys=("nhs", "upn"))})
    assert _only(nhs_only, both) == Change(
        "widening", "linkage", "Records may now be linked by `upn`"
    )
    assert _only(both, nhs_only) == Change(
        "narrowing", "linkage", "Records are no longer linked by `upn`"
    )
    reordered = BASE.model_copy(update={"linkage": Linkage(match_keys=("upn", "nhs"))})
    assert _only(both, reordered).effect == "neutral"


# --- governance --------------------------------------------------------------------------

TEST = PolicyTest(
    name="police never see clinical detail",
    request=PolicyTestRequest(agency="police", purpose="violence-reduction"),
    expect="refuse",
    code="field_not_permitted",
)


def test_policy_tests_added_or_removed_are_neutral() -> None:
    without = BASE.model_copy(update={"policy_tests": ()})
    with_test = BASE.model_copy(update={"policy_tests": (TEST,)})
    assert _only(without, with_test) == Change(
        "neutral", "policy tests", "Policy test 'police never see clinical detail' is added"
    )
    assert _only(with_test, without).message.endswith("is removed")


def test_contacts_and_terms_are_neutral() -> None:
    contact = Contact(party="police", name="A. Officer", role="DPO", email="dpo@police.example")
    old = BASE.model_copy(update={"contacts": (), "security": ("Encrypted at rest.",)})
    new = old.model_copy(update={"contacts": (contact,), "security": ("Encrypted.",)})
    assert diff_agreements(old, new) == [
        Change("neutral", "terms", f"{POLICE}'s contacts change"),
        Change("neutral", "terms", "The security terms change"),
    ]


def test_approvals_by_another_person_are_neutral_and_resigning_is_not_reported() -> None:
    approval = Approval(
        party="social-care",
        approver="A. DPO",
        role="DPO",
        approved_on=date(2026, 11, 1),
        public_key="k" * 44,
        signature="s" * 88,
    )
    old = BASE.model_copy(update={"approvals": (approval,)})
    resigned = approval.model_copy(update={"signature": "t" * 88})
    assert diff_agreements(old, old.model_copy(update={"approvals": (resigned,)})) == []
    other = approval.model_copy(update={"approver": "B. DPO"})
    change = _only(old, old.model_copy(update={"approvals": (other,)}))
    assert change.effect == "neutral"
    assert change.message.startswith(f"{CSC}'s approval is now by B. DPO")
    assert _only(old, old.model_copy(update={"approvals": ()})).area == "approvals"


def test_a_party_stating_a_basis_for_a_purpose_is_neutral_and_quotes_article_6() -> None:
    fewer = _with_bases(PINNED, {"police": SCHOOL_BASIS})
    assert _only(fewer, PINNED) == Change(
        "neutral",
        "purpose",
        "Northfield Academy Trust states a basis for `violence-reduction`: '6(1)(e) public task'",
    )
    assert _only(PINNED, fewer).message == (
        "Northfield Academy Trust no longer states a basis for `violence-reduction`"
    )


def test_a_field_definition_change_is_neutral_and_says_what_changed() -> None:
    school = BASE.dataset("school-attendance")
    assert school is not None
    fields = tuple(
        f.model_copy(update={"required": not f.required, "type": "integer"})
        if f.name == "attendance_pct"
        else f
        for f in school.fields
    )
    change = _only(BASE, _with_dataset(BASE, "school-attendance", fields=fields))
    assert change == Change(
        "neutral",
        "dataset",
        "`school-attendance.attendance_pct` changes its definition (type, required)",
    )
