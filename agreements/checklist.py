"""The ICO data sharing code checklist: what a DPO expects an agreement to record.

The loader accepts any agreement that is internally consistent; this checklist
judges whether it is a good one, as the UK ICO's data sharing code of practice
describes. Errors are gaps a DPO would not sign; warnings are weaknesses to fix
or to justify in the agreement. Each check names the expectation it implements.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from agreements.models import Agreement, FieldSpec, Release, ReleasedField

__all__ = ["Finding", "check_agreement", "summarise"]

PathPart = str | int
Severity = Literal["error", "warning"]

_SENSITIVE = {"special_category": "special category", "criminal_offence": "criminal offence"}
# The coarser form each field type can leave in instead of its value (see references._FORM_TYPES).
_COARSER = {"date": "month", "integer": "flag", "number": "flag", "postcode": "postcode_district"}
_MATCH_KEY_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "nhs": ("nhs_number",),
    "upn": ("upn",),
    "name_dob_postcode": ("given_name", "family_name", "date_of_birth", "postcode"),
    "variant_dob_postcode": ("given_name", "family_name", "date_of_birth", "postcode"),
    "swapped_names_dob_postcode": ("given_name", "family_name", "date_of_birth", "postcode"),
}
_DEFAULT_REVIEW_MONTHS = 12
_MAX_LIFE_MONTHS = 36
# Six calendar years hold at most two leap days; only a longer period is flagged.
_SIX_YEARS_DAYS = 6 * 365 + 2
_DUE_SOON_DAYS = 30
_CELL_SIZE_FLOOR = 3
_CELL_SIZE_USUAL = 5
# (release index, field index, release, released field, its spec)
_Shared = tuple[int, int, Release, ReleasedField, FieldSpec]


@dataclass(frozen=True)
class Finding:
    """One checklist item an agreement misses or meets weakly, and where in the document."""

    severity: Severity
    code: str
    message: str
    path: tuple[PathPart, ...]


def _error(code: str, message: str, path: tuple[PathPart, ...]) -> Finding:
    return Finding("error", code, message, path)


def _warning(code: str, message: str, path: tuple[PathPart, ...]) -> Finding:
    return Finding("warning", code, message, path)


def _add_months(start: date, months: int) -> date:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def _released(agreement: Agreement) -> Iterator[_Shared]:
    """Every released field with its spec; references the loader would reject are skipped."""
    for r_index, release in enumerate(agreement.releases):
        for f_index, released in enumerate(release.fields):
            dataset = agreement.dataset(released.dataset)
            spec = dataset.releasable(released.field) if dataset is not None else None
            if spec is not None:
                yield r_index, f_index, release, released, spec


def _review_date(agreement: Agreement) -> Iterable[Finding]:
    # ICO code: an agreement is reviewed regularly, at a date set in the agreement itself.
    review = agreement.review_by
    if review is None:
        yield _error(
            "review_date_missing",
            "no review date: set review_by (usually within 12 months of effective_from)",
            ("review_by",),
        )
        return
    months = agreement.review.frequency_months if agreement.review else _DEFAULT_REVIEW_MONTHS
    if review > _add_months(agreement.effective_from, months):
        yield _warning(
            "review_interval_long",
            f"review_by {review.isoformat()} is more than {months} months after effective_from "
            f"{agreement.effective_from.isoformat()}; bring the review forward",
            ("review_by",),
        )


def _review_timing(agreement: Agreement, today: date) -> Iterable[Finding]:
    # ICO code: reviews happen when due; an overdue review means sharing on stale terms.
    review = agreement.review_by
    if review is None:
        return
    if review < today:
        stops = review + timedelta(days=agreement.grace_days)
        when = "stopped" if stops < today else "stops"
        yield _warning(
            "review_overdue",
            f"review was due on {review.isoformat()}; sharing {when} after {stops.isoformat()} "
            "unless the parties review and renew the agreement",
            ("review_by",),
        )
    elif (review - today).days <= _DUE_SOON_DAYS:
        yield _warning(
            "review_due_soon",
            f"review is due on {review.isoformat()}; arrange it with the parties' DPOs now",
            ("review_by",),
        )


def _lifetime(agreement: Agreement) -> Iterable[Finding]:
    # ICO code: sharing lasts no longer than needed; a long-lived agreement drifts from practice.
    limit = _add_months(agreement.effective_from, _MAX_LIFE_MONTHS)
    if agreement.expires_on > limit:
        yield _warning(
            "expiry_long",
            f"expires_on {agreement.expires_on.isoformat()} is more than 3 years after "
            "effective_from; set an earlier expiry and renew the agreement when it ends",
            ("expires_on",),
        )


def _parties(agreement: Agreement) -> Iterable[Finding]:
    # ICO code: each organisation names a single point of contact for the sharing.
    contacted = {c.party for c in agreement.contacts}
    approved = {a.party for a in agreement.approvals}
    received = {r.recipient for r in agreement.releases}
    mixed = {p.controller for p in agreement.parties} == {"joint", "separate"}
    for index, party in enumerate(agreement.parties):
        if party.id not in contacted:
            yield _error(
                "party_without_contact",
                f"party '{party.id}' names no contact: add one under contacts",
                ("parties", index),
            )
        # ICO code: every party signs the agreement before sharing under it.
        if agreement.status in ("approved", "active") and party.id not in approved:
            yield _error(
                "approval_missing",
                f"the agreement is {agreement.status} but party '{party.id}' has not approved "
                "this version; obtain its DPO's approval",
                ("parties", index),
            )
        # ICO code: share only with those who need the data; an idle recipient is a loose end.
        if "recipient" in party.roles and party.id not in received:
            yield _warning(
                "recipient_receives_nothing",
                f"party '{party.id}' is a recipient but no release is made to it; add one or "
                "remove the recipient role",
                ("parties", index, "roles"),
            )
        # UK GDPR Article 26: joint controllers document their arrangement and who does what.
        if mixed and party.controller == "joint":
            yield _warning(
                "joint_controller_among_separate",
                f"party '{party.id}' is a joint controller while others are separate; document "
                "the joint arrangement (Article 26) and with whom it is held",
                ("parties", index, "controller"),
            )


def _sections(agreement: Agreement) -> Iterable[Finding]:
    # ICO code: the agreement explains how individuals exercise their rights.
    if agreement.rights is None:
        yield _error(
            "rights_missing",
            "no rights section: say where and how individuals exercise their rights",
            ("rights",),
        )
    # ICO code (and Article 32): agreed security measures for the shared data.
    if not agreement.security:
        yield _error(
            "security_missing",
            "no security requirements: list the measures each party applies to shared data",
            ("security",),
        )
    # ICO code: what happens to shared data when a party leaves or the agreement ends.
    if agreement.termination is None:
        yield _error(
            "termination_missing",
            "no termination terms: set notice and what happens to shared data at the end",
            ("termination",),
        )
    # ICO code (accuracy principle): parties agree how they keep shared data accurate.
    if not agreement.data_quality:
        yield _warning(
            "data_quality_missing",
            "no data quality obligations: say how parties keep data accurate and correct errors",
            ("data_quality",),
        )
    # Accountability: the DPOs show what the agreement allows and, above all, refuses.
    if not agreement.policy_tests:
        yield _warning(
            "policy_tests_missing",
            "no policy tests: add example requests the agreement must permit and refuse",
            ("policy_tests",),
        )
    elif all(test.expect != "refuse" for test in agreement.policy_tests):
        yield _warning(
            "policy_tests_no_refusal",
            "no policy test expects a refusal: add one showing what must not be shared",
            ("policy_tests",),
        )


def _retention(agreement: Agreement) -> Iterable[Finding]:
    # ICO code (storage limitation): each dataset says how long it is kept, and why.
    life = (agreement.expires_on - agreement.effective_from).days
    for index, dataset in enumerate(agreement.datasets):
        retention = dataset.retention
        if retention is None:
            yield _error(
                "retention_missing",
                f"dataset '{dataset.id}' has no retention: set a period and its justification",
                ("datasets", index, "retention"),
            )
            continue
        where = ("datasets", index, "retention", "period_days")
        if retention.period_days > life:
            yield _warning(
                "retention_exceeds_agreement",
                f"dataset '{dataset.id}' is kept {retention.period_days} days, longer than the "
                f"agreement's own life of {life} days; shorten it or justify keeping it after",
                where,
            )
        if retention.period_days > _SIX_YEARS_DAYS:
            yield _warning(
                "retention_over_six_years",
                f"dataset '{dataset.id}' is kept {retention.period_days} days, more than six "
                "years; shorten it or justify the period",
                where,
            )


def _minimisation(agreement: Agreement) -> Iterable[Finding]:
    # ICO code (data minimisation): collect only what some release actually shares.
    shared = {(released.dataset, released.field) for *_, released, _ in _released(agreement)}
    for d_index, dataset in enumerate(agreement.datasets):
        for f_index, spec in enumerate(dataset.fields):
            if (dataset.id, spec.name) not in shared:
                yield _warning(
                    "field_never_released",
                    f"field '{spec.name}' of '{dataset.id}' is collected but never shared; "
                    "consider removing it (data minimisation)",
                    ("datasets", d_index, "fields", f_index),
                )


def _sensitive_fields(agreement: Agreement) -> Iterable[Finding]:
    # ICO code and Articles 9 and 10: sensitive data leaves in the coarsest form that serves.
    for r_index, f_index, release, released, spec in _released(agreement):
        label = _SENSITIVE.get(spec.classification)
        if label is None or released.form != "as_supplied":
            continue
        where = ("releases", r_index, "fields", f_index)
        if "aggregate" in release.outputs:
            yield _error(
                "sensitive_aggregate_as_supplied",
                f"{label} field '{released.field}' is released as supplied in aggregates, "
                "where small counts can identify people; coarsen or redact it",
                where,
            )
        elif spec.type in _COARSER:
            yield _warning(
                "sensitive_not_coarsened",
                f"{label} data released as supplied where a coarsened form would do: "
                f"release '{released.field}' as {_COARSER[spec.type]}",
                where,
            )


def _record_references(agreement: Agreement) -> Iterable[Finding]:
    # ICO code: revealing record references with sensitive data widens what can be traced.
    for r_index, release in enumerate(agreement.releases):
        if not release.reveal_record_reference:
            continue
        kinds = {spec.classification for i, _, _, _, spec in _released(agreement) if i == r_index}
        labels = sorted(_SENSITIVE[kind] for kind in kinds & _SENSITIVE.keys())
        if labels:
            yield _warning(
                "record_reference_with_sensitive_data",
                f"release to '{release.recipient}' reveals record references alongside "
                f"{' and '.join(labels)} data; review whether the recipient needs them",
                ("releases", r_index, "reveal_record_reference"),
            )


def _cell_sizes(agreement: Agreement) -> Iterable[Finding]:
    # ICO anonymisation guidance: small counts in published aggregates can identify people.
    for index, release in enumerate(agreement.releases):
        if "aggregate" not in release.outputs:
            continue
        size = release.minimum_cell_size
        if size < _CELL_SIZE_FLOOR:
            yield _error(
                "cell_size_too_small",
                f"minimum_cell_size {size} lets aggregates publish counts of 1 or 2; "
                f"set it to at least {_CELL_SIZE_FLOOR}, usually {_CELL_SIZE_USUAL}",
                ("releases", index, "minimum_cell_size"),
            )
        elif size < _CELL_SIZE_USUAL:
            yield _warning(
                "cell_size_small",
                f"minimum_cell_size {size} is below the usual {_CELL_SIZE_USUAL}; raise it "
                "or record why a smaller cell is safe",
                ("releases", index, "minimum_cell_size"),
            )


def _linkage(agreement: Agreement) -> Iterable[Finding]:
    # ICO code (accuracy): linkage relies only on identifiers the parties actually supply.
    for index, key in enumerate(agreement.linkage.match_keys):
        needed = _MATCH_KEY_IDENTIFIERS[key]
        providers = {d.provider for d in agreement.datasets if set(needed) <= set(d.identifiers)}
        if not providers:
            yield _warning(
                "match_key_unsupplied",
                f"match key '{key}' needs {', '.join(needed)}, which no dataset supplies; "
                "remove it or add the identifiers",
                ("linkage", "match_keys", index),
            )
        # A key only one provider supplies can never link that provider's records to another's.
        elif len(providers) == 1:
            yield _warning(
                "match_key_single_provider",
                f"match key '{key}' is supplied only by '{providers.pop()}', so it links "
                "nothing across providers; remove it or have another provider supply it",
                ("linkage", "match_keys", index),
            )


_CHECKS: tuple[Callable[[Agreement], Iterable[Finding]], ...] = (
    _review_date,
    _lifetime,
    _parties,
    _sections,
    _retention,
    _minimisation,
    _sensitive_fields,
    _record_references,
    _cell_sizes,
    _linkage,
)


def _order(finding: Finding) -> tuple[bool, tuple[tuple[int, int, str], ...], str]:
    # Paths mix list indexes and keys; compare indexes as numbers so 10 follows 9.
    path = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in finding.path)
    return finding.severity != "error", path, finding.code


def check_agreement(agreement: Agreement, *, today: date) -> list[Finding]:
    """Judge a loaded agreement against the ICO data sharing code checklist.

    ``today`` dates the review checks. Findings come errors first, then by path.
    An agreement the loader accepts may still have errors here.
    """
    findings = [finding for check in _CHECKS for finding in check(agreement)]
    findings.extend(_review_timing(agreement, today))
    return sorted(findings, key=_order)


def summarise(findings: Iterable[Finding]) -> tuple[int, int]:
    """How many findings are errors and how many warnings, as (errors, warnings)."""
    severities = [finding.severity for finding in findings]
    return severities.count("error"), severities.count("warning")
