"""The agreement register over HTTP: what a party's DPO reads, uploads, approves and changes.

Reads show only agreements the calling agency is a party to. Every change is
audited by the service, refusals included.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from agreements.approval import content_digest
from agreements.decision import Deny, current_version, review_warnings
from agreements.loader import parse_agreement
from agreements.models import Agreement
from agreements.policytests import run_policy_tests
from agreements.terms import Approval
from broker.errors import NotFound
from broker.lifecycle import VersionSummary
from broker.web.authorise import AgencyDep, PrincipalDep
from broker.web.deps import BrokerDep
from broker.web.schemas import (
    AgreementDocumentIn,
    AgreementOut,
    ApprovalIn,
    ApprovalOut,
    ErrorOut,
    LifecycleOut,
    PathInt,
    PolicyTestOut,
    ReasonIn,
    ValidationOut,
    VersionDocumentOut,
    VersionOut,
)

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])

_ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)}


@router.get("", response_model=list[AgreementOut], responses=_ERRORS)  # type: ignore[arg-type]
def list_agreements(principal: PrincipalDep, broker: BrokerDep) -> list[AgreementOut]:
    """The agreements the calling agency is a party to (all for the administrator)."""
    registry = broker.registry
    today = broker.today()
    out = []
    for agreement_id in registry.ids():
        versions = registry.versions(agreement_id)
        agreement = current_version(versions, today) or versions[-1]
        party = None if principal.agency is None else agreement.party(principal.agency)
        if party is not None or principal.agency is None:
            out.append(
                AgreementOut(
                    id=agreement.id,
                    version=agreement.version,
                    title=agreement.title,
                    status=agreement.status,
                    roles=[] if party is None else list(party.roles),
                    review_by=agreement.review_by,
                    expires_on=agreement.expires_on,
                    warnings=list(review_warnings(agreement, today)),
                )
            )
    return out


@router.post("/validate", response_model=ValidationOut, responses=_ERRORS)  # type: ignore[arg-type]
def validate_document(body: AgreementDocumentIn, _agency: AgencyDep) -> ValidationOut:
    """Validate a draft and run its policy tests; stores nothing. Problems answer 422."""
    agreement = parse_agreement(body.document, source="upload")
    return ValidationOut(
        valid=True,
        id=agreement.id,
        version=agreement.version,
        digest=content_digest(agreement),
        policy_tests=_policy_tests(agreement),
    )


@router.post(
    "/drafts",
    response_model=VersionOut,
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def upload_draft(body: AgreementDocumentIn, agency: AgencyDep, broker: BrokerDep) -> VersionOut:
    """Store a new draft version of an agreement the caller is a party to."""
    draft = broker.agreements.upload_draft(body.document, actor=agency, today=broker.today())
    return _version_out(_summary(broker, agency, draft.id, draft.version))


@router.get("/{agreement_id}/versions", response_model=list[VersionOut], responses=_ERRORS)  # type: ignore[arg-type]
def list_versions(
    agreement_id: str, principal: PrincipalDep, broker: BrokerDep
) -> list[VersionOut]:
    """Every version of one agreement, oldest first, with status and approvals."""
    summaries = _summaries(broker, principal.agency, agreement_id)
    return [_version_out(s) for s in summaries]


@router.get(
    "/{agreement_id}/versions/{version}",
    response_model=VersionDocumentOut,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def show_version(
    agreement_id: str, version: PathInt, principal: PrincipalDep, broker: BrokerDep
) -> VersionDocumentOut:
    """One version with its whole document (as JSON)."""
    summary = _summary(broker, principal.agency, agreement_id, version)
    return VersionDocumentOut(
        **_version_out(summary).model_dump(),
        document=summary.agreement.model_dump(mode="json"),
    )


@router.post(
    "/{agreement_id}/versions/{version}/approvals",
    response_model=VersionOut,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def approve_version(
    agreement_id: str, version: PathInt, body: ApprovalIn, agency: AgencyDep, broker: BrokerDep
) -> VersionOut:
    """Record the calling party's signed approval of this exact version."""
    approval = Approval(party=agency, **body.model_dump())
    broker.agreements.approve(agreement_id, version, approval, actor=agency)
    return _version_out(_summary(broker, agency, agreement_id, version))


@router.post(
    "/{agreement_id}/versions/{version}/activate",
    response_model=VersionOut,
    responses=_ERRORS,  # type: ignore[arg-type]
)
def activate_version(
    agreement_id: str, version: PathInt, agency: AgencyDep, broker: BrokerDep
) -> VersionOut:
    """Put an approved version into force from its effective date (lead party only)."""
    broker.agreements.activate(agreement_id, version, actor=agency)
    return _version_out(_summary(broker, agency, agreement_id, version))


@router.post("/{agreement_id}/suspend", response_model=LifecycleOut, responses=_ERRORS)  # type: ignore[arg-type]
def suspend(
    agreement_id: str, body: ReasonIn, agency: AgencyDep, broker: BrokerDep
) -> LifecycleOut:
    """Stop all sharing under this agreement at once (any party), giving a reason."""
    changed = broker.agreements.suspend(agreement_id, body.reason, actor=agency)
    return LifecycleOut(id=agreement_id, changed_versions=changed, status="suspended")


@router.post("/{agreement_id}/resume", response_model=LifecycleOut, responses=_ERRORS)  # type: ignore[arg-type]
def resume(agreement_id: str, agency: AgencyDep, broker: BrokerDep) -> LifecycleOut:
    """Lift a suspension (lead party only)."""
    changed = broker.agreements.resume(agreement_id, actor=agency)
    return LifecycleOut(id=agreement_id, changed_versions=changed, status="active")


@router.post("/{agreement_id}/terminate", response_model=LifecycleOut, responses=_ERRORS)  # type: ignore[arg-type]
def terminate(
    agreement_id: str, body: ReasonIn, agency: AgencyDep, broker: BrokerDep
) -> LifecycleOut:
    """End the agreement for good (lead party only), giving a reason."""
    changed = broker.agreements.terminate(agreement_id, body.reason, actor=agency)
    return LifecycleOut(id=agreement_id, changed_versions=changed, status="terminated")


def _summaries(broker: BrokerDep, agency: str | None, agreement_id: str) -> list[VersionSummary]:
    summaries = broker.agreements.summaries(agreement_id, broker.today())
    # Non-parties learn nothing, not even that the agreement exists (None: the administrator).
    if agency is not None and all(s.agreement.party(agency) is None for s in summaries):
        raise NotFound(f"agreement '{agreement_id}' is not held by the broker")
    return summaries


def _summary(
    broker: BrokerDep, agency: str | None, agreement_id: str, version: int
) -> VersionSummary:
    found = next(
        (s for s in _summaries(broker, agency, agreement_id) if s.agreement.version == version),
        None,
    )
    if found is None:
        raise NotFound(f"agreement '{agreement_id}' has no version {version}")
    return found


def _version_out(summary: VersionSummary) -> VersionOut:
    agreement = summary.agreement
    approved = {a.party for a in agreement.approvals}
    return VersionOut(
        id=agreement.id,
        version=agreement.version,
        title=agreement.title,
        status=agreement.status,
        effective_status=summary.effective_status,
        status_reason=agreement.status_reason,
        effective_from=agreement.effective_from,
        review_by=agreement.review_by,
        expires_on=agreement.expires_on,
        digest=summary.digest,
        source=summary.source,
        created_at=summary.created_at,
        created_by=summary.created_by,
        updated_at=summary.updated_at,
        approvals=[
            ApprovalOut(party=a.party, approver=a.approver, role=a.role, approved_on=a.approved_on)
            for a in agreement.approvals
        ],
        awaiting_approval=[p.id for p in agreement.parties if p.id not in approved],
        warnings=list(summary.warnings),
    )


def _policy_tests(agreement: Agreement) -> list[PolicyTestOut]:
    return [
        PolicyTestOut(
            name=result.test.name,
            expect=result.test.expect,
            decision="refuse" if isinstance(result.decision, Deny) else "permit",
            rule=result.rule,
            passed=result.passed,
            explanation=result.explanation,
        )
        for result in run_policy_tests(agreement)
    ]
