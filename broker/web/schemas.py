"""Request and response bodies of the HTTP API (the published contract)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from audit.events import LoggedEntry

# The largest value a PostgreSQL INTEGER column holds (sequence numbers, sizes,
# versions are such columns). Integers in paths and queries, and those bodies use
# as keys, are bounded by it, so a huge one is a 422 that the schema declares, never
# an overflow in the database (a 500 on SQLite, a 503 on PostgreSQL before this).
SQL_INT_MAX = 2**31 - 1
SQL_INT_MIN = -(2**31)
PathInt = Annotated[int, Path(ge=SQL_INT_MIN, le=SQL_INT_MAX)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenisedIn(_Body):
    """Which linkage key a batch tokenised at source was made with."""

    key_check: str = Field(
        min_length=1,
        max_length=64,
        description="key_check from the agreement's linkage key file",
    )
    key_version: int = Field(
        ge=1, le=SQL_INT_MAX, description="key_version from the linkage key file"
    )


class BatchIn(_Body):
    """A batch of records for one dataset, in clear or tokenised at source.

    In clear each record holds record_id, the dataset's identifiers and its
    fields. With ``tokenised`` each record holds record_id, ``tokens`` (match
    key name to 64 lower-case hex token) and the fields, and no identifier.
    """

    records: list[Any] = Field(
        description="Records as JSON objects: record_id, the dataset's identifiers (or, when "
        "tokenised, 'tokens'), its fields"
    )
    tokenised: TokenisedIn | None = Field(
        default=None,
        description="Present only when the agency tokenised the records with the linkage key",
    )


class ProblemOut(BaseModel):
    code: str
    message: str
    location: dict[str, Any]


class BatchOut(BaseModel):
    batch_id: str
    accepted: int
    new_subjects: int
    linked: int
    linked_by_rule: dict[str, int]
    data_quality: list[ProblemOut]
    audit_entries: list[int]
    warnings: list[str] = Field(default_factory=list)
    tokenised_at_source: bool = False


class RekeyOut(BaseModel):
    """What a rekey batch added during a linkage key rotation."""

    records: int = Field(description="Stored records that now have tokens under the new key")
    tokens: int
    key_version: int = Field(description="The linkage key version the new tokens were made with")
    audit_entry: int


IdentifierName = Literal[
    "given_name", "family_name", "date_of_birth", "postcode", "nhs_number", "upn"
]


class LookupIn(_Body):
    """Identifiers of a young person, the purpose, and optionally the fields wanted."""

    purpose: str = Field(min_length=1, max_length=64)
    identifiers: dict[IdentifierName, str] = Field(
        description="date_of_birth in ISO 8601 (YYYY-MM-DD)"
    )
    fields: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="'dataset.field' names; omit to receive everything the agreement permits",
    )


class ReleasedRecordOut(BaseModel):
    reference: str | None
    fields: dict[str, Any]


class HoldingOut(BaseModel):
    agency: str
    dataset: str
    records: list[ReleasedRecordOut]


class AgreementRef(BaseModel):
    id: str
    version: int


class LookupOut(BaseModel):
    matched: bool
    pseudonym: str | None
    agreement: AgreementRef
    purpose: str
    holdings: list[HoldingOut]
    released: list[str]
    audit_entry: int
    warnings: list[str] = Field(default_factory=list)


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    outcome: str
    reason_code: str | None
    agreement_id: str | None
    agreement_version: int | None
    purpose: str | None
    dataset_id: str | None
    request_id: str | None
    detail: dict[str, Any]
    leaf_hash: str


def audit_entry_out(entry: LoggedEntry, *, show_subject: bool) -> AuditEntryOut:
    """An entry as a caller sees it; ``show_subject`` only for the IG lead's view.

    The broker-internal subject id is the same for every recipient; showing it to
    agencies would let two of them join what their separate pseudonyms keep apart.
    """
    event = entry.event
    detail = (
        dict(event.detail)
        if show_subject
        else {k: v for k, v in event.detail.items() if k != "subject"}
    )
    return AuditEntryOut(
        seq=entry.seq,
        at=entry.at,
        actor=event.actor,
        action=event.action,
        outcome=event.outcome,
        reason_code=event.reason_code,
        agreement_id=event.agreement_id,
        agreement_version=event.agreement_version,
        purpose=event.purpose,
        dataset_id=event.dataset_id,
        request_id=event.request_id,
        detail=detail,
        leaf_hash=entry.leaf_hash,
    )


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_after: int | None


class AuditHeadOut(BaseModel):
    size: int
    root_hash: str


class LogKeyOut(BaseModel):
    origin: str
    public_key: str = Field(description="Ed25519 public key, base64 of the raw 32 bytes")


class CheckpointOut(BaseModel):
    size: int
    root_hash: str
    created_at: str
    note: str = Field(description="The signed note, with every witness cosignature line")
    witnesses: list[str]


class InclusionProofOut(BaseModel):
    entry: int
    leaf_index: int
    size: int
    leaf_hash: str
    path: list[str]
    checkpoint: CheckpointOut


class ConsistencyProofOut(BaseModel):
    old_size: int
    new_size: int
    path: list[str]


class CosignatureIn(_Body):
    note: str = Field(min_length=1, max_length=16 * 1024)


class CosignatureOut(BaseModel):
    size: int
    added: list[str]


class AgreementOut(BaseModel):
    id: str
    version: int
    title: str
    status: str
    roles: list[str]
    review_by: date | None = None
    expires_on: date | None = None
    warnings: list[str] = Field(default_factory=list)


class AgreementDocumentIn(_Body):
    """An agreement version as YAML text, exactly as a DPO would write the file."""

    document: str = Field(min_length=1, max_length=1024 * 1024)


class PolicyTestOut(BaseModel):
    name: str
    expect: str
    decision: str
    rule: str
    passed: bool
    explanation: str


class ValidationOut(BaseModel):
    valid: bool
    id: str
    version: int
    digest: str
    policy_tests: list[PolicyTestOut]


class ApprovalIn(_Body):
    """One party's Ed25519 signature over the version's canonical form."""

    approver: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=200)
    approved_on: date
    public_key: str = Field(min_length=40, max_length=60)
    signature: str = Field(min_length=80, max_length=100)


class ApprovalOut(BaseModel):
    party: str
    approver: str
    role: str
    approved_on: date


class VersionOut(BaseModel):
    id: str
    version: int
    title: str
    status: str
    effective_status: str
    status_reason: str | None
    effective_from: date
    review_by: date | None
    expires_on: date
    digest: str
    source: str
    created_at: str
    created_by: str
    updated_at: str
    approvals: list[ApprovalOut]
    awaiting_approval: list[str]
    warnings: list[str]


class VersionDocumentOut(VersionOut):
    document: dict[str, Any]


class ReasonIn(_Body):
    reason: str = Field(min_length=1, max_length=500)


class LifecycleOut(BaseModel):
    id: str
    changed_versions: int
    status: str


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    agreements: int
    audit_entries: int


class ErrorDetail(BaseModel):
    code: str
    message: str
    location: dict[str, Any]
    problems: list[ProblemOut]


class ErrorOut(BaseModel):
    error: ErrorDetail


# --- notifications ---------------------------------------------------------------


class ConditionIn(_Body):
    """One test on a field released to you: give exactly one of equals, in, age_under."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="A field of rule.dataset")
    equals: str | int | bool | None = Field(
        default=None, description="The released value must be exactly this"
    )
    in_: list[str | int | bool] | None = Field(
        default=None,
        alias="in",
        min_length=1,
        max_length=50,
        description="The released value must be one of these",
    )
    age_under: int | None = Field(
        default=None,
        ge=1,
        le=150,
        description="For a field released as an age or age band: younger than this (a band "
        "must lie wholly below it)",
    )


class RuleIn(_Body):
    """Records of one dataset that meet every condition; an empty list is refused."""

    dataset: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")
    all_of: list[ConditionIn] = Field(max_length=20)


class SubscriptionIn(_Body):
    """Subscribe to notifications for one purpose, at a webhook URL."""

    purpose: str = Field(min_length=1, max_length=64)
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="https (http only to a loopback address in development)",
    )
    rule: RuleIn


class ConditionOut(BaseModel):
    field: str
    op: str = Field(description="equals, in or age_under")
    values: list[str | int | bool]


class RuleOut(BaseModel):
    dataset: str
    all_of: list[ConditionOut]


class SubscriptionOut(BaseModel):
    id: str
    agreement_id: str
    purpose: str
    rule: RuleOut
    url: str
    created_at: str
    cancelled_at: str | None = None
    secret: str | None = Field(
        default=None,
        description="The signing secret (whsec_...), in the response that creates the "
        "subscription only; keep it, it is never shown again",
    )
    audit_entry: int | None = None


class SubscriptionListOut(BaseModel):
    subscriptions: list[SubscriptionOut]


class NotificationOut(BaseModel):
    seq: int = Field(description="Position for paging: pass the last one seen as 'after'")
    id: str = Field(description="The idempotency id, sent as the webhook-id header")
    subscription_id: str
    purpose: str
    dataset: str
    status: str = Field(description="pending, delivered, acknowledged or failed")
    attempts: int
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    acknowledged_at: str | None
    body: dict[str, Any] | None = Field(description="Exactly what the webhook carries")
    withheld: str | None = Field(
        default=None, description="Why the body is not released now (a stable code)"
    )


class NotificationPageOut(BaseModel):
    notifications: list[NotificationOut]
    next_after: int | None
    audit_entry: int


class AcknowledgeIn(_Body):
    ids: list[str] = Field(min_length=1, max_length=500)


class AcknowledgeOut(BaseModel):
    acknowledged: list[str]
    not_found: list[str] = Field(description="Not yours, not known, or acknowledged before")


class DeliveryAttemptOut(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    error: str | None = Field(description="The kind of failure when no status came back")
    duration_ms: int


class DeliveryLogOut(BaseModel):
    notification_id: str
    status: str
    attempts: list[DeliveryAttemptOut]


AggregateDimensionName = Literal["postcode_district", "age_band", "sex", "week", "month"]
_FIELD_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_DATASET_NAME = r"^[a-z0-9][a-z0-9\-]{0,62}$"


class AggregateDimensionIn(_Body):
    """One way to break the count down, and the measured dataset's field it reads."""

    by: AggregateDimensionName
    field: str | None = Field(
        default=None,
        pattern=_FIELD_NAME,
        description="Defaults: postcode for postcode_district, date_of_birth for age_band, "
        "sex for sex; week and month must name a date field",
    )


class AggregateConditionIn(_Body):
    """Count only where a field, in the form released to you, equals a value."""

    field: str = Field(
        pattern=r"^([a-z0-9][a-z0-9\-]{0,62}\.)?[a-z][a-z0-9_]{0,62}$",
        description="A field of the measured dataset, or 'dataset.field' of another dataset: "
        "then only young people who also have such a record there are counted",
    )
    equals: bool | int | float | str = Field(
        description="Compared with the released form: true or false for a flag, YYYY-MM for "
        "a month, a label such as 14-15 for an age band, an outward code for a district"
    )


class AggregateMeasureIn(_Body):
    """What is counted: young people (linked subjects) or records, of one dataset."""

    count: Literal["subjects", "records"]
    dataset: str = Field(pattern=_DATASET_NAME)
    where: list[AggregateConditionIn] = Field(default_factory=list, max_length=10)


class AggregateIn(_Body):
    """A table of counts for a purpose: a measure broken down by one or two dimensions."""

    purpose: str = Field(min_length=1, max_length=64)
    measure: AggregateMeasureIn
    dimensions: list[AggregateDimensionIn] = Field(min_length=1, max_length=2)
    format: Literal["json", "csv"] | None = Field(
        default=None, description="csv, or send 'Accept: text/csv'; json otherwise"
    )


class AggregateDimensionOut(BaseModel):
    by: str
    field: str


class AggregateCellOut(BaseModel):
    row: str | None = Field(description="null in a total over the rows")
    column: str | None = Field(description="null in a total over the columns, or a one-way table")
    value: int | None = Field(description="The published count, or null when it is withheld")


class AggregateOut(BaseModel):
    agreement: AgreementRef
    purpose: str
    count: str
    dataset: str
    dimensions: list[AggregateDimensionOut]
    rows: list[str]
    columns: list[str]
    cells: list[AggregateCellOut]
    minimum_cell_size: int
    rounding_base: int
    redacted_at_or_below: int
    audit_entry: int
    warnings: list[str] = Field(default_factory=list)


# -- linkage engine (issue 5) ---------------------------------------------------


class PossibleMatchOut(BaseModel):
    """One queued pair as its holder sees it: per-field levels, never values."""

    pair_id: str
    probability: float
    # Field name -> agree, nearly_agree, disagree or missing.
    fields: dict[str, str]
    state: str
    # The caller's own record reference(s); the other side's is never shown.
    your_record: str | None = None
    your_other_record: str | None = None
    your_decision: str | None = None


class PossibleMatchesOut(BaseModel):
    """The possible matches the caller may see under one agreement."""

    agreement_id: str
    pairs: list[PossibleMatchOut]


class PossibleMatchDecisionIn(_Body):
    """A holder's decision on a queued pair, with its reason (kept out of the audit log)."""

    decision: Literal["same", "different"]
    reason: str = Field(min_length=1, max_length=500)


class PossibleMatchDecisionOut(BaseModel):
    """The pair's state after the decision; ``merged`` when both holders said same."""

    pair_id: str
    state: str
    merged: bool


class LinkageQualityOut(BaseModel):
    """Estimated linkage quality of an agreement's records, and its queue."""

    agreement_id: str
    records: int
    estimated_precision: float
    estimated_recall: float
    pairs_per_band: dict[str, int]
    queue: dict[str, int]
