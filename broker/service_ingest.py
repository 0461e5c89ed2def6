"""Ingest: validate a provider's batch, tokenise, link, seal and store it, all or nothing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agreements.decision import (
    Deny,
    SupplyRequest,
    decide_supply_under,
)
from agreements.models import RELEASABLE_IDENTIFIERS, Agreement
from audit.events import AuditEvent
from broker.errors import (
    BatchRejected,
    Conflict,
    Location,
    NotFound,
    Problem,
    Refused,
    ValidationError,
)
from broker.idempotency import (
    IdempotencyKeyInFlight,
    IdempotencyScope,
    encode_response,
    replay,
)
from broker.ids import new_id
from broker.ingest import AtSource, validate_batch, validate_tokenised_batch
from broker.interfaces import RecordRow, TokenRow, UnitOfWork
from broker.keys import LinkageKey, write_linkage_key_file
from broker.keystore import DATA, KeySlot
from broker.linkage import assign_subjects, record_tokens
from broker.pseudonymise import Tokeniser, constant_time_equal
from broker.sealing import associated_data, seal
from broker.service_core import BrokerCore, warning_codes, with_changes
from broker.service_linkage import ArrivedRecord, link_arrivals
from broker.service_notify import queue_notifications


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
    # True when this is the stored first result of an earlier request with the same key.
    replayed: bool = False


class IngestUseCases(BrokerCore):
    """A provider's batches: clear or tokenised at source."""

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
        idempotency: IdempotencyScope | None = None,
    ) -> IngestResult:
        """Validate, tokenise, link and store a batch, all or nothing, with its audit entries.

        With ``at_source`` the records were tokenised by the agency with the
        agreement's linkage key: they hold tokens instead of identifiers, and
        are refused (``key_version_mismatch``) unless the key they were made
        with is the broker's current one.

        With ``idempotency`` a request already stored under its key returns the
        first result (``replayed``) and stores nothing; the key is recorded in
        the batch's transaction. See ``broker.idempotency``.
        """
        if idempotency is not None:
            earlier = self._replayed(idempotency)
            if earlier is not None:
                return earlier
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
        base = with_changes(base, detail={"warnings": warning_codes(decision.warnings), **marker})
        if len(records) > self.limits.max_batch_records:
            self._refuse(base, "batch_too_large", {"records": len(records), **marker})
            raise ValidationError(
                f"a batch may hold at most {self.limits.max_batch_records} records; split it",
                code="batch_too_large",
            )
        if at_source is not None:
            self._check_source_key(agreement.id, at_source, base, len(records))
        try:
            try:
                with self._units() as uow:
                    if idempotency is not None:
                        # First, so a concurrent request with the same key waits here.
                        uow.idempotency.claim(idempotency, self._now())
                    result = self._store_batch(
                        uow, agreement, dataset_id, records, base, at_source=at_source
                    )
                    # In the batch's transaction, so a stored record's notifications are never lost.
                    queue_notifications(
                        self,
                        uow,
                        versions=versions,
                        dataset_id=dataset_id,
                        batch_id=result.batch_id,
                        records=records,
                    )
                    if idempotency is not None:
                        first = replace(result, warnings=decision.warnings)
                        uow.idempotency.complete(
                            idempotency, _CREATED, encode_response(_as_dict(first)), first.batch_id
                        )
                    uow.commit()
            except IdempotencyKeyInFlight:
                # A concurrent request with the same key committed first: answer with its result.
                assert idempotency is not None
                earlier = self._replayed(idempotency)
                if earlier is None:
                    raise
                return earlier
            self.instruments.records_ingested(
                result.accepted, agreement=agreement.id, dataset=dataset_id
            )
            for rule, count in result.linked_by_rule.items():
                self.instruments.links_made(count, agreement=agreement.id, rule=rule)
            return replace(result, warnings=decision.warnings)
        except BatchRejected as rejected:
            codes = Counter(p.code for p in rejected.problems)
            self._refuse(
                base,
                rejected.code,
                {"records": len(records), "problems": dict(sorted(codes.items())), **marker},
            )
            raise

    def _replayed(self, scope: IdempotencyScope) -> IngestResult | None:
        """The first result stored under the key, or None; another body under it is refused."""
        with self._units() as uow:
            stored = replay(uow.idempotency, scope)
        return None if stored is None else _from_dict(stored.response)

    def _check_source_key(
        self, agreement_id: str, at_source: AtSource, base: AuditEvent, count: int
    ) -> None:
        """Refuse tokens made with a key other than the linkage key this agreement matches on."""
        with self._units() as uow:
            in_use = self._keystore.linkage_keys(uow.keys, agreement_id)
            uow.commit()  # the first use of an agreement creates its key
        matching = in_use[0]
        same = at_source.key_version == matching.version and constant_time_equal(
            at_source.key_check, matching.check_value
        )
        if same:
            return
        code = "key_version_mismatch"
        self._refuse(base, code, {"records": count, "tokenised_at_source": True})
        if len(in_use) > 1 and at_source.key_version == in_use[-1].version:
            # Neither check value is echoed: the message only says what to do.
            message = (
                "this agreement's linkage key is being rotated: until the operator completes "
                f"the rotation, send new records tokenised with key version {matching.version}, "
                "and send this batch to the dataset's rekey endpoint instead"
            )
        else:
            message = (
                "the batch was tokenised with a linkage key other than the one this agreement "
                "matches on; fetch the current linkage key file from the broker operator, "
                "tokenise the extract again and resend it"
            )
        raise Conflict(message, code=code, location=Location(field="tokenised.key_check"))

    def export_linkage_key(self, agreement_id: str, path: Path) -> LinkageKey:
        """Write one agreement's linkage key file for a provider that tokenises at source.

        Audited as ``key_operation`` ``linkage_key_exported``. The file is written
        inside the audit's transaction and removed again if the audit fails, so
        no key leaves the broker unrecorded.
        """
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            linkage = self._keystore.linkage(uow.keys, agreement.id)
            write_linkage_key_file(linkage, path, at=self._clock.now())
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
        linkage_keys = self._keystore.linkage_keys(uow.keys, agreement.id)
        # While a linkage key rotates, records are tokenised under every key in use
        # and linked on the oldest, which every stored record has tokens under.
        matching = linkage_keys[0].version
        later: list[tuple[LinkageKey, list[dict[str, str]]]]
        if at_source is None:
            with self.instruments.stage("validate"):
                valid = validate_batch(
                    dataset,
                    records,
                    max_field_length=self.limits.max_field_length,
                    known_ref=existing.__contains__,
                )
            with self.instruments.stage("tokenise"):
                # One keyed HMAC object per key for the whole batch, copied per token.
                tokenisers = [Tokeniser(linkage.key) for linkage in linkage_keys]
                per_version = [
                    [
                        record_tokens(tokeniser, r.identifiers, agreement.linkage.match_keys)
                        for r in valid
                    ]
                    for tokeniser in tokenisers
                ]
            batch_tokens = list(per_version[0])
            later = list(zip(linkage_keys[1:], per_version[1:], strict=True))
        else:
            with self.instruments.stage("validate"):
                valid = validate_tokenised_batch(
                    dataset,
                    records,
                    match_keys=agreement.linkage.match_keys,
                    max_field_length=self.limits.max_field_length,
                    known_ref=existing.__contains__,
                )
            # From here on a tokenised record takes exactly the path of a clear one.
            batch_tokens = [dict(r.tokens or {}) for r in valid]
            later = []
        with self.instruments.stage("link"):
            # Linking reads the agreement's tokens and then adds subjects and tokens: two
            # batches linking the same new person at once would each make a subject for
            # them. The audit head lock, which this transaction takes anyway for its
            # entries, serialises that on PostgreSQL (SQLite's BEGIN IMMEDIATE already
            # has). Taken here, after validation and tokenising, so those stay parallel.
            uow.audit.lock_head()
            assignments = assign_subjects(
                batch_tokens,
                subjects_for=lambda mk, toks: uow.linkage.subjects_for_tokens(
                    agreement.id, matching, mk, toks
                ),
                identity_of=lambda mk, subs: uow.linkage.tokens_of_subjects(
                    agreement.id, matching, mk, subs
                ),
                new_subject=lambda: new_id("sub"),
            )
        with self.instruments.stage("store"):
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
            uow.linkage.add_subjects(
                agreement.id, [a.subject_id for a in assignments if a.new], now
            )
            data_key = self._keystore.active(uow.keys, KeySlot(DATA, agreement.id))
            kept_identifiers = _released_identifiers(agreement, dataset_id)
            rows: list[RecordRow] = []
            tokens: list[TokenRow] = []
            for index, (record, assignment, record_toks) in enumerate(
                zip(valid, assignments, batch_tokens, strict=True)
            ):
                record_id = new_id("rec")
                # Identifiers are kept (sealed) only where a release lets out a coarse form.
                kept = {
                    n: record.identifiers[n] for n in kept_identifiers if n in record.identifiers
                }
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
                        key_version=data_key.version,
                        payload=seal(
                            data_key.key, plaintext, associated_data(agreement.id, record_id)
                        ),
                    )
                )
                tokens.extend(
                    TokenRow(mk, tok, assignment.subject_id, record_id, matching)
                    for mk, tok in record_toks.items()
                )
                for linkage, version_tokens in later:
                    tokens.extend(
                        TokenRow(mk, tok, assignment.subject_id, record_id, linkage.version)
                        for mk, tok in version_tokens[index].items()
                    )
            uow.records.add_records(rows)
            uow.linkage.add_tokens(agreement.id, tokens)
            # The linkage engine's encodings and possible-match queue (issue 5).
            queued = link_arrivals(
                uow,
                agreement.id,
                linkage_keys[0] if at_source is None else None,
                [
                    ArrivedRecord(row.id, base.actor, row.subject_id, record.identifiers)
                    for row, record in zip(rows, valid, strict=True)
                ],
                at=now,
            )
        quality = tuple(p for r in valid for p in r.quality)
        by_rule = Counter(a.rule for a in assignments if a.rule is not None)
        linked = sum(by_rule.values())
        no_key = sum(1 for t in batch_tokens if not t)
        with self.instruments.stage("audit"):
            ingest_entry = self._audit(
                uow,
                with_changes(
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
                with_changes(
                    base,
                    action="link",
                    detail={
                        "batch_id": batch_id,
                        "linked": linked,
                        "new_subjects": len(valid) - linked,
                        "by_rule": dict(sorted(by_rule.items())),
                        "without_match_key": no_key,
                        "possible_matches_queued": queued,
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


# The HTTP status of a stored batch, kept with its result: only successes are stored.
_CREATED = 201


def _as_dict(result: IngestResult) -> dict[str, Any]:
    """A result in the stored form an idempotent retry replays."""
    return {
        "batch_id": result.batch_id,
        "accepted": result.accepted,
        "new_subjects": result.new_subjects,
        "linked": result.linked,
        "linked_by_rule": dict(sorted(result.linked_by_rule.items())),
        "quality": [p.as_dict() for p in result.quality],
        "audit_entries": list(result.audit_entries),
        "warnings": list(result.warnings),
    }


def _from_dict(stored: Mapping[str, Any]) -> IngestResult:
    """A stored result, marked as replayed."""
    return IngestResult(
        batch_id=str(stored["batch_id"]),
        accepted=int(stored["accepted"]),
        new_subjects=int(stored["new_subjects"]),
        linked=int(stored["linked"]),
        linked_by_rule={str(k): int(v) for k, v in stored["linked_by_rule"].items()},
        quality=tuple(
            Problem(str(p["code"]), str(p["message"]), Location(**p["location"]))
            for p in stored["quality"]
        ),
        audit_entries=tuple(int(seq) for seq in stored["audit_entries"]),
        warnings=tuple(str(w) for w in stored["warnings"]),
        replayed=True,
    )


def _released_identifiers(agreement: Agreement, dataset_id: str) -> set[str]:
    """Identifiers of this dataset that some release of the agreement lets out in coarse form."""
    return {
        grant.field
        for release in agreement.releases
        for grant in release.fields
        if grant.dataset == dataset_id and grant.field in RELEASABLE_IDENTIFIERS
    }
