"""The broker's use cases: ingest a batch, look up a subject, read and verify the audit log.

This is the domain core's front door. It knows nothing of HTTP or SQL: the web
layer calls it, and storage reaches it as a unit-of-work factory. Every action
appends its audit entry in the same transaction; a refusal is audited in a
transaction of its own, after the refused work was rolled back.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from agreements.decision import (
    Deny,
    Permit,
    ReleaseRequest,
    SupplyRequest,
    decide_supply_under,
    decide_under,
)
from agreements.models import RELEASABLE_IDENTIFIERS, Agreement
from agreements.registry import AgreementRegistry
from audit import log as audit_log
from audit.events import AuditEvent, LoggedEntry
from audit.log import LogSigner
from audit.verify import Verified
from broker.audit_search import AuditSearch
from broker.auditing import AuditTrail
from broker.clock import Clock
from broker.errors import (
    AuthenticationFailed,
    BatchRejected,
    Conflict,
    IdentifierError,
    KeyFileError,
    Location,
    NotFound,
    Problem,
    Refused,
    ValidationError,
)
from broker.ids import new_id
from broker.ingest import AtSource, validate_batch, validate_tokenised_batch
from broker.interfaces import RecordRow, TokenRow, UnitOfWork, UnitOfWorkFactory
from broker.keys import KeyRing, LinkageKey
from broker.lifecycle import AgreementBook
from broker.linkage import assign_subjects, find_subject, record_tokens
from broker.normalise import (
    normalise_date,
    normalise_name,
    normalise_nhs_number,
    normalise_postcode,
    normalise_upn,
)
from broker.pseudonymise import constant_time_equal, pseudonym
from broker.release import released_fields
from broker.sealing import associated_data, seal, unseal

API_KEY_PREFIX = "acc_"
CREDENTIAL_ROLES = ("system", "ig_lead")
DEFAULT_LOG_ORIGIN = "accord.local/audit"
MAX_AUDIT_PAGE = 1000


@dataclass(frozen=True)
class Limits:
    """Input limits the service enforces (the web layer enforces body size)."""

    max_batch_records: int = 10_000
    max_field_length: int = 1024


@dataclass(frozen=True)
class IngestResult:
    """What happened to an accepted batch."""

    batch_id: str
    accepted: int
    new_subjects: int
    linked: int
    linked_by_rule: Mapping[str, int]
    quality: tuple[Problem, ...]
    audit_entries: tuple[int, ...]
    warnings: tuple[str, ...] = ()


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


def api_key_digest(api_key: str) -> str:
    """The stored form of an API key (keys are 256-bit random, so a plain digest suffices)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class Broker:
    """The service object the app factory builds once and the routes call."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        units: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits | None = None,
        signer: LogSigner | None = None,
    ) -> None:
        self._keys = keys
        self._units = units
        self._clock = clock
        self.limits = limits or Limits()
        self.agreements = AgreementBook(units=units, audit=self._audit, now=self._now)
        self._signer = signer or LogSigner(
            origin=DEFAULT_LOG_ORIGIN, private_key=keys.log_signing_key()
        )
        self.audit = AuditTrail(units=units, signer=self._signer, audit=self._audit, now=self._now)
        self.audit_search = AuditSearch(
            units=units,
            audit=self._audit,
            registry=lambda: self.registry,
            subjects_for=self.subjects_for_identifiers,
        )

    @property
    def registry(self) -> AgreementRegistry:
        """The agreement versions held now (a suspension shows at the next call)."""
        return self.agreements.snapshot()

    # -- start-up ---------------------------------------------------------

    def check_keys(self) -> None:
        """Refuse to run with a key file other than the one the database was written with."""
        with self._units() as uow:
            stored = uow.meta.key_check()
            if stored is None:
                if uow.meta.has_data():
                    raise KeyFileError("database holds records but no key check; restore its key")
                uow.meta.set_key_check(self._keys.check_value(), self._now())
                self._audit(
                    uow,
                    AuditEvent(
                        actor="operator",
                        action="key_operation",
                        outcome="permitted",
                        detail={
                            "operation": "master_key_registered",
                            "version": self._keys.version,
                        },
                    ),
                )
                uow.commit()
            elif stored != self._keys.check_value():
                raise KeyFileError(
                    "key file does not match the database; restore the key file it was written with"
                )

    # -- credentials ------------------------------------------------------

    def issue_api_key(self, agency_id: str, role: str = "system") -> str:
        """Create an API key for an agency that is a party to a loaded agreement.

        ``role`` is ``system`` (the agency's systems) or ``ig_lead`` (its
        information governance lead, who may only search and report on the audit).
        """
        if role not in CREDENTIAL_ROLES:
            raise ValidationError(
                f"role must be one of {', '.join(CREDENTIAL_ROLES)}", code="role_unknown"
            )
        if not any(a.party(agency_id) for a in self.registry):
            raise NotFound(f"agency '{agency_id}' is not a party to any loaded agreement")
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with self._units() as uow:
            uow.credentials.add(agency_id, api_key_digest(api_key), self._now(), role)
            self._audit(
                uow,
                AuditEvent(
                    actor="operator",
                    action="credential_issued",
                    outcome="permitted",
                    detail={"agency": agency_id, "role": role},
                ),
            )
            uow.commit()
        return api_key

    def revoke_api_keys(self, agency_id: str) -> int:
        """Revoke every API key of an agency at once; returns how many were live."""
        with self._units() as uow:
            revoked = uow.credentials.revoke_all(agency_id, self._now())
            self._audit(
                uow,
                AuditEvent(
                    actor="operator",
                    action="credential_revoked",
                    outcome="permitted",
                    detail={"agency": agency_id, "revoked": revoked},
                ),
            )
            uow.commit()
        return revoked

    def authenticate(self, api_key: str, *, role: str = "system") -> str:
        """The agency an API key belongs to, if the key holds ``role``.

        AuthenticationFailed for an unknown or revoked key; Refused (``role_not_allowed``)
        for a key of another role, so an IG lead's key can never ingest or look up.
        """
        with self._units() as uow:
            found = uow.credentials.agency_for(api_key_digest(api_key))
        if found is None:
            raise AuthenticationFailed("API key not recognised; ask the broker operator for one")
        agency, held = found
        if held != role:
            raise Refused(
                f"this key is an {held.replace('_', ' ')} key; this request needs a "
                f"{role.replace('_', ' ')} key",
                code="role_not_allowed",
            )
        return agency

    # -- ingest -----------------------------------------------------------

    def ingest_batch(
        self,
        *,
        agency: str,
        agreement_id: str,
        dataset_id: str,
        records: Sequence[Any],
        request_id: str | None = None,
        at_source: AtSource | None = None,
    ) -> IngestResult:
        """Validate, tokenise, link and store a batch, all or nothing, with its audit entries.

        With ``at_source`` the records were tokenised by the agency with the
        agreement's linkage key: they hold tokens instead of identifiers, and
        are refused (``key_version_mismatch``) unless the key they were made
        with is the broker's current one.
        """
        today = self._today()
        registry = self.registry
        versions = registry.versions(agreement_id)
        agreement = registry.get(agreement_id, today)
        dataset = agreement.dataset(dataset_id)
        if dataset is None:
            raise NotFound(f"dataset '{dataset_id}' is not in agreement '{agreement_id}'")
        base = AuditEvent(
            actor=agency,
            action="ingest",
            outcome="permitted",
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            dataset_id=dataset_id,
            request_id=request_id,
        )
        decision = decide_supply_under(
            versions, SupplyRequest(agency=agency, dataset=dataset_id, on=today)
        )
        marker = {} if at_source is None else {"tokenised_at_source": True}
        if isinstance(decision, Deny):
            self._refuse(base, decision.code, {"records": len(records), **marker})
            raise Refused(decision.reason, code=decision.code)
        base = _with(base, detail={"warnings": _warning_codes(decision.warnings), **marker})
        if len(records) > self.limits.max_batch_records:
            self._refuse(base, "batch_too_large", {"records": len(records), **marker})
            raise ValidationError(
                f"a batch may hold at most {self.limits.max_batch_records} records; split it",
                code="batch_too_large",
            )
        if at_source is not None:
            self._check_source_key(agreement.id, at_source, base, len(records))
        try:
            with self._units() as uow:
                result = self._store_batch(
                    uow, agreement, dataset_id, records, base, at_source=at_source
                )
                uow.commit()
                return replace(result, warnings=decision.warnings)
        except BatchRejected as rejected:
            codes = Counter(p.code for p in rejected.problems)
            self._refuse(
                base,
                rejected.code,
                {"records": len(records), "problems": dict(sorted(codes.items())), **marker},
            )
            raise

    def _check_source_key(
        self, agreement_id: str, at_source: AtSource, base: AuditEvent, count: int
    ) -> None:
        """Refuse tokens made with a key other than this agreement's current linkage key."""
        current = self._keys.linkage_check_value(agreement_id)
        same = at_source.key_version == self._keys.version and constant_time_equal(
            at_source.key_check, current
        )
        if not same:
            code = "key_version_mismatch"
            self._refuse(base, code, {"records": count, "tokenised_at_source": True})
            # Neither check value is echoed: the message only says what to do.
            raise Conflict(
                "the batch was tokenised with a linkage key other than this agreement's "
                "current one; fetch the current linkage key file from the broker operator, "
                "tokenise the extract again and resend it",
                code=code,
                location=Location(field="tokenised.key_check"),
            )

    def export_linkage_key(self, agreement_id: str, path: Path) -> LinkageKey:
        """Write one agreement's linkage key file for a provider that tokenises at source.

        Audited as ``key_operation`` ``linkage_key_exported``. The file is written
        inside the audit's transaction and removed again if the audit fails, so
        no key leaves the broker unrecorded.
        """
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            linkage = self._keys.export_linkage_key(agreement.id, path, at=self._clock.now())
            try:
                self._audit(
                    uow,
                    AuditEvent(
                        actor="operator",
                        action="key_operation",
                        outcome="permitted",
                        agreement_id=agreement.id,
                        agreement_version=agreement.version,
                        detail={
                            "operation": "linkage_key_exported",
                            "agreement": agreement.id,
                            "version": linkage.version,
                            "key_check": linkage.check_value,
                        },
                    ),
                )
                uow.commit()
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return linkage

    def _store_batch(
        self,
        uow: UnitOfWork,
        agreement: Agreement,
        dataset_id: str,
        records: Sequence[Any],
        base: AuditEvent,
        *,
        at_source: AtSource | None,
    ) -> IngestResult:
        dataset = agreement.dataset(dataset_id)
        assert dataset is not None
        refs = [r.get("record_id") for r in records if isinstance(r, dict)]
        existing = uow.records.existing_refs(
            agreement.id, dataset_id, [r for r in refs if isinstance(r, str)]
        )
        batch_tokens: list[Mapping[str, str]]
        if at_source is None:
            valid = validate_batch(
                dataset,
                records,
                max_field_length=self.limits.max_field_length,
                known_ref=existing.__contains__,
            )
            linkage_key = self._keys.linkage_key(agreement.id)
            batch_tokens = [
                record_tokens(linkage_key, r.identifiers, agreement.linkage.match_keys)
                for r in valid
            ]
        else:
            valid = validate_tokenised_batch(
                dataset,
                records,
                match_keys=agreement.linkage.match_keys,
                max_field_length=self.limits.max_field_length,
                known_ref=existing.__contains__,
            )
            # From here on a tokenised record takes exactly the path of a clear one.
            batch_tokens = [dict(r.tokens or {}) for r in valid]
        assignments = assign_subjects(
            batch_tokens,
            subjects_for=lambda mk, toks: uow.linkage.subjects_for_tokens(agreement.id, mk, toks),
            identity_of=lambda mk, subs: uow.linkage.tokens_of_subjects(agreement.id, mk, subs),
            new_subject=lambda: new_id("sub"),
        )
        now = self._now()
        batch_id = new_id("bat")
        uow.records.add_batch(
            batch_id=batch_id,
            agreement_id=agreement.id,
            dataset_id=dataset_id,
            agency_id=base.actor,
            at=now,
            count=len(valid),
        )
        uow.linkage.add_subjects(agreement.id, [a.subject_id for a in assignments if a.new], now)
        data_key = self._keys.data_key(agreement.id)
        kept_identifiers = _released_identifiers(agreement, dataset_id)
        rows: list[RecordRow] = []
        tokens: list[TokenRow] = []
        for record, assignment, record_toks in zip(valid, assignments, batch_tokens, strict=True):
            record_id = new_id("rec")
            # Identifiers are kept (sealed) only where the agreement releases a coarse form of them.
            kept = {n: record.identifiers[n] for n in kept_identifiers if n in record.identifiers}
            plaintext = json.dumps({**record.fields, **kept}, sort_keys=True).encode("utf-8")
            rows.append(
                RecordRow(
                    id=record_id,
                    agreement_id=agreement.id,
                    agreement_version=agreement.version,
                    dataset_id=dataset_id,
                    agency_id=base.actor,
                    source_ref=record.source_ref,
                    subject_id=assignment.subject_id,
                    batch_id=batch_id,
                    received_at=now,
                    key_version=self._keys.version,
                    payload=seal(data_key, plaintext, associated_data(agreement.id, record_id)),
                )
            )
            tokens.extend(
                TokenRow(mk, tok, assignment.subject_id, record_id)
                for mk, tok in record_toks.items()
            )
        uow.records.add_records(rows)
        uow.linkage.add_tokens(agreement.id, tokens)
        quality = tuple(p for r in valid for p in r.quality)
        by_rule = Counter(a.rule for a in assignments if a.rule is not None)
        linked = sum(by_rule.values())
        no_key = sum(1 for t in batch_tokens if not t)
        ingest_entry = self._audit(
            uow,
            _with(
                base,
                detail={
                    **base.detail,
                    "batch_id": batch_id,
                    "records": len(valid),
                    "quality_issues": dict(sorted(Counter(p.code for p in quality).items())),
                },
            ),
        )
        link_entry = self._audit(
            uow,
            _with(
                base,
                action="link",
                detail={
                    "batch_id": batch_id,
                    "linked": linked,
                    "new_subjects": len(valid) - linked,
                    "by_rule": dict(sorted(by_rule.items())),
                    "without_match_key": no_key,
                },
            ),
        )
        return IngestResult(
            batch_id=batch_id,
            accepted=len(valid),
            new_subjects=len(valid) - linked,
            linked=linked,
            linked_by_rule=dict(by_rule),
            quality=quality,
            audit_entries=(ingest_entry.seq, link_entry.seq),
        )

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
        decision = decide_under(versions, request)
        if isinstance(decision, Deny):
            self._refuse(base, decision.code, {})
            raise Refused(decision.reason, code=decision.code)
        try:
            normalised = _lookup_identifiers(identifiers)
            tokens = record_tokens(
                self._keys.linkage_key(agreement.id), normalised, agreement.linkage.match_keys
            )
            if not tokens:
                raise ValidationError(
                    "too few identifiers to match safely: give an NHS number, a UPN, or given "
                    "name, family name, date of birth and postcode",
                    code="identifiers_insufficient",
                )
        except ValidationError as exc:
            self._refuse(base, exc.code, {})
            raise
        with self._units() as uow:
            subject, rule = find_subject(
                tokens,
                subjects_for=lambda mk, t: uow.linkage.subjects_for_tokens(agreement.id, mk, t),
                identity_of=lambda mk, s: uow.linkage.tokens_of_subjects(agreement.id, mk, s),
            )
            holdings = (
                () if subject is None else self._holdings(uow, versions, subject, request, decision)
            )
            released = sorted(
                {f"{h.dataset}.{name}" for h in holdings for r in h.records for name in r.fields}
            )
            forms = {f"{f.dataset}.{f.field}": f.form for f in decision.fields}
            entry = self._audit(
                uow,
                _with(
                    base,
                    detail={
                        "matched": subject is not None,
                        "subject": subject,
                        "rule": rule,
                        "released": [{"field": name, "form": forms[name]} for name in released],
                        "providers": sorted({h.agency for h in holdings}),
                        "warnings": _warning_codes(decision.warnings),
                    },
                ),
            )
            uow.commit()
        return LookupResult(
            matched=subject is not None,
            pseudonym=None
            if subject is None
            else pseudonym(self._keys.pseudonym_key(agreement.id, agency), subject),
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            purpose=purpose,
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
    ) -> tuple[Holding, ...]:
        agreement = versions[0]
        # Records stay governed by the version they were received under: that
        # version (and any later one) can narrow what the live version permits.
        per_version: dict[int, Permit | None] = {permit.agreement_version: permit}
        data_key = self._keys.data_key(agreement.id)
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
            stored = json.loads(
                unseal(data_key, row.payload, associated_data(agreement.id, row.id))
            )
            fields = released_fields(row.dataset_id, stored, governing.fields, on=request.on)
            reference = row.source_ref if governing.reveal_record_reference else None
            grouped.setdefault((row.agency_id, row.dataset_id), []).append(
                ReleasedRecord(reference=reference, fields=fields)
            )
        return tuple(
            Holding(agency=agency, dataset=dataset, records=tuple(records))
            for (agency, dataset), records in sorted(grouped.items())
        )

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
                linkage_key = self._keys.linkage_key(agreement.id)
                tokens = record_tokens(linkage_key, normalised, agreement.linkage.match_keys)
                usable = usable or bool(tokens)
                if not tokens:
                    continue
                subject, _ = find_subject(
                    tokens,
                    subjects_for=partial(uow.linkage.subjects_for_tokens, agreement.id),
                    identity_of=partial(uow.linkage.tokens_of_subjects, agreement.id),
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

    # -- audit --------------------------------------------------------------

    def audit_page(self, *, actor: str | None, after: int, limit: int) -> list[LoggedEntry]:
        """Entries after position ``after``; ``actor`` None means every actor's (operator use)."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise ValidationError(
                f"limit must be between 1 and {MAX_AUDIT_PAGE}",
                code="page_size_invalid",
                location=Location(field="limit"),
            )
        if after < 0:
            raise ValidationError(
                "after must not be negative", code="page_invalid", location=Location(field="after")
            )
        with self._units() as uow:
            return uow.audit.page(actor=actor, after=after, limit=limit)

    def verify_audit(self) -> Verified:
        """Recompute the whole audit log; raises AuditIntegrityError at the first bad entry."""
        return self.audit.verify()

    def audit_head(self) -> tuple[int, str]:
        """The log's size and its Merkle root (hex)."""
        with self._units() as uow:
            return uow.audit.head()

    # -- helpers ------------------------------------------------------------

    def _now(self) -> str:
        return self._clock.now().isoformat(timespec="microseconds")

    def _today(self) -> date:
        return self._clock.now().date()

    def today(self) -> date:
        """Today by the broker's clock, the date every decision is made on."""
        return self._today()

    def _audit(self, uow: UnitOfWork, event: AuditEvent) -> LoggedEntry:
        return audit_log.append(uow.audit, event, at=self._now(), signer=self._signer)

    def _refuse(self, base: AuditEvent, code: str, detail: dict[str, Any]) -> None:
        with self._units() as uow:
            self._audit(uow, _with(base, outcome="refused", reason_code=code, detail=detail))
            uow.commit()


def _warning_codes(warnings: Sequence[str]) -> list[str]:
    """The stable code before the colon of each warning, for the audit entry."""
    return sorted({w.split(":", 1)[0] for w in warnings})


def _released_identifiers(agreement: Agreement, dataset_id: str) -> set[str]:
    """Identifiers of this dataset that some release of the agreement lets out in coarse form."""
    return {
        grant.field
        for release in agreement.releases
        for grant in release.fields
        if grant.dataset == dataset_id and grant.field in RELEASABLE_IDENTIFIERS
    }


def _with(event: AuditEvent, **changes: Any) -> AuditEvent:
    values = {**event.__dict__, **changes}
    return AuditEvent(**values)


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
