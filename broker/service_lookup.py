"""Lookup: does anyone else know this young person, and what may the caller see?"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agreements.decision import (
    Deny,
    Permit,
    ReleaseRequest,
    decide_under,
)
from agreements.models import Agreement
from audit.events import AuditEvent
from broker.errors import (
    IdentifierError,
    Location,
    Refused,
    ValidationError,
)
from broker.interfaces import UnitOfWork
from broker.keystore import DATA, PSEUDONYM, KeySlot, WorkingKey
from broker.linkage import find_subject, record_tokens
from broker.normalise import (
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_upn,
)
from broker.pseudonymise import pseudonym
from broker.release import released_fields
from broker.sealing import associated_data, unseal
from broker.service_core import warning_codes, with_changes
from broker.service_limits import LimitUseCases


@dataclass(frozen=True)
class ReleasedRecord:
    """One provider record as a recipient may see it."""

    reference: str | None
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Holding:
    """What one providing agency holds about the subject, as released."""

    agency: str
    dataset: str
    records: tuple[ReleasedRecord, ...]


@dataclass(frozen=True)
class LookupResult:
    """The answer to "does anyone else know this young person?"."""

    matched: bool
    pseudonym: str | None
    agreement_id: str
    agreement_version: int
    purpose: str
    holdings: tuple[Holding, ...] = ()
    audit_entry: int = 0
    released: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())


class LookupUseCases(LimitUseCases):
    """A recipient's lookups, and subject ids for the audit's search by identifiers."""

    # -- lookup -----------------------------------------------------------

    def lookup(
        self,
        *,
        agency: str,
        agreement_id: str,
        purpose: str,
        identifiers: Mapping[str, str],
        fields: Sequence[tuple[str, str]] | None = None,
        request_id: str | None = None,
    ) -> LookupResult:
        """Find the subject these identifiers belong to and release what the agreement permits."""
        today = self._today()
        registry = self.registry
        versions = registry.versions(agreement_id)
        agreement = registry.get(agreement_id, today)
        base = AuditEvent(
            actor=agency,
            action="lookup",
            outcome="permitted",
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            purpose=purpose,
            request_id=request_id,
        )
        request = ReleaseRequest(
            agency=agency,
            purpose=purpose,
            output="lookup",
            on=today,
            fields=None if fields is None else tuple(fields),
        )
        with self.instruments.stage("decide"):
            decision = decide_under(versions, request)
        if isinstance(decision, Deny):
            self._refuse(base, decision.code, {})
            raise Refused(decision.reason, code=decision.code)
        try:
            with self.instruments.stage("normalise"):
                normalised = _lookup_identifiers(identifiers)
        except ValidationError as exc:
            self._refuse(base, exc.code, {})
            raise
        with self._units() as uow:
            linkage = self._keystore.linkage_keys(uow.keys, agreement.id)[0]
            with self.instruments.stage("tokenise"):
                tokens = record_tokens(linkage.key, normalised, agreement.linkage.match_keys)
            # Only a lookup that can match spends the budget (enumeration defence): it is
            # counted in this transaction, with the lookup's audit entry.
            spent = (
                self._spend_lookup_budget(uow, agreement, agency=agency, purpose=purpose, on=today)
                if tokens
                else None
            )
            if spent is not None:
                return self._find_and_release(
                    uow,
                    tokens=tokens,
                    key_version=linkage.version,
                    versions=versions,
                    request=request,
                    decision=decision,
                    base=base,
                )
        if tokens:
            raise self._refuse_budget(base, agreement, purpose)
        insufficient = ValidationError(
            "too few identifiers to match safely: give an NHS number, a UPN, or given "
            "name, family name, date of birth and postcode",
            code="identifiers_insufficient",
        )
        self._refuse(base, insufficient.code, {})
        raise insufficient

    def _find_and_release(
        self,
        uow: UnitOfWork,
        *,
        tokens: Mapping[str, str],
        key_version: int,
        versions: Sequence[Agreement],
        request: ReleaseRequest,
        decision: Permit,
        base: AuditEvent,
    ) -> LookupResult:
        agreement = versions[0]
        agency = request.agency
        with self.instruments.stage("link"):
            subject, rule = find_subject(
                tokens,
                subjects_for=lambda mk, t: uow.linkage.subjects_for_tokens(
                    agreement.id, key_version, mk, t
                ),
                identity_of=lambda mk, s: uow.linkage.tokens_of_subjects(
                    agreement.id, key_version, mk, s
                ),
            )
        with self.instruments.stage("release"):
            holdings, shredded = (
                ((), 0)
                if subject is None
                else self._holdings(uow, versions, subject, request, decision)
            )
        recipient_key = (
            None
            if subject is None
            else self._keystore.active(uow.keys, KeySlot(PSEUDONYM, agreement.id, agency))
        )
        released = sorted(
            {f"{h.dataset}.{name}" for h in holdings for r in h.records for name in r.fields}
        )
        forms = {f"{f.dataset}.{f.field}": f.form for f in decision.fields}
        with self.instruments.stage("audit"):
            entry = self._audit(
                uow,
                with_changes(
                    base,
                    detail={
                        "matched": subject is not None,
                        "subject": subject,
                        "rule": rule,
                        "released": [{"field": n, "form": forms[n]} for n in released],
                        "providers": sorted({h.agency for h in holdings}),
                        "warnings": warning_codes(decision.warnings),
                        **({"shredded_records": shredded} if shredded else {}),
                    },
                ),
            )
            uow.commit()
        if released:
            self.instruments.released(agreement=agreement.id, purpose=request.purpose)
        return LookupResult(
            matched=subject is not None,
            pseudonym=None
            if subject is None or recipient_key is None
            else pseudonym(recipient_key.key, subject, recipient_key.version),
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            purpose=request.purpose,
            holdings=holdings,
            audit_entry=entry.seq,
            released=tuple(released),
            warnings=decision.warnings,
        )

    def _holdings(
        self,
        uow: UnitOfWork,
        versions: Sequence[Agreement],
        subject: str,
        request: ReleaseRequest,
        permit: Permit,
    ) -> tuple[tuple[Holding, ...], int]:
        """What each partner holds about the subject, and how many records were shredded."""
        agreement = versions[0]
        # Records stay governed by the version they were received under: that
        # version (and any later one) can narrow what the live version permits.
        per_version: dict[int, Permit | None] = {permit.agreement_version: permit}
        data_slot = KeySlot(DATA, agreement.id)
        data_keys: dict[int, WorkingKey | None] = {}
        shredded = 0
        grouped: dict[tuple[str, str], list[ReleasedRecord]] = {}
        for row in uow.records.of_subject(agreement.id, subject):
            # Partners' holdings only: a recipient already knows what it supplied itself.
            if row.agency_id == request.agency:
                continue
            if row.agreement_version not in per_version:
                governed = decide_under(versions, request, received_under=row.agreement_version)
                per_version[row.agreement_version] = (
                    governed if isinstance(governed, Permit) else None
                )
            governing = per_version[row.agreement_version]
            if governing is None or row.dataset_id not in {f.dataset for f in governing.fields}:
                continue
            if row.key_version not in data_keys:
                data_keys[row.key_version] = self._keystore.version(
                    uow.keys, data_slot, row.key_version
                )
            data_key = data_keys[row.key_version]
            if data_key is None:
                # Its data key was destroyed: the payload can never be read again.
                shredded += 1
                continue
            stored = json.loads(
                unseal(data_key.key, row.payload, associated_data(agreement.id, row.id))
            )
            fields = released_fields(row.dataset_id, stored, governing.fields, on=request.on)
            reference = row.source_ref if governing.reveal_record_reference else None
            grouped.setdefault((row.agency_id, row.dataset_id), []).append(
                ReleasedRecord(reference=reference, fields=fields)
            )
        holdings = tuple(
            Holding(agency=agency, dataset=dataset, records=tuple(records))
            for (agency, dataset), records in sorted(grouped.items())
        )
        return holdings, shredded

    def subjects_for_identifiers(
        self, identifiers: Mapping[str, str], agreement_ids: Sequence[str] | None = None
    ) -> dict[str, str]:
        """The broker's subject id, per agreement, for a young person's identifiers.

        For audit search and subject access: the identifiers are normalised and
        tokenised as a lookup would be, and never stored or logged. Only the
        agreements named (default: all) are searched; one with no match is left out.
        """
        normalised = _lookup_identifiers(identifiers)
        registry = self.registry
        today = self._today()
        found: dict[str, str] = {}
        usable = False
        with self._units() as uow:
            for agreement_id in agreement_ids if agreement_ids is not None else registry.ids():
                agreement = registry.get(agreement_id, today)
                linkage = self._keystore.linkage_keys(uow.keys, agreement.id)[0]
                tokens = record_tokens(linkage.key, normalised, agreement.linkage.match_keys)
                usable = usable or bool(tokens)
                if not tokens:
                    continue
                subject, _ = find_subject(
                    tokens,
                    subjects_for=partial(
                        uow.linkage.subjects_for_tokens, agreement.id, linkage.version
                    ),
                    identity_of=partial(
                        uow.linkage.tokens_of_subjects, agreement.id, linkage.version
                    ),
                )
                if subject is not None:
                    found[agreement.id] = subject
        if not usable:
            raise ValidationError(
                "too few identifiers to find anyone: give an NHS number, a UPN, or given name, "
                "family name, date of birth and postcode",
                code="identifiers_insufficient",
            )
        return found


_LOOKUP_NORMALISERS = {
    "given_name": normalise_name,
    "family_name": normalise_name,
    "date_of_birth": normalise_date,
    "postcode": normalise_postcode,
    "nhs_number": normalise_nhs_number,
    "upn": normalise_upn,
}


def _lookup_identifiers(raw: Mapping[str, str]) -> dict[str, str]:
    """Normalise the identifiers of a lookup; any invalid one refuses the lookup."""
    out: dict[str, str] = {}
    for name, value in raw.items():
        normaliser = _LOOKUP_NORMALISERS.get(name)
        if normaliser is None:
            raise ValidationError(
                f"'{name[:64]}' is not an identifier a lookup accepts",
                code="identifier_unknown",
                location=Location(field=name[:64]),
            )
        try:
            out[name] = normaliser(value)
        except IdentifierError as exc:
            raise IdentifierError(exc.message, location=Location(field=name)) from None
    return out
