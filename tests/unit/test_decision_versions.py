"""Versions of one agreement: which version decides, and how later ones only narrow.

Small, hand-built agreements so that each expected field and form can be read
off the test itself.
"""

from __future__ import annotations

from datetime import date

import pytest

from agreements.decision import (
    Deny,
    Permit,
    ReleaseRequest,
    SupplyRequest,
    coarser_form,
    current_version,
    decide_supply_under,
    decide_under,
    narrowest,
)
from agreements.models import (
    Agreement,
    Dataset,
    FieldSpec,
    LawfulBasis,
    OutputKind,
    Party,
    Purpose,
    Release,
    ReleasedField,
    ReleaseForm,
)
from agreements.terms import Approval

TODAY = date(2026, 6, 1)
V1_FROM = date(2026, 1, 1)
V2_FROM = date(2026, 9, 1)  # activated, but not yet effective on TODAY
EXPIRES = date(2028, 1, 1)
ALL_OUTPUTS: tuple[OutputKind, ...] = ("lookup", "notification", "cohort", "aggregate")
BASE_FIELDS: tuple[ReleasedField, ...] = (
    ReleasedField(dataset="attendance", field="attendance_pct"),
    ReleasedField(dataset="attendance", field="excluded", form="flag"),
    ReleasedField(dataset="attendance", field="date_of_birth", form="age"),
    ReleasedField(dataset="attendance", field="postcode", form="postcode_sector"),
)


def _approval(party: str) -> Approval:
    # decide() checks only that each party has an approval entry, never the
    # signature; this key and signature are well-formed base64 and mean nothing.
    return Approval(
        party=party,
        approver=f"DPO of {party}",
        role="Data Protection Officer",
        approved_on=date(2025, 12, 1),
        public_key="A" * 43 + "=",
        signature="A" * 86 + "==",
    )


def _agreement(
    version: int = 1,
    *,
    effective_from: date = V1_FROM,
    fields: tuple[ReleasedField, ...] = BASE_FIELDS,
    outputs: tuple[OutputKind, ...] = ALL_OUTPUTS,
    status: str = "active",
    minimum_cell_size: int = 5,
    datasets: tuple[str, ...] = ("attendance",),
    provider: str = "school",
) -> Agreement:
    parties = (
        Party(id="school", name="School", type="school", roles=("provider",)),
        Party(id="council", name="Council", type="local_authority", roles=("provider",)),
        Party(
            id="social-care",
            name="Children's social care",
            type="childrens_social_care",
            roles=("recipient",),
        ),
    )
    basis = LawfulBasis(article_6="6(1)(e) public task")
    return Agreement(
        id="attendance-sharing",
        title="Attendance sharing",
        version=version,
        status=status,
        status_reason=None if status == "active" else "under review",
        effective_from=effective_from,
        review_by=date(2027, 6, 1),
        expires_on=EXPIRES,
        parties=parties,
        purposes=(
            Purpose(
                id="triage",
                description="Safeguarding triage",
                lawful_basis={p.id: basis for p in parties},
            ),
        ),
        datasets=tuple(
            Dataset(
                id=dataset_id,
                provider=provider,
                identifiers=("given_name", "date_of_birth", "postcode"),
                fields=(
                    FieldSpec(name="attendance_pct", type="number", classification="personal"),
                    FieldSpec(name="excluded", type="boolean", classification="personal"),
                ),
            )
            for dataset_id in datasets
        ),
        releases=(
            Release(
                purpose="triage",
                recipient="social-care",
                outputs=outputs,
                fields=fields,
                minimum_cell_size=minimum_cell_size,
            ),
        )
        if fields
        else (),
        approvals=tuple(_approval(p.id) for p in parties),
    )


def _request(
    on: date = TODAY,
    output: OutputKind = "lookup",
    fields: tuple[tuple[str, str], ...] | None = None,
) -> ReleaseRequest:
    return ReleaseRequest(
        agency="social-care", purpose="triage", output=output, on=on, fields=fields
    )


def _without(name: str) -> tuple[ReleasedField, ...]:
    return tuple(f for f in BASE_FIELDS if f.field != name)


def _with_form(name: str, form: ReleaseForm) -> tuple[ReleasedField, ...]:
    return tuple(f.model_copy(update={"form": form}) if f.field == name else f for f in BASE_FIELDS)


def _forms(decision: Permit) -> dict[str, ReleaseForm]:
    return {f.field: f.form for f in decision.fields}


def _permit(decision: object) -> Permit:
    assert isinstance(decision, Permit), decision
    return decision


def _deny_code(decision: object) -> str:
    assert isinstance(decision, Deny), decision
    assert decision.reason
    return decision.code


# --- the removed field ----------------------------------------------------


@pytest.mark.parametrize("output", ALL_OUTPUTS)
def test_a_field_removed_from_the_agreement_disappears_from_every_output_at_once(
    output: OutputKind,
) -> None:
    v1 = _agreement(1)
    v2 = _agreement(2, effective_from=V2_FROM, fields=_without("excluded"))
    before = _permit(decide_under([v1], _request(output=output)))
    assert "excluded" in _forms(before)
    decision = _permit(decide_under([v1, v2], _request(output=output)))
    assert "excluded" not in _forms(decision)
    assert set(_forms(decision)) == {"attendance_pct", "date_of_birth", "postcode"}
    # Asking for it by name is refused outright, not quietly dropped.
    named = _request(output=output, fields=(("attendance", "excluded"),))
    assert _deny_code(decide_under([v1, v2], named)) == "field_not_permitted"


# --- current_version ------------------------------------------------------


def test_current_version_is_the_latest_active_one_already_effective() -> None:
    v1 = _agreement(1)
    v2 = _agreement(2, effective_from=V2_FROM)
    assert current_version([], TODAY) is None
    assert current_version([v1, v2], date(2025, 12, 31)) is None
    assert current_version([v1, v2], TODAY) is v1
    assert current_version([v2, v1], V2_FROM) is v2
    assert current_version([v1, v2], date(2027, 1, 1)) is v2


@pytest.mark.parametrize("status", ["draft", "approved", "suspended", "superseded", "expired"])
def test_current_version_skips_a_later_version_that_is_not_active(status: str) -> None:
    v1 = _agreement(1)
    v2 = _agreement(2, effective_from=V1_FROM, status=status)
    assert current_version([v1, v2], TODAY) is v1


# --- decide_under ---------------------------------------------------------


def test_decide_under_with_no_versions_is_refused() -> None:
    assert _deny_code(decide_under([], _request())) == "agreement_unknown"


def test_decide_under_before_any_version_takes_effect() -> None:
    code = _deny_code(decide_under([_agreement(1)], _request(on=date(2025, 12, 31))))
    assert code == "agreement_not_yet_effective"


def test_decide_under_with_every_version_suspended() -> None:
    versions = [_agreement(1, status="suspended"), _agreement(2, status="suspended")]
    assert _deny_code(decide_under(versions, _request())) == "agreement_not_active"
    refused = decide_under(versions, _request(), received_under=1)
    assert _deny_code(refused) == "agreement_not_active"


def test_a_pending_version_that_drops_the_release_refuses_at_once() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, fields=())
    code = _deny_code(decide_under([_agreement(1), v2], _request()))
    assert code == "no_release_for_recipient"


def test_a_pending_version_that_drops_an_output_refuses_it_at_once() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, outputs=("lookup", "cohort"))
    versions = [_agreement(1), v2]
    assert _deny_code(decide_under(versions, _request(output="aggregate"))) == (
        "output_not_allowed"
    )
    _permit(decide_under(versions, _request(output="cohort")))


def test_a_pending_coarser_form_applies_at_once() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, fields=_with_form("date_of_birth", "age_band"))
    decision = _permit(decide_under([_agreement(1), v2], _request()))
    assert _forms(decision)["date_of_birth"] == "age_band"
    assert decision.agreement_version == 1


def test_a_pending_higher_cell_size_applies_at_once() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, minimum_cell_size=10)
    decision = _permit(decide_under([_agreement(1), v2], _request(output="aggregate")))
    assert decision.minimum_cell_size == 10


def test_a_wider_version_waits_for_its_date() -> None:
    v1 = _agreement(1, fields=_without("excluded"))
    v2 = _agreement(2, effective_from=V2_FROM)
    assert "excluded" not in _forms(_permit(decide_under([v1, v2], _request())))
    after = _permit(decide_under([v1, v2], _request(on=V2_FROM)))
    assert "excluded" in _forms(after)
    assert after.agreement_version == 2


def test_a_suspended_later_version_does_not_narrow() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, fields=_without("excluded"), status="suspended")
    assert "excluded" in _forms(_permit(decide_under([_agreement(1), v2], _request())))


@pytest.mark.parametrize("v1_status", ["active", "superseded"])
def test_records_received_under_v1_keep_v1_limits_after_a_wider_v2(v1_status: str) -> None:
    fields = tuple(f for f in _with_form("postcode", "postcode_district") if f.field != "excluded")
    v1 = _agreement(1, fields=fields, status=v1_status)
    v2 = _agreement(2, effective_from=V2_FROM)
    later = _request(on=date(2026, 10, 1))
    under_v2 = _permit(decide_under([v1, v2], later))
    assert _forms(under_v2)["postcode"] == "postcode_sector"
    under_v1 = _permit(decide_under([v1, v2], later, received_under=1))
    assert _forms(under_v1) == {
        "attendance_pct": "as_supplied",
        "date_of_birth": "age",
        "postcode": "postcode_district",
    }


def test_received_under_the_current_version_changes_nothing() -> None:
    v1 = _agreement(1)
    assert decide_under([v1], _request(), received_under=1) == decide_under([v1], _request())


def test_received_under_a_version_not_loaded_is_refused() -> None:
    refused = decide_under([_agreement(1)], _request(), received_under=7)
    assert _deny_code(refused) == "agreement_version_unknown"


# --- narrowest ------------------------------------------------------------


def _p(
    version: int, *fields: tuple[str, ReleaseForm], cell: int = 5, reveal: bool = True
) -> Permit:
    return Permit(
        agreement_id="attendance-sharing",
        agreement_version=version,
        fields=tuple(ReleasedField(dataset="attendance", field=n, form=f) for n, f in fields),
        reveal_record_reference=reveal,
        minimum_cell_size=cell,
        rule=f"rule {version}",
        warnings=(f"warning {version}",),
    )


def test_narrowest_keeps_common_fields_in_the_coarser_form() -> None:
    first = _p(1, ("excluded", "as_supplied"), ("date_of_birth", "age"), ("notes", "redacted"))
    second = _p(2, ("date_of_birth", "age_band"), ("excluded", "flag"), cell=10, reveal=False)
    result = _permit(narrowest(first, second))
    assert _forms(result) == {"excluded": "flag", "date_of_birth": "age_band"}
    assert [f.field for f in result.fields] == ["excluded", "date_of_birth"]
    assert result.minimum_cell_size == 10
    assert result.reveal_record_reference is False
    assert result.warnings == ("warning 1", "warning 2")
    assert result.agreement_version == 1
    assert "rule 2" in result.rule


def test_narrowest_with_nothing_in_common_refuses() -> None:
    refused = narrowest(_p(1, ("excluded", "flag")), _p(2, ("notes", "redacted")))
    assert _deny_code(refused) == "field_not_permitted"


def test_narrowest_lets_a_deny_win_on_either_side() -> None:
    deny = Deny("agreement_not_active", "suspended")
    permit = _p(1, ("excluded", "flag"))
    assert narrowest(deny, permit) is deny
    assert narrowest(permit, deny) is deny


# --- coarser_form ---------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "coarser"),
    [
        ("as_supplied", "month", "month"),
        ("as_supplied", "as_supplied", "as_supplied"),
        ("age", "age_band", "age_band"),
        ("age_band", "age", "age_band"),
        ("postcode_sector", "postcode_district", "postcode_district"),
        ("postcode_district", "postcode_sector", "postcode_district"),
        ("flag", "redacted", "redacted"),
        ("redacted", "as_supplied", "redacted"),
        # Unrelated forms: neither can be computed from the other, so nothing is safe to give.
        ("age", "month", "redacted"),
        ("month", "flag", "redacted"),
        ("postcode_sector", "age", "redacted"),
    ],
)
def test_coarser_form(first: ReleaseForm, second: ReleaseForm, coarser: ReleaseForm) -> None:
    assert coarser_form(first, second) == coarser


# --- decide_supply_under --------------------------------------------------


def _supply(agency: str = "school", dataset: str = "attendance") -> SupplyRequest:
    return SupplyRequest(agency=agency, dataset=dataset, on=TODAY)


def test_supply_under_the_version_in_force() -> None:
    assert _permit(decide_supply_under([_agreement(1)], _supply())).agreement_version == 1
    assert _deny_code(decide_supply_under([], _supply())) == "agreement_unknown"
    assert _deny_code(decide_supply_under([_agreement(1)], _supply("council"))) == (
        "agency_not_provider"
    )


def test_supply_stops_at_once_when_a_pending_version_drops_the_dataset() -> None:
    v1 = _agreement(1, datasets=("attendance", "exclusions"))
    v2 = _agreement(2, effective_from=V2_FROM, datasets=("exclusions",))
    assert _deny_code(decide_supply_under([v1, v2], _supply())) == "dataset_unknown"
    _permit(decide_supply_under([v1, v2], _supply(dataset="exclusions")))


def test_supply_stops_at_once_when_a_pending_version_changes_the_provider() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, provider="council")
    assert _deny_code(decide_supply_under([_agreement(1), v2], _supply())) == (
        "agency_not_provider"
    )
    # The new provider waits for v2's date: it is not v1's provider.
    assert _deny_code(decide_supply_under([_agreement(1), v2], _supply("council"))) == (
        "agency_not_provider"
    )


def test_supply_of_a_dataset_only_a_pending_version_adds_waits_for_its_date() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, datasets=("attendance", "exclusions"))
    versions = [_agreement(1), v2]
    assert _deny_code(decide_supply_under(versions, _supply(dataset="exclusions"))) == (
        "dataset_unknown"
    )
    later = SupplyRequest(agency="school", dataset="exclusions", on=V2_FROM)
    assert _permit(decide_supply_under(versions, later)).agreement_version == 2


def test_a_suspended_pending_version_does_not_stop_supply() -> None:
    v2 = _agreement(2, effective_from=V2_FROM, datasets=("exclusions",), status="suspended")
    _permit(decide_supply_under([_agreement(1), v2], _supply()))
