"""Key operations: list, rotate and destroy working keys, and re-key records after a rotation.

Every operation is audited as ``key_operation`` with what changed and how many
records it touched, never with key material or check values of working keys.

Rotating a **data key** makes a new version, then reseals every stored payload
under it in chunks (each chunk its own transaction, so a crash part-way leaves
each record readable under the version it names). Rotating a **pseudonym
key** gives the recipient new pseudonyms (``ps2_...``) from then on; links are
untouched, because they belong to subjects, not to pseudonyms.

Rotating a **linkage key** cannot be done by the broker alone, because it
never keeps the identifiers a token was made from. It is a procedure:

1. ``rotate`` makes version N+1 active and marks N *retiring*. From then on
   every record the broker tokenises gets tokens under both; linking still
   uses N, which every stored record has.
2. Each provider re-sends its current records to the dataset's *rekey*
   endpoint (clear, or tokenised at source with the new key file). The broker
   checks each record's version-N tokens against those stored and adds the
   version N+1 tokens to the same record and subject.
3. ``complete_linkage_rotation`` refuses while any record lacks version N+1
   tokens, naming the datasets; then deletes the version-N tokens, destroys
   key N and links on N+1. No link changes at any step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agreements.decision import Deny, SupplyRequest, decide_supply_under
from agreements.models import Agreement
from audit.events import AuditEvent
from broker.errors import BatchRejected, Conflict, Location, NotFound, Problem, Refused
from broker.ingest import AtSource, ValidRecord, validate_batch, validate_tokenised_batch
from broker.interfaces import StoredKey, TokenRow, UnitOfWork
from broker.keystore import (
    ACTIVE,
    DATA,
    DESTROYED,
    KEY_KINDS,
    LINKAGE,
    LOG_SIGNING,
    PSEUDONYM,
    RETIRED,
    RETIRING,
    KeySlot,
    slot_of,
)
from broker.linkage import record_tokens
from broker.pseudonymise import constant_time_equal
from broker.sealing import associated_data, seal, unseal
from broker.service_core import BrokerCore, with_changes

RESEAL_CHUNK = 500


@dataclass(frozen=True)
class KeyInfo:
    """What ``broker keys list`` shows of one key version: never the key."""

    name: str
    kind: str
    agreement_id: str
    recipient: str
    version: int
    state: str
    created_at: str
    changed_at: str
    records: int | None  # payloads sealed under a data key version


@dataclass(frozen=True)
class KeyChange:
    """What a rotation or destruction did."""

    name: str
    version: int
    state: str
    records: int  # payloads resealed, records shredded, or tokens removed
    note: str


@dataclass(frozen=True)
class RekeyResult:
    """What a rekey batch added: tokens under the new linkage key for existing records."""

    records: int
    tokens: int
    key_version: int
    audit_entry: int


class KeyUseCases(BrokerCore):
    """The operator's key commands and the providers' rekey batches."""

    # -- reading --------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        """Every key version the store holds, with its state, oldest first per key."""
        with self._units() as uow:
            rows = uow.keys.all()
            sealed = {
                agreement_id: uow.records.count_by_key_version(agreement_id)
                for agreement_id in {r.agreement_id for r in rows if r.kind == DATA}
            }
        return [
            KeyInfo(
                name=slot_of(row).name,
                kind=row.kind,
                agreement_id=row.agreement_id,
                recipient=row.recipient,
                version=row.version,
                state=row.state,
                created_at=row.created_at,
                changed_at=row.changed_at,
                records=sealed[row.agreement_id].get(row.version, 0) if row.kind == DATA else None,
            )
            for row in rows
        ]

    # -- rotation -------------------------------------------------------------

    def rotate_key(
        self, kind: str, agreement_id: str, recipient: str = "", *, actor: str = "operator"
    ) -> KeyChange:
        """Make a new version of a key; see the module docstring for what each kind then does."""
        with self._refusal_audited(actor, "rotate", kind, agreement_id):
            return self._rotate_key(kind, agreement_id, recipient, actor=actor)

    def _rotate_key(self, kind: str, agreement_id: str, recipient: str, *, actor: str) -> KeyChange:
        slot = self._slot(kind, agreement_id, recipient)
        with self._units() as uow:
            rows = self._keystore.versions(uow.keys, slot, fresh=True)
            if kind == LINKAGE and any(r.state == RETIRING for r in rows):
                raise Conflict(
                    f"a rotation of {slot.name} is already under way; complete it with "
                    "'broker keys complete-rotation' before starting another",
                    code="rotation_in_progress",
                )
            old = self._keystore.active(uow.keys, slot, fresh=True)
            retired_as = RETIRING if kind == LINKAGE else RETIRED
            uow.keys.set_state(
                slot.kind,
                slot.agreement_id,
                slot.recipient,
                old.version,
                state=retired_as,
                at=self._now(),
            )
            new = self._keystore.add_version(uow.keys, slot)
            self._audit(
                uow,
                self._key_event(
                    actor,
                    slot,
                    "linkage_key_rotation_started" if kind == LINKAGE else "key_rotated",
                    {"from_version": old.version, "to_version": new.version},
                ),
            )
            uow.commit()
        resealed = self._reseal_all(slot, actor) if kind == DATA else 0
        notes = {
            DATA: f"{resealed} payloads resealed under version {new.version}",
            PSEUDONYM: "the recipient's pseudonyms change from now on; links are unchanged",
            LINKAGE: (
                "new records get tokens under both versions; ask each provider to send its "
                "records to the rekey endpoint, then run 'broker keys complete-rotation'"
            ),
        }
        return KeyChange(slot.name, new.version, ACTIVE, resealed, notes[kind])

    def _reseal_all(self, slot: KeySlot, actor: str) -> int:
        """Reseal every payload not under the active data key, a chunk per transaction."""
        total = 0
        while True:
            with self._units() as uow:
                active = self._keystore.active(uow.keys, slot, fresh=True)
                older = [
                    r.version
                    for r in self._keystore.versions(uow.keys, slot, fresh=True)
                    if r.version != active.version and r.state != DESTROYED
                ]
                chunk: list[tuple[str, bytes]] = []
                version = 0
                for version in older:
                    chunk = uow.records.sealed_under(slot.agreement_id, version, RESEAL_CHUNK)
                    if chunk:
                        break
                if not chunk:
                    break
                old_key = self._keystore.version(uow.keys, slot, version, fresh=True)
                assert old_key is not None  # destroyed versions were left out above
                for record_id, payload in chunk:
                    aad = associated_data(slot.agreement_id, record_id)
                    plaintext = unseal(old_key.key, payload, aad)
                    uow.records.reseal(record_id, active.version, seal(active.key, plaintext, aad))
                uow.commit()
                total += len(chunk)
        with self._units() as uow:
            self._audit(uow, self._key_event(actor, slot, "payloads_resealed", {"records": total}))
            uow.commit()
        return total

    def complete_linkage_rotation(self, agreement_id: str, *, actor: str = "operator") -> KeyChange:
        """Link on the new linkage key and destroy the old, once every record has new tokens."""
        with self._refusal_audited(actor, "complete_rotation", LINKAGE, agreement_id):
            return self._complete_linkage_rotation(agreement_id, actor=actor)

    def _complete_linkage_rotation(self, agreement_id: str, *, actor: str) -> KeyChange:
        slot = self._slot(LINKAGE, agreement_id, "")
        with self._units() as uow:
            rows = self._keystore.versions(uow.keys, slot, fresh=True)
            retiring = [r for r in rows if r.state == RETIRING]
            if not retiring:
                raise Conflict(
                    f"no rotation of {slot.name} is under way; start one with "
                    "'broker keys rotate linkage'",
                    code="no_rotation",
                )
            old = retiring[0].version
            new = self._keystore.active(uow.keys, slot, fresh=True).version
            lacking = uow.linkage.records_lacking_version(agreement_id, have=old, lack=new)
            if lacking:
                waiting = ", ".join(f"{c.agency_id}/{c.dataset_id}: {c.records}" for c in lacking)
                raise Conflict(
                    f"records still without tokens under linkage key version {new} ({waiting}); "
                    "ask those providers to send their records to the rekey endpoint, then "
                    "complete the rotation",
                    code="rekey_incomplete",
                )
            removed = uow.linkage.delete_version(agreement_id, old)
            uow.keys.destroy(slot.kind, slot.agreement_id, slot.recipient, old, self._now())
            self._audit(
                uow,
                self._key_event(
                    actor,
                    slot,
                    "linkage_key_rotation_completed",
                    {"from_version": old, "to_version": new, "tokens_removed": removed},
                ),
            )
            uow.commit()
        self._keystore.forget(slot, old)
        note = f"linking now uses version {new}; version {old} and its tokens are destroyed"
        return KeyChange(slot.name, new, ACTIVE, removed, note)

    # -- destruction ----------------------------------------------------------

    def destroy_key(
        self,
        kind: str,
        agreement_id: str,
        recipient: str = "",
        *,
        version: int | None,
        reason: str,
        actor: str = "operator",
    ) -> KeyChange:
        """Destroy one retired version, or (data keys only, version None) every version.

        Destroying every data key version is crypto-shredding: the agreement's
        stored payloads can never be read again. It is refused while any
        version of the agreement is active.
        """
        with self._refusal_audited(actor, "destroy", kind, agreement_id):
            return self._destroy_key(
                kind, agreement_id, recipient, version=version, reason=reason, actor=actor
            )

    def _destroy_key(
        self,
        kind: str,
        agreement_id: str,
        recipient: str,
        *,
        version: int | None,
        reason: str,
        actor: str,
    ) -> KeyChange:
        slot = self._slot(kind, agreement_id, recipient)
        # Read before the transaction: the register opens its own.
        live_agreement = any(a.status == "active" for a in self.registry.versions(agreement_id))
        if not reason.strip():
            raise Refused("give a reason for destroying a key; it is audited", code="reason_needed")
        with self._units() as uow:
            rows = self._keystore.versions(uow.keys, slot, fresh=True)
            live = [r for r in rows if r.state != DESTROYED]
            if version is None:
                targets = self._shred_targets(slot, live, live_agreement=live_agreement)
            else:
                targets = [r.version for r in live if r.version == version]
                if not targets:
                    raise NotFound(f"key {slot.name} has no version {version} left to destroy")
                state = next(r.state for r in live if r.version == version)
                if state != RETIRED:
                    raise Conflict(
                        f"version {version} of {slot.name} is {state}; only a retired version "
                        "can be destroyed (rotate the key first)",
                        code="key_in_use",
                    )
            counts = uow.records.count_by_key_version(agreement_id) if kind == DATA else {}
            affected = sum(counts.get(v, 0) for v in targets)
            if kind == DATA and version is not None and affected:
                raise Conflict(
                    f"{affected} payloads are still sealed under version {version}; rotate the "
                    "data key again to reseal them, or destroy every version to shred them",
                    code="key_in_use",
                )
            for target in targets:
                uow.keys.destroy(slot.kind, slot.agreement_id, slot.recipient, target, self._now())
            self._audit(
                uow,
                self._key_event(
                    actor,
                    slot,
                    "key_destroyed",
                    {"versions": targets, "records_shredded": affected, "reason": reason[:500]},
                ),
            )
            uow.commit()
        for target in targets:
            self._keystore.forget(slot, target)
        note = (
            f"{affected} stored payloads can never be read again"
            if kind == DATA
            else "the destroyed version can make nothing again"
        )
        return KeyChange(slot.name, max(targets), DESTROYED, affected, note)

    @staticmethod
    def _shred_targets(
        slot: KeySlot, live: Sequence[StoredKey], *, live_agreement: bool
    ) -> list[int]:
        if slot.kind != DATA:
            raise Refused(
                "name the version to destroy (--version); only data keys can be destroyed whole",
                code="version_needed",
            )
        if live_agreement:
            raise Conflict(
                f"agreement '{slot.agreement_id}' is active; terminate it before shredding its "
                "stored payloads",
                code="agreement_live",
            )
        if not live:
            raise NotFound(f"key {slot.name} has no version left to destroy")
        return [r.version for r in live]

    # -- rekey ----------------------------------------------------------------

    def rekey_batch(
        self,
        *,
        agency: str,
        agreement_id: str,
        dataset_id: str,
        records: Sequence[Any],
        request_id: str | None = None,
        at_source: AtSource | None = None,
    ) -> RekeyResult:
        """Add tokens under the new linkage key to records already stored, all or nothing.

        Each record names a stored record of this provider's dataset. Sent in
        clear, its tokens under the key being retired must equal those stored,
        so a wrong record id cannot graft one child's tokens onto another.
        """
        today = self._today()
        registry = self.registry
        versions = registry.versions(agreement_id)
        agreement = registry.get(agreement_id, today)
        if agreement.dataset(dataset_id) is None:
            raise NotFound(f"dataset '{dataset_id}' is not in agreement '{agreement_id}'")
        base = AuditEvent(
            actor=agency,
            action="rekey",
            outcome="permitted",
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            dataset_id=dataset_id,
            request_id=request_id,
        )
        decision = decide_supply_under(
            versions, SupplyRequest(agency=agency, dataset=dataset_id, on=today)
        )
        if isinstance(decision, Deny):
            self._refuse(base, decision.code, {"records": len(records)})
            raise Refused(decision.reason, code=decision.code)
        if len(records) > self.limits.max_batch_records:
            self._refuse(base, "batch_too_large", {"records": len(records)})
            raise BatchRejected(
                f"a batch may hold at most {self.limits.max_batch_records} records; split it",
                code="batch_too_large",
            )
        try:
            with self._units() as uow:
                result = self._rekey(
                    uow,
                    agreement=agreement,
                    dataset_id=dataset_id,
                    records=records,
                    base=base,
                    at_source=at_source,
                )
                uow.commit()
                return result
        except (BatchRejected, Conflict) as rejected:
            self._refuse(base, rejected.code, {"records": len(records)})
            raise

    def _rekey(
        self,
        uow: UnitOfWork,
        *,
        agreement: Agreement,
        dataset_id: str,
        records: Sequence[Any],
        base: AuditEvent,
        at_source: AtSource | None,
    ) -> RekeyResult:
        agreement_id = agreement.id
        dataset = agreement.dataset(dataset_id)
        assert dataset is not None
        in_use = self._keystore.linkage_keys(uow.keys, agreement_id)
        if len(in_use) < 2:
            raise Conflict(
                "no linkage key rotation is under way for this agreement; send new records "
                "to the dataset's records endpoint instead",
                code="no_rotation",
            )
        old, new = in_use[0], in_use[-1]
        valid: Sequence[ValidRecord]
        if at_source is None:
            valid = validate_batch(dataset, records, max_field_length=self.limits.max_field_length)
        else:
            same = at_source.key_version == new.version and constant_time_equal(
                at_source.key_check, new.check_value
            )
            if not same:
                raise Conflict(
                    "a tokenised rekey batch must be made with the new linkage key; fetch the "
                    "current linkage key file from the broker operator",
                    code="key_version_mismatch",
                    location=Location(field="tokenised.key_check"),
                )
            valid = validate_tokenised_batch(
                dataset,
                records,
                match_keys=agreement.linkage.match_keys,
                max_field_length=self.limits.max_field_length,
            )
        stored = uow.records.by_refs(agreement_id, dataset_id, [r.source_ref for r in valid])
        problems = [
            Problem(
                "record_unknown",
                "no record with this record_id is stored for this dataset",
                Location(record=r.index, field="record_id"),
            )
            for r in valid
            if r.source_ref not in stored or stored[r.source_ref].agency_id != base.actor
        ]
        if problems:
            raise BatchRejected(
                f"{len(problems)} records are not stored for this dataset; nothing was changed",
                problems=tuple(problems),
            )
        owners = {stored[r.source_ref].id: stored[r.source_ref].subject_id for r in valid}
        match_keys = agreement.linkage.match_keys
        if at_source is None:
            held = uow.linkage.tokens_of_records(agreement_id, old.version, owners)
            problems = [
                Problem(
                    "record_mismatch",
                    "these identifiers do not give the tokens stored for this record_id; "
                    "check the record_id",
                    Location(record=r.index, field="record_id"),
                )
                for r in valid
                if record_tokens(old.key, r.identifiers, match_keys)
                != held.get(stored[r.source_ref].id, {})
            ]
            if problems:
                raise BatchRejected(
                    f"{len(problems)} records do not match what is stored; nothing was changed",
                    problems=tuple(problems),
                )
            fresh = [record_tokens(new.key, r.identifiers, match_keys) for r in valid]
        else:
            fresh = [dict(r.tokens or {}) for r in valid]
        uow.linkage.delete_record_tokens(agreement_id, new.version, owners)
        rows = [
            TokenRow(mk, tok, stored[r.source_ref].subject_id, stored[r.source_ref].id, new.version)
            for r, tokens in zip(valid, fresh, strict=True)
            for mk, tok in tokens.items()
        ]
        uow.linkage.add_tokens(agreement_id, rows)
        entry = self._audit(
            uow,
            with_changes(
                base,
                detail={
                    "records": len(valid),
                    "tokens": len(rows),
                    "key_version": new.version,
                    "by_match_key": dict(sorted(Counter(t.match_key for t in rows).items())),
                    **({"tokenised_at_source": True} if at_source is not None else {}),
                },
            ),
        )
        return RekeyResult(len(valid), len(rows), new.version, entry.seq)

    # -- helpers --------------------------------------------------------------

    def _slot(self, kind: str, agreement_id: str, recipient: str) -> KeySlot:
        if kind not in KEY_KINDS or kind == LOG_SIGNING:
            raise Refused(
                "the key kind must be one of linkage, data or pseudonym", code="key_kind_unknown"
            )
        agreement = self.registry.get(agreement_id, self._today())  # NotFound names the id
        if kind == PSEUDONYM:
            if not recipient:
                raise Refused(
                    "name the recipient whose pseudonym key this is", code="recipient_needed"
                )
            if agreement.party(recipient) is None:
                raise NotFound(f"'{recipient}' is not a party to agreement '{agreement_id}'")
            return KeySlot(kind, agreement_id, recipient)
        if recipient:
            raise Refused("only pseudonym keys belong to a recipient", code="recipient_unexpected")
        return KeySlot(kind, agreement_id)

    @contextmanager
    def _refusal_audited(
        self, actor: str, operation: str, kind: str, agreement_id: str
    ) -> Iterator[None]:
        """Audit a refused key operation with its code (never key material), then re-raise."""
        try:
            yield
        except (NotFound, Conflict, Refused) as exc:
            base = AuditEvent(
                actor=actor,
                action="key_operation",
                outcome="permitted",
                agreement_id=agreement_id[:64] if agreement_id in self.registry.ids() else None,
            )
            named = kind if kind in KEY_KINDS else "other"  # never echo free text
            self._refuse(base, exc.code, {"operation": operation, "kind": named})
            raise

    def _key_event(
        self, actor: str, slot: KeySlot, operation: str, detail: dict[str, Any]
    ) -> AuditEvent:
        return AuditEvent(
            actor=actor,
            action="key_operation",
            outcome="permitted",
            agreement_id=slot.agreement_id or None,
            detail={"operation": operation, "key": slot.name, **detail},
        )
