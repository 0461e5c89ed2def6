"""Table definitions (SQLModel). Only the storage package imports this module.

No column holds a clear identifier: identifiers live only as match-key tokens,
and payloads are sealed with AES-256-GCM before they reach a row.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class Subject(SQLModel, table=True):
    """A linked person under one agreement; its id is random and means nothing outside."""

    __tablename__ = "subject"

    id: str = Field(primary_key=True, max_length=40)
    agreement_id: str = Field(max_length=64, index=True)
    created_at: str = Field(max_length=40)


class Batch(SQLModel, table=True):
    """One accepted batch of records."""

    __tablename__ = "batch"

    id: str = Field(primary_key=True, max_length=40)
    agreement_id: str = Field(max_length=64)
    dataset_id: str = Field(max_length=64)
    agency_id: str = Field(max_length=64)
    received_at: str = Field(max_length=40)
    record_count: int


class StoredRecord(SQLModel, table=True):
    """One record from a provider; its fields are sealed in ``payload``."""

    __tablename__ = "record"
    __table_args__ = (
        UniqueConstraint("agreement_id", "dataset_id", "source_ref", name="uq_record_source"),
        Index("ix_record_subject", "subject_id", "agreement_id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    agreement_id: str = Field(max_length=64)
    # The agreement version the record was received under: it keeps governing the record.
    agreement_version: int = 1
    dataset_id: str = Field(max_length=64)
    agency_id: str = Field(max_length=64)
    source_ref: str = Field(max_length=128)
    subject_id: str = Field(foreign_key="subject.id", max_length=40)
    batch_id: str = Field(foreign_key="batch.id", max_length=40)
    received_at: str = Field(max_length=40)
    key_version: int
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class MatchToken(SQLModel, table=True):
    """A keyed hash of one match key of one record, pointing at the record's subject."""

    __tablename__ = "match_token"
    # The token leads the lookup index: it is the selective column, and a planner
    # given (agreement, match key) first would scan every token of that key.
    __table_args__ = (
        Index("ix_match_token_lookup", "token", "match_key", "agreement_id"),
        Index("ix_match_token_subject", "subject_id", "match_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agreement_id: str = Field(max_length=64)
    match_key: str = Field(max_length=32)
    token: str = Field(max_length=64)
    subject_id: str = Field(foreign_key="subject.id", max_length=40)
    record_id: str = Field(foreign_key="record.id", max_length=40)
    # Which version of the agreement's linkage key made the token: two live at once
    # only while a linkage key rotation is under way.
    key_version: int = Field(default=1)


class WrappedKey(SQLModel, table=True):
    """One version of a working key, wrapped under the master key; never held in clear."""

    __tablename__ = "wrapped_key"

    kind: str = Field(primary_key=True, max_length=16)
    agreement_id: str = Field(primary_key=True, max_length=64)
    recipient: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    state: str = Field(max_length=16)
    # NULL once destroyed: crypto-shredding leaves nothing to unwrap.
    wrapped: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    check_value: str = Field(max_length=32)
    master_check: str = Field(max_length=32)
    created_at: str = Field(max_length=40)
    changed_at: str = Field(max_length=40)


class AuditEntry(SQLModel, table=True):
    """One audit entry, a leaf of the log's Merkle tree (``leaf_hash``, hex)."""

    __tablename__ = "audit_entry"

    seq: int = Field(primary_key=True)
    at: str = Field(max_length=40)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=32)
    outcome: str = Field(max_length=16)
    reason_code: str | None = Field(default=None, max_length=64)
    agreement_id: str | None = Field(default=None, max_length=64)
    agreement_version: int | None = None
    purpose: str | None = Field(default=None, max_length=64)
    dataset_id: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=64)
    # The broker's random subject id (never an identity), copied from the detail so
    # that "everything about this young person" is an indexed search.
    subject_id: str | None = Field(default=None, max_length=40, index=True)
    detail: str = Field(sa_column=Column(Text, nullable=False))
    leaf_hash: str = Field(max_length=64)


class MerkleNode(SQLModel, table=True):
    """The hash of one perfect subtree: leaves [idx * 2**level, (idx + 1) * 2**level)."""

    __tablename__ = "merkle_node"

    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditCheckpoint(SQLModel, table=True):
    """A checkpoint of the log signed by the broker (a signed note)."""

    __tablename__ = "audit_checkpoint"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: str = Field(max_length=64)
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str = Field(max_length=40)


class Cosignature(SQLModel, table=True):
    """A witness's signature line on one checkpoint."""

    __tablename__ = "cosignature"

    checkpoint_size: int = Field(
        sa_column=Column(
            BigInteger,
            ForeignKey("audit_checkpoint.size"),
            primary_key=True,
            autoincrement=False,
        )
    )
    witness: str = Field(primary_key=True, max_length=256)
    line: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str = Field(max_length=40)


class WitnessKey(SQLModel, table=True):
    """A witness the broker accepts cosignatures from, by name, with its Ed25519 public key."""

    __tablename__ = "witness_key"

    name: str = Field(primary_key=True, max_length=256)
    public_key: str = Field(max_length=60)
    added_at: str = Field(max_length=40)


class AuditHead(SQLModel, table=True):
    """The single row holding the log's size and Merkle root; locked to serialise appends."""

    __tablename__ = "audit_head"

    id: int = Field(primary_key=True)
    size: int
    head_hash: str = Field(max_length=64)


class KeyCheck(SQLModel, table=True):
    """Which master key this database was written with (a check value, not the key)."""

    __tablename__ = "key_check"

    id: int = Field(primary_key=True)
    check_value: str = Field(max_length=32)
    created_at: str = Field(max_length=40)


class AgreementDocument(SQLModel, table=True):
    """One version of an agreement as the broker enforces it, with its lifecycle state."""

    __tablename__ = "agreement_document"

    agreement_id: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    status: str = Field(max_length=16)
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    document: str = Field(sa_column=Column(Text, nullable=False))
    digest: str = Field(max_length=64)
    source: str = Field(max_length=16)
    created_at: str = Field(max_length=40)
    created_by: str = Field(max_length=64)
    updated_at: str = Field(max_length=40)


class AgreementGeneration(SQLModel, table=True):
    """A counter bumped on every agreement change, so each worker knows to reload."""

    __tablename__ = "agreement_generation"

    id: int = Field(primary_key=True)
    generation: int


class ApproverKey(SQLModel, table=True):
    """An Ed25519 public key a party's DPO approves agreement versions with."""

    __tablename__ = "approver_key"
    __table_args__ = (UniqueConstraint("agency_id", "public_key", name="uq_approver_key"),)

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=64, index=True)
    public_key: str = Field(max_length=60)
    added_at: str = Field(max_length=40)
    revoked_at: str | None = Field(default=None, max_length=40)


class Job(SQLModel, table=True):
    """One background job: when it is next due, and which worker holds it while it runs.

    Workers claim a due row with ``SELECT ... FOR UPDATE SKIP LOCKED`` (on SQLite,
    ``BEGIN IMMEDIATE`` serialises them); the lease keeps a second worker from
    starting the same job while the first still runs it.
    """

    __tablename__ = "job"

    name: str = Field(primary_key=True, max_length=32)
    next_due_at: str = Field(max_length=40)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: str | None = Field(default=None, max_length=40)


class JobRun(SQLModel, table=True):
    """One run of a background job, for the scheduled time it answers; counts, never content."""

    __tablename__ = "job_run"
    # One run per scheduled time: the database itself refuses a second.
    __table_args__ = (UniqueConstraint("job", "due_at", name="uq_job_run_due"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=32)
    due_at: str = Field(max_length=40)
    # The scheduled time this run set for the next one: the runs of a job form a chain.
    next_due_at: str = Field(max_length=40)
    worker: str = Field(max_length=64)
    started_at: str = Field(max_length=40)
    finished_at: str | None = Field(default=None, max_length=40)
    outcome: str = Field(max_length=16)
    # The error's type or stable code when the run failed; never its message.
    error: str | None = Field(default=None, max_length=64)
    counts: str = Field(sa_column=Column(Text, nullable=False))


class NotificationSubscription(SQLModel, table=True):
    """A recipient's webhook subscription to records of one dataset that meet a rule.

    The signing secret is sealed under the agreement's data key (``key_version``),
    as payloads are; the broker needs it back to sign, so it is not hashed.
    """

    __tablename__ = "notification_subscription"
    __table_args__ = (
        Index("ix_notification_subscription_dataset", "agreement_id", "dataset_id"),
        Index("ix_notification_subscription_recipient", "agreement_id", "recipient"),
    )

    id: str = Field(primary_key=True, max_length=40)
    agreement_id: str = Field(max_length=64)
    purpose: str = Field(max_length=64)
    recipient: str = Field(max_length=64)
    dataset_id: str = Field(max_length=64)
    rule: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_version: int
    created_at: str = Field(max_length=40)
    cancelled_at: str | None = Field(default=None, max_length=40)


class Notification(SQLModel, table=True):
    """One notification to one subscription: its sealed body and where its delivery stands.

    ``seq`` orders a recipient's polling. ``record_id`` is not a foreign key: the
    retention job deletes records, and the notification outlives them until its
    own body is erased. Delivery claims due rows with FOR UPDATE SKIP LOCKED.
    """

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("subscription_id", "record_id", name="uq_notification_record"),
        Index("ix_notification_due", "status", "next_attempt_at"),
        Index("ix_notification_recipient", "agreement_id", "recipient", "seq"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=40, unique=True)
    subscription_id: str = Field(foreign_key="notification_subscription.id", max_length=40)
    agreement_id: str = Field(max_length=64)
    agreement_version: int
    purpose: str = Field(max_length=64)
    recipient: str = Field(max_length=64)
    dataset_id: str = Field(max_length=64)
    record_id: str = Field(max_length=40)
    created_at: str = Field(max_length=40)
    key_version: int
    # NULL once erased at the end of the dataset's retention period.
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    status: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: str | None = Field(default=None, max_length=40)
    delivered_at: str | None = Field(default=None, max_length=40)
    acknowledged_at: str | None = Field(default=None, max_length=40)


class NotificationAttempt(SQLModel, table=True):
    """One push of a notification: HTTP status or failure kind, never a response body."""

    __tablename__ = "notification_attempt"
    __table_args__ = (
        UniqueConstraint("notification_id", "attempt", name="uq_notification_attempt"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_id: str = Field(foreign_key="notification.id", max_length=40)
    attempt: int
    at: str = Field(max_length=40)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=64)
    duration_ms: int


class IngestIdempotency(SQLModel, table=True):
    """The first result of one batch under its idempotency key, so that a retry replays it.

    The client's key is kept only as its SHA-256 digest and the request only as a
    digest of its body; ``response`` is the broker's own first answer (counts,
    batch id, audit sequence numbers), never a record. The unique constraint is
    what stores a batch at most once: the row is inserted in the batch's own
    transaction, so of two concurrent requests with one key only one commits.
    """

    __tablename__ = "ingest_idempotency"
    __table_args__ = (
        UniqueConstraint(
            "agency_id",
            "agreement_id",
            "dataset_id",
            "key_digest",
            name="uq_ingest_idempotency_key",
        ),
        Index("ix_ingest_idempotency_created", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=64)
    agreement_id: str = Field(max_length=64)
    dataset_id: str = Field(max_length=64)
    key_digest: str = Field(max_length=64)
    operation: str = Field(max_length=16)
    request_digest: str = Field(max_length=64)
    status_code: int
    response: str = Field(sa_column=Column(Text, nullable=False))
    batch_id: str | None = Field(default=None, max_length=40)
    created_at: str = Field(max_length=40)


class LookupBudgetCount(SQLModel, table=True):
    """Lookups one recipient agency made for one purpose on one day (UTC), against its budget.

    Counts only: which young people were looked up is in the audit log, not here.
    """

    __tablename__ = "lookup_budget"

    agreement_id: str = Field(max_length=64, primary_key=True)
    agency_id: str = Field(max_length=64, primary_key=True)
    purpose: str = Field(max_length=64, primary_key=True)
    day: str = Field(max_length=10, primary_key=True)
    used: int


class AgencyClient(SQLModel, table=True):
    """An agency system registered to authenticate with its own key (private_key_jwt).

    ``cert_thumbprint`` (hex SHA-256 of a TLS client certificate), when set, binds
    the client's tokens to that certificate. A disabled client is refused even
    with a token issued before it was disabled.
    """

    __tablename__ = "agency_client"

    client_id: str = Field(primary_key=True, max_length=80)
    agency_id: str = Field(max_length=64, index=True)
    role: str = Field(max_length=16)
    status: str = Field(max_length=16)
    cert_thumbprint: str | None = Field(default=None, max_length=64)
    created_at: str = Field(max_length=40)
    disabled_at: str | None = Field(default=None, max_length=40)


class ClientKey(SQLModel, table=True):
    """One public key of a client; ``not_after`` ends a replaced key after its grace period."""

    __tablename__ = "client_key"

    client_id: str = Field(foreign_key="agency_client.client_id", primary_key=True, max_length=80)
    key_id: str = Field(primary_key=True, max_length=40)
    alg: str = Field(max_length=16)
    public_key_pem: str = Field(sa_column=Column(Text, nullable=False))
    not_after: str | None = Field(default=None, max_length=40)
    created_at: str = Field(max_length=40)


class UsedAssertion(SQLModel, table=True):
    """A client assertion's jti, kept until the assertion expires so it is never accepted twice."""

    __tablename__ = "used_assertion"
    __table_args__ = (Index("ix_used_assertion_expires", "expires_at"),)

    client_id: str = Field(primary_key=True, max_length=80)
    jti: str = Field(primary_key=True, max_length=200)
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class PersonAccount(SQLModel, table=True):
    """A person's account (dpo, ig_lead, admin); the password only as an scrypt hash."""

    __tablename__ = "person_account"

    username: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=16)
    agency_id: str | None = Field(default=None, max_length=64)
    password_hash: str = Field(max_length=255)
    status: str = Field(max_length=16)
    created_at: str = Field(max_length=40)
    disabled_at: str | None = Field(default=None, max_length=40)


class RecordEncoding(SQLModel, table=True):
    """One record's linkage encodings (``EncodedRecord``): keyed tokens and Bloom bits."""

    __tablename__ = "record_encoding"

    record_id: str = Field(foreign_key="record.id", primary_key=True, max_length=40)
    agreement_id: str = Field(max_length=64)
    # JSON: token name -> keyed token; encoded field -> Bloom bits as hex.
    tokens: str = Field(sa_column=Column(Text, nullable=False))
    blooms: str = Field(sa_column=Column(Text, nullable=False))
    key_version: int


class LinkBlock(SQLModel, table=True):
    """One token of one record's encodings, for candidate lookup on arrival."""

    __tablename__ = "link_block"
    __table_args__ = (
        Index("ix_link_block_lookup", "token", "agreement_id"),
        Index("ix_link_block_record", "record_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agreement_id: str = Field(max_length=64)
    token: str = Field(max_length=64)
    record_id: str = Field(foreign_key="record.id", max_length=40)


class PossibleMatch(SQLModel, table=True):
    """A pair scored possible, waiting for both holders' decisions; levels only, never values."""

    __tablename__ = "possible_match"
    __table_args__ = (
        UniqueConstraint("left_record_id", "right_record_id", name="uq_possible_match_pair"),
        Index("ix_possible_match_queue", "agreement_id", "state"),
    )

    id: str = Field(primary_key=True, max_length=40)
    agreement_id: str = Field(max_length=64)
    left_record_id: str = Field(foreign_key="record.id", max_length=40)
    right_record_id: str = Field(foreign_key="record.id", max_length=40)
    left_agency: str = Field(max_length=64)
    right_agency: str = Field(max_length=64)
    levels: str = Field(max_length=16)
    probability: float
    state: str = Field(max_length=16)
    left_decision: str | None = Field(default=None, max_length=16)
    right_decision: str | None = Field(default=None, max_length=16)
    created_at: str = Field(max_length=40)
    resolved_at: str | None = Field(default=None, max_length=40)
