"""The agreement model: what a DPO writes in YAML, as typed, frozen values.

Structural rules (types, unknown keys) are pydantic's; cross-references
(parties, datasets, fields, purposes) are checked in ``agreements.loader`` so
that every problem can be reported at once with its path.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AgreementStatus = Literal["draft", "approved", "active", "suspended", "expired", "terminated"]
AgencyType = Literal[
    "police",
    "school",
    "childrens_social_care",
    "health",
    "youth_justice",
    "local_authority",
    "voluntary_sector",
]
PartyRole = Literal["provider", "recipient", "lead"]
OutputKind = Literal["lookup", "notification", "cohort", "aggregate"]
FieldType = Literal["string", "integer", "number", "boolean", "date", "code"]
Classification = Literal["personal", "special_category", "criminal_offence", "operational"]
IdentifierName = Literal[
    "given_name", "family_name", "date_of_birth", "sex", "postcode", "nhs_number", "upn"
]
DateFormat = Literal["iso", "dmy", "mdy"]
# Forms a released field may take. "as_supplied" releases the value itself;
# the others release something coarser (see broker.release for each).
ReleaseForm = Literal["as_supplied", "month", "flag"]

_ID = r"^[a-z0-9][a-z0-9\-]{0,62}$"
_FIELD = r"^[a-z][a-z0-9_]{0,62}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Party(_Frozen):
    """An agency that signed the agreement."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=200)
    type: AgencyType
    roles: tuple[PartyRole, ...] = Field(min_length=1)
    controller: Literal["separate", "joint"] = "separate"


class LawfulBasis(_Frozen):
    """One party's lawful basis for a purpose (UK GDPR and DPA 2018)."""

    article_6: str = Field(min_length=1, max_length=500)
    article_9: str | None = Field(default=None, max_length=500)
    article_10: str | None = Field(default=None, max_length=500)
    dpa_schedule_1: str | None = Field(default=None, max_length=500)
    statutory_gateway: str | None = Field(default=None, max_length=500)


class Purpose(_Frozen):
    """Why data is shared; releases are granted per purpose."""

    id: str = Field(pattern=_ID)
    description: str = Field(min_length=1, max_length=2000)
    lawful_basis: dict[str, LawfulBasis] = Field(min_length=1)


class FieldSpec(_Frozen):
    """One field of a dataset, beyond its identifiers."""

    name: str = Field(pattern=_FIELD)
    type: FieldType
    classification: Classification
    required: bool = False
    values: tuple[str, ...] | None = None
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)


class Dataset(_Frozen):
    """What one provider supplies: its identifiers and its own fields."""

    id: str = Field(pattern=_ID)
    provider: str = Field(pattern=_ID)
    description: str = ""
    identifiers: tuple[IdentifierName, ...] = Field(min_length=1)
    date_format: DateFormat = "iso"
    fields: tuple[FieldSpec, ...] = Field(min_length=1)

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name``, or None."""
        return next((spec for spec in self.fields if spec.name == name), None)


class ReleasedField(_Frozen):
    """A field that may leave the broker, and the form it leaves in."""

    dataset: str = Field(pattern=_ID)
    field: str = Field(pattern=_FIELD)
    form: ReleaseForm = "as_supplied"


class Release(_Frozen):
    """What one recipient may receive for one purpose, and through which output kinds."""

    purpose: str = Field(pattern=_ID)
    recipient: str = Field(pattern=_ID)
    outputs: tuple[OutputKind, ...] = Field(min_length=1)
    fields: tuple[ReleasedField, ...] = Field(min_length=1)
    reveal_record_reference: bool = False


class Agreement(_Frozen):
    """One version of an information-sharing agreement."""

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=300)
    version: int = Field(ge=1)
    status: AgreementStatus
    effective_from: date
    review_by: date
    expires_on: date
    parties: tuple[Party, ...] = Field(min_length=2)
    purposes: tuple[Purpose, ...] = Field(min_length=1)
    datasets: tuple[Dataset, ...] = Field(min_length=1)
    releases: tuple[Release, ...] = Field(default=())

    def party(self, agency_id: str) -> Party | None:
        """The party with this agency id, or None."""
        return next((p for p in self.parties if p.id == agency_id), None)

    def purpose(self, purpose_id: str) -> Purpose | None:
        """The purpose with this id, or None."""
        return next((p for p in self.purposes if p.id == purpose_id), None)

    def dataset(self, dataset_id: str) -> Dataset | None:
        """The dataset with this id, or None."""
        return next((d for d in self.datasets if d.id == dataset_id), None)
