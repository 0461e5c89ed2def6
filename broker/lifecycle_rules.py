"""The rules the agreement register applies to lifecycle changes, as small pure checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date

from agreements.approval import check_approval, public_key_problem
from agreements.models import Agreement
from agreements.terms import Approval
from broker.errors import AgreementError, Refused, ValidationError
from broker.interfaces import AgreementRow

MAX_REASON = 500


def agreement_of(row: AgreementRow) -> Agreement:
    stored = Agreement.model_validate(json.loads(row.document))
    return stored.model_copy(update={"status": row.status, "status_reason": row.status_reason})


def effective_status(agreement: Agreement, in_force: Agreement | None, today: date) -> str:
    if agreement.status != "active":
        return agreement.status
    if in_force is not None and agreement.version < in_force.version:
        return "superseded"
    if agreement.effective_from > today:
        return "active_from_effective_date"
    if today >= agreement.expires_on:
        return "expired"
    return "active"


def require_lead(agreement: Agreement, actor: str, operation: str) -> None:
    if actor == "operator":
        return
    leads = [p.id for p in agreement.parties if "lead" in p.roles]
    allowed = leads or [p.id for p in agreement.parties]
    if actor not in allowed:
        raise Refused(
            f"only the lead party ({', '.join(allowed)}) may {operation} agreement "
            f"'{agreement.id}'",
            code="not_lead_party",
        )


def require_all_approved(agreement: Agreement) -> None:
    approved = {a.party for a in agreement.approvals}
    missing = [p.id for p in agreement.parties if p.id not in approved]
    if missing:
        raise AgreementError(
            f"agreement '{agreement.id}' version {agreement.version} is not approved by "
            f"{', '.join(missing)}; every party must approve it before it can be active",
            code="not_approved",
        )


def check_registered_keys(
    agreement: Agreement,
    approvals: Iterable[Approval],
    trusted: dict[str, set[str]],
    *,
    everywhere: bool,
) -> None:
    """Where a party has registered approver keys (or ``everywhere``), approvals must use them."""
    for approval in approvals:
        if everywhere or approval.party in trusted:
            verdict = check_approval(agreement, approval, trusted)
            if verdict.problem is not None:
                raise AgreementError(verdict.problem, code="approval_invalid")


def check_public_key(public_key: str) -> None:
    problem = public_key_problem(public_key)
    if problem is not None:
        raise ValidationError(problem, code="approver_key_invalid")


def clean_reason(reason: str) -> str:
    cleaned = reason.strip()
    if not cleaned or len(cleaned) > MAX_REASON:
        raise ValidationError(
            f"give a reason of 1 to {MAX_REASON} characters", code="reason_invalid"
        )
    return cleaned
