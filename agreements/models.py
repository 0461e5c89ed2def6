"""The agreement model: what a DPO writes in YAML, as typed, frozen values.

Structural rules (types, unknown keys) are pydantic's; cross-references
(parties, datasets, fields, purposes) are checked in ``agreements.loader`` so
that every problem can be reported at once with its path.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from agreements.terms import (
    FIELD_PATTERN,
    ID_PATTERN,
    Approval,
    Contact,
    Frozen,
    Linkage,
    OutputKind,
    PartyRole,
    PolicyTest,
    Retention,
    ReviewTerms,
    RightsTerms,
    TerminationTerms,
)

__all__ = [
    "Agreement",
    "AgreementStatus",
    "Classification",
    "Dataset",
    "FieldSpec",
    "LawfulBasis",
    "LimitKind",
    "Limits",
    "LookupBudget",
    "OutputKind",
    "Party",
    "PartyRole",
    "Purpose",
    "RateLimit",
    "Release",
    "ReleaseForm",
    "ReleasedField",
]

# "superseded" is never written in a file: the broker records it when a newer
# version of the same agreement takes effect.
AgreementStatus = Literal[
    "draft", "approved", "active", "suspended", "expired", "terminated", "superseded"
]
AgencyType = Literal[
    "police",
    "school",
    "childrens_social_care",
    "health",
    "youth_justice",
    "local_authority",
    "voluntary_sector",
]
FieldType = Literal["string", "integer", "number", "boolean", "date", "code", "postcode"]
Classification = Literal[
    "identifier", "personal", "special_category", "criminal_offence", "operational"
]
IdentifierName = Literal[
    "given_name", "family_name", "date_of_birth", "sex", "postcode", "nhs_number", "upn"
]
DateFormat = Literal["iso", "dmy", "mdy"]
# Forms a released field may take. "as_supplied" releases the value itself;
# every other form releases something coarser (see broker.release for each).
ReleaseForm = Literal[
    "as_supplied",
    "age",
    "age_band",
    "postcode_district",
    "postcode_sector",
    "month",
    "flag",
    "redacted",
]

_ID = ID_PATTERN
_FIELD = FIELD_PATTERN


class Party(Frozen):
    """An agency that signed the agreement."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=200)
    type: AgencyType
    roles: tuple[PartyRole, ...] = Field(min_length=1)
    controller: Literal["separate", "joint"] = "separate"


class LawfulBasis(Frozen):
    """One party's lawful basis for a purpose (UK GDPR and DPA 2018)."""

    article_6: str = Field(min_length=1, max_length=500)
    article_9: str | None = Field(default=None, max_length=500)
    article_10: str | None = Field(default=None, max_length=500)
    dpa_schedule_1: str | None = Field(default=None, max_length=500)
    statutory_gateway: str | None = Field(default=None, max_length=500)


class Purpose(Frozen):
    """Why data is shared; releases are granted per purpose."""

    id: str = Field(pattern=_ID)
    description: str = Field(min_length=1, max_length=2000)
    lawful_basis: dict[str, LawfulBasis] = Field(min_length=1)


class FieldSpec(Frozen):
    """One field of a dataset, beyond its identifiers."""

    name: str = Field(pattern=_FIELD)
    type: FieldType
    classification: Classification
    required: bool = False
    values: tuple[str, ...] | None = Field(default=None, max_length=200)
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)


RELEASABLE_IDENTIFIERS: dict[str, FieldSpec] = {
    "date_of_birth": FieldSpec(name="date_of_birth", type="date", classification="identifier"),
    "postcode": FieldSpec(name="postcode", type="postcode", classification="identifier"),
    "sex": FieldSpec(
        name="sex", type="code", classification="identifier", values=("F", "M", "X", "U")
    ),
}
# The forms an identifier may take when released; anything finer stays in the broker.
IDENTIFIER_FORMS: dict[str, tuple[str, ...]] = {
    "date_of_birth": ("age", "age_band", "month"),
    "postcode": ("postcode_district", "postcode_sector"),
    "sex": ("as_supplied", "redacted"),
}


class Dataset(Frozen):
    """What one provider supplies: its identifiers and its own fields."""

    id: str = Field(pattern=_ID)
    provider: str = Field(pattern=_ID)
    description: str = ""
    identifiers: tuple[IdentifierName, ...] = Field(min_length=1)
    date_format: DateFormat = "iso"
    fields: tuple[FieldSpec, ...] = Field(min_length=1)
    retention: Retention | None = None

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name``, or None."""
        return next((spec for spec in self.fields if spec.name == name), None)

    def releasable(self, name: str) -> FieldSpec | None:
        """The field a release may name: a declared field, or a coarse-able identifier.

        Date of birth, postcode and sex may leave the broker only in the forms
        the loader allows for them (age, district, ...), never as typed.
        """
        spec = self.field(name)
        if spec is None and name in self.identifiers and name in RELEASABLE_IDENTIFIERS:
            return RELEASABLE_IDENTIFIERS[name]
        return spec


class ReleasedField(Frozen):
    """A field that may leave the broker, and the form it leaves in."""

    dataset: str = Field(pattern=_ID)
    field: str = Field(pattern=_FIELD)
    form: ReleaseForm = "as_supplied"


class Release(Frozen):
    """What one recipient may receive for one purpose, and through which output kinds."""

    purpose: str = Field(pattern=_ID)
    recipient: str = Field(pattern=_ID)
    outputs: tuple[OutputKind, ...] = Field(min_length=1)
    fields: tuple[ReleasedField, ...] = Field(min_length=1)
    reveal_record_reference: bool = False
    # Aggregates publish no count below this (ICO anonymisation guidance; 5 is usual).
    minimum_cell_size: int = Field(default=5, ge=1, le=1000)


# What a rate limit applies to: each output kind a recipient asks for, and a
# provider's ingest and rekey. "notification" covers subscribing, polling and
# acknowledging notifications.
LimitKind = Literal["ingest", "rekey", "lookup", "aggregate", "notification"]


class RateLimit(Frozen):
    """Requests of one kind an agency may make: ``per_minute`` on average, ``burst`` at once."""

    per_minute: int = Field(ge=1, le=1_000_000)
    burst: int = Field(ge=1, le=1_000_000)


# Used for a kind an agreement does not limit: generous enough for any agency
# system's normal work (a batch a second, several lookups a second), tight
# enough that a runaway client or a scripted sweep meets a 429 within seconds.
DEFAULT_RATES: dict[str, RateLimit] = {
    "ingest": RateLimit(per_minute=120, burst=30),
    "rekey": RateLimit(per_minute=120, burst=30),
    "lookup": RateLimit(per_minute=600, burst=120),
    "aggregate": RateLimit(per_minute=30, burst=10),
    "notification": RateLimit(per_minute=240, burst=60),
}
DEFAULT_LOOKUPS_PER_DAY = 20_000


class LookupBudget(Frozen):
    """Lookups each recipient agency may make per purpose per day (UTC), against enumeration."""

    per_day: int = Field(default=DEFAULT_LOOKUPS_PER_DAY, ge=1, le=10_000_000)
    # Per-purpose overrides, by purpose id.
    purposes: dict[str, Annotated[int, Field(ge=1, le=10_000_000)]] = Field(
        default_factory=dict, max_length=100
    )


class Limits(Frozen):
    """How hard agencies may use the broker under this agreement; defaults apply when absent."""

    rates: dict[LimitKind, RateLimit] = Field(default_factory=dict)
    lookup_budget: LookupBudget = LookupBudget()

    def rate(self, kind: str) -> RateLimit:
        """The limit for ``kind``: the agreement's own, or the default."""
        for named, limit in self.rates.items():
            if named == kind:
                return limit
        return DEFAULT_RATES[kind]

    def lookups_per_day(self, purpose: str) -> int:
        """The daily lookup budget of one recipient agency for ``purpose``."""
        return self.lookup_budget.purposes.get(purpose, self.lookup_budget.per_day)


class Agreement(Frozen):
    """One version of an information-sharing agreement."""

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=300)
    version: int = Field(ge=1, le=1_000_000)
    status: AgreementStatus
    status_reason: str | None = Field(default=None, max_length=2000)
    effective_from: date
    review_by: date | None = None
    expires_on: date
    contacts: tuple[Contact, ...] = ()
    parties: tuple[Party, ...] = Field(min_length=2, max_length=100)
    purposes: tuple[Purpose, ...] = Field(min_length=1, max_length=100)
    datasets: tuple[Dataset, ...] = Field(min_length=1, max_length=100)
    releases: tuple[Release, ...] = Field(default=(), max_length=1000)
    linkage: Linkage = Linkage()
    data_quality: tuple[str, ...] = ()
    security: tuple[str, ...] = ()
    rights: RightsTerms | None = None
    review: ReviewTerms | None = None
    termination: TerminationTerms | None = None
    policy_tests: tuple[PolicyTest, ...] = Field(default=(), max_length=1000)
    approvals: tuple[Approval, ...] = ()
    # Optional: None (absent) means the defaults, and keeps the approval
    # signatures of agreements written before limits existed valid.
    limits: Limits | None = None

    @property
    def effective_limits(self) -> Limits:
        """The agreement's limits, or the defaults when it sets none."""
        return self.limits if self.limits is not None else Limits()

    def party(self, agency_id: str) -> Party | None:
        """The party with this agency id, or None."""
        return next((p for p in self.parties if p.id == agency_id), None)

    def purpose(self, purpose_id: str) -> Purpose | None:
        """The purpose with this id, or None."""
        return next((p for p in self.purposes if p.id == purpose_id), None)

    def dataset(self, dataset_id: str) -> Dataset | None:
        """The dataset with this id, or None."""
        return next((d for d in self.datasets if d.id == dataset_id), None)

    def release_for(self, purpose_id: str, recipient: str) -> Release | None:
        """The release to ``recipient`` for ``purpose_id``, or None (there is at most one)."""
        return next(
            (r for r in self.releases if r.purpose == purpose_id and r.recipient == recipient),
            None,
        )

    @property
    def grace_days(self) -> int:
        """Days past review_by during which sharing continues with a warning."""
        return self.review.grace_days if self.review is not None else 30
