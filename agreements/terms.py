"""The governance sections of an agreement: contacts, terms, linkage, approvals and policy tests.

These are the parts of the ICO data sharing code's checklist that are not
about which field goes where: who to call, how long data is kept, how the
agreement is reviewed and ended, how people exercise their rights, how
records are matched, who approved which version, and what the DPOs intend
the agreement to allow and refuse.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from broker.link.config import CascadeKeySpec, Thresholds, to_cascade

ID_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,62}$"
FIELD_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$"
# "dataset.field", the way a DPO names a field in a policy test.
QUALIFIED_FIELD_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,62}\.[a-z][a-z0-9_]{0,62}$"
QualifiedField = Annotated[str, StringConstraints(pattern=QUALIFIED_FIELD_PATTERN)]

OutputKind = Literal["lookup", "notification", "cohort", "aggregate"]
PartyRole = Literal["provider", "recipient", "lead"]
# The names of broker.linkage.MATCH_KEYS (a test keeps them in step). The last two are
# fuzzy (a given-name variant, given and family names swapped) and apply only where named.
MatchKeyName = Literal[
    "nhs", "upn", "name_dob_postcode", "variant_dob_postcode", "swapped_names_dob_postcode"
]


class Frozen(BaseModel):
    """Immutable, and strict about unknown keys: a typo in a file is an error, never ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(Frozen):
    """A single point of contact for one party (ICO code: who to call about the sharing)."""

    party: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=_EMAIL, max_length=254)
    phone: str | None = Field(default=None, max_length=40)


class Retention(Frozen):
    """How long the broker keeps a dataset's records, and why that long."""

    period_days: int = Field(ge=1, le=36_500)
    justification: str = Field(min_length=1, max_length=2000)
    on_expiry: Literal["delete"] = "delete"


class ReviewTerms(Frozen):
    """How often the agreement is reviewed and how long an overdue review is tolerated."""

    frequency_months: int = Field(ge=1, le=60)
    # Days past review_by during which the agreement still shares, with a warning
    # to its contacts, before it stops sharing altogether.
    grace_days: int = Field(default=30, ge=0, le=365)
    process: str = Field(default="", max_length=2000)


class TerminationTerms(Frozen):
    """How a party leaves or the agreement ends, and what happens to shared data."""

    notice_days: int = Field(ge=0, le=365)
    on_termination: Literal["destroy", "return", "retain_until_retention_ends"]
    description: str = Field(default="", max_length=2000)


class RightsTerms(Frozen):
    """Where individuals exercise their rights (access, rectification, objection)."""

    contact_email: str = Field(pattern=_EMAIL, max_length=254)
    procedure: str = Field(min_length=1, max_length=2000)


class Linkage(Frozen):
    """Which match keys link records of different providers, strongest first.

    ``cascade`` and ``thresholds`` configure the probabilistic engine
    (``broker.link.config``); absent (None) they are its defaults, and an
    agreement written before they existed signs the bytes it always did.
    """

    match_keys: tuple[MatchKeyName, ...] = Field(
        default=("nhs", "upn", "name_dob_postcode"), min_length=1
    )
    method: Literal["keyed_hash"] = "keyed_hash"
    cascade: tuple[CascadeKeySpec, ...] | None = Field(default=None, min_length=1, max_length=32)
    thresholds: Thresholds | None = None

    @model_validator(mode="after")
    def _cascade_valid(self) -> Linkage:
        if self.cascade is not None:
            to_cascade(self.cascade)  # ValueError naming the key that is wrong
        return self


class Approval(Frozen):
    """One party's Ed25519 signature over the canonical form of this version."""

    party: str = Field(pattern=ID_PATTERN)
    approver: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=200)
    approved_on: date
    public_key: str = Field(min_length=40, max_length=60)
    signature: str = Field(min_length=80, max_length=100)


class PolicyTestRequest(Frozen):
    """The request a policy test makes: who asks, for what, through which output kind."""

    agency: str = Field(pattern=ID_PATTERN)
    purpose: str = Field(pattern=ID_PATTERN)
    output: OutputKind = "lookup"
    role: PartyRole = "recipient"
    fields: tuple[QualifiedField, ...] | None = Field(default=None, max_length=500)
    on: date | None = None


class PolicyTest(Frozen):
    """An example request the DPOs expect to be permitted, or refused with a given code."""

    name: str = Field(min_length=1, max_length=200)
    request: PolicyTestRequest
    expect: Literal["permit", "refuse"]
    # For "refuse": the reason code expected. For "permit": the exact fields
    # ("dataset.field") expected, when the test pins them.
    code: str | None = Field(default=None, max_length=64)
    fields: tuple[QualifiedField, ...] | None = Field(default=None, max_length=500)
