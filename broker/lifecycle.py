"""The agreement register: every version the broker holds, and each change to its lifecycle.

Versions live in the database so that every worker enforces the same ones: a
counter bumped on each change tells a worker to reload, and a suspension takes
effect for the next request on every worker. A version's content never
changes once stored; only its status and its approvals do.

Who may do what (until per-person roles arrive, an agency's credential acts
for that agency's DPO):
- any party uploads a draft of an agreement it is a party to, and suspends it;
- each party approves a version for itself, with an Ed25519 key the operator
  registered for it;
- the lead party (any party where none is lead) activates, resumes and terminates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from agreements.approval import (
    check_approval,
    content_digest,
    with_approval,
)
from agreements.decision import current_version, review_warnings
from agreements.loader import parse_agreement
from agreements.models import Agreement
from agreements.policytests import run_policy_tests
from agreements.registry import AgreementRegistry
from agreements.terms import Approval
from audit.events import AuditEvent, LoggedEntry
from broker.errors import AgreementError, Conflict, NotFound, Refused
from broker.interfaces import AgreementRow, UnitOfWork, UnitOfWorkFactory
from broker.lifecycle_rules import (
    agreement_of,
    check_public_key,
    check_registered_keys,
    clean_reason,
    effective_status,
    require_all_approved,
    require_lead,
)

AuditAppender = Callable[[UnitOfWork, AuditEvent], LoggedEntry]


@dataclass(frozen=True)
class VersionSummary:
    """One stored version as the register lists it."""

    agreement: Agreement
    digest: str
    source: str
    created_at: str
    created_by: str
    updated_at: str
    effective_status: str
    warnings: tuple[str, ...]


class AgreementBook:
    """Reads and changes the stored agreements; caches one snapshot per generation."""

    def __init__(
        self, *, units: UnitOfWorkFactory, audit: AuditAppender, now: Callable[[], str]
    ) -> None:
        self._units = units
        self._audit = audit
        self._now = now
        self._cached: tuple[int, AgreementRegistry] | None = None

    # -- reading ------------------------------------------------------------

    def registry(self, uow: UnitOfWork) -> AgreementRegistry:
        """The versions in force as of this transaction (reloaded only when they changed)."""
        generation = uow.agreements.generation()
        if self._cached is None or self._cached[0] != generation:
            rows = uow.agreements.all()
            self._cached = (generation, AgreementRegistry(agreement_of(row) for row in rows))
        return self._cached[1]

    def snapshot(self) -> AgreementRegistry:
        """The current register, read in a transaction of its own."""
        with self._units() as uow:
            return self.registry(uow)

    def summaries(self, agreement_id: str, today: date) -> list[VersionSummary]:
        """Every stored version of one agreement, oldest first, with its effective status."""
        with self._units() as uow:
            rows = [r for r in uow.agreements.all() if r.agreement_id == agreement_id]
        if not rows:
            raise NotFound(f"agreement '{agreement_id}' is not held by the broker")
        versions = [agreement_of(r) for r in rows]
        in_force = current_version(versions, today)
        return [
            VersionSummary(
                agreement=agreement,
                digest=row.digest,
                source=row.source,
                created_at=row.created_at,
                created_by=row.created_by,
                updated_at=row.updated_at,
                effective_status=effective_status(agreement, in_force, today),
                warnings=review_warnings(agreement, today) if agreement is in_force else (),
            )
            for row, agreement in zip(rows, versions, strict=True)
        ]

    # -- installing ----------------------------------------------------------

    def install_files(
        self, agreements: Iterable[Agreement], *, require_registered_keys: bool = False
    ) -> None:
        """Store agreement versions from the agreements folder at start-up.

        A new version is stored with the status its file gives. A stored
        version must not have changed: a changed file needs a new version
        number. New valid approvals in a file are added to the stored version.
        Approvals must use a party's registered keys where it has any, and
        everywhere when ``require_registered_keys`` (production) is set.
        """
        with self._units() as uow:
            trusted = uow.agreements.approver_keys()
            for agreement in agreements:
                self._install_one(uow, agreement, trusted, require_registered_keys)
            uow.commit()

    def _install_one(
        self,
        uow: UnitOfWork,
        agreement: Agreement,
        trusted: dict[str, set[str]],
        require_registered_keys: bool,
    ) -> None:
        digest = content_digest(agreement)
        stored = uow.agreements.get(agreement.id, agreement.version)
        if stored is None:
            check_registered_keys(
                agreement, agreement.approvals, trusted, everywhere=require_registered_keys
            )
            if agreement.status == "active":
                require_all_approved(agreement)
            uow.agreements.add(self._row(agreement, digest, source="file", actor="operator"))
            self._record(uow, "operator", agreement, "installed_from_file", digest=digest)
            return
        if stored.digest != digest:
            raise AgreementError(
                f"agreement '{agreement.id}' version {agreement.version} in the agreements "
                "folder differs from the version the broker holds; give the changed agreement "
                "a new version number"
            )
        held = agreement_of(stored)
        added = [a for a in agreement.approvals if a not in held.approvals]
        # Only new approvals are judged against today's keys: a version already held was
        # accepted under the keys registered when it was installed.
        check_registered_keys(agreement, added, trusted, everywhere=require_registered_keys)
        if added:
            merged = held
            for approval in added:
                merged = with_approval(merged, approval)
            self._store_document(uow, merged, stored.digest)
            for approval in added:
                self._record(uow, "operator", merged, "approved", party=approval.party)

    # -- lifecycle changes -------------------------------------------------------

    def upload_draft(self, text: str, *, actor: str, today: date) -> Agreement:
        """Validate and store a new draft version; nothing is stored if it is invalid."""
        agreement = parse_agreement(text, source="upload", today=today)
        with self._refusals_audited(actor, agreement.id, agreement.version, "draft_upload"):
            return self._store_draft(agreement, actor)

    def _store_draft(self, agreement: Agreement, actor: str) -> Agreement:
        if agreement.party(actor) is None:
            raise Refused(
                f"agency '{actor}' is not a party to agreement '{agreement.id}'",
                code="agency_not_party",
            )
        draft = agreement.model_copy(update={"status": "draft", "status_reason": None})
        digest = content_digest(draft)
        with self._units() as uow:
            held = [r for r in uow.agreements.all() if r.agreement_id == draft.id]
            if any(r.version >= draft.version for r in held):
                latest = max(r.version for r in held)
                raise Conflict(
                    f"agreement '{draft.id}' already has version {latest}; a new draft must "
                    f"be version {latest + 1} or later (stored versions are never replaced)",
                    code="version_exists",
                )
            uow.agreements.add(self._row(draft, digest, source="upload", actor=actor))
            self._record(uow, actor, draft, "draft_uploaded", digest=digest)
            uow.commit()
        return draft

    def approve(self, agreement_id: str, version: int, approval: Approval, *, actor: str) -> str:
        """Add one party's approval to a draft; returns the version's status afterwards."""
        with self._refusals_audited(actor, agreement_id, version, "approve"):
            return self._approve(agreement_id, version, approval, actor)

    def _approve(self, agreement_id: str, version: int, approval: Approval, actor: str) -> str:
        if approval.party != actor:
            raise Refused(
                f"agency '{actor}' may approve only for itself, not for '{approval.party}'",
                code="approval_for_other_party",
            )
        with self._units() as uow:
            row = self._stored(uow, agreement_id, version)
            agreement = agreement_of(row)
            if agreement.status not in ("draft", "approved"):
                raise Conflict(
                    f"version {version} is {agreement.status}; only a draft can be approved",
                    code="not_a_draft",
                )
            if agreement.party(actor) is None:
                raise Refused(f"agency '{actor}' is not a party", code="agency_not_party")
            verdict = check_approval(agreement, approval, uow.agreements.approver_keys())
            if verdict.problem is not None:
                raise Refused(verdict.problem, code="approval_invalid")
            approved = with_approval(agreement, approval)
            approved_by = {a.party for a in approved.approvals}
            status = "approved" if all(p.id in approved_by for p in approved.parties) else "draft"
            self._store_document(uow, approved, row.digest)
            uow.agreements.set_status(agreement_id, version, status, None, self._now())
            self._record(uow, actor, approved, "approved", party=actor, status=status)
            uow.commit()
        return status

    def activate(self, agreement_id: str, version: int, *, actor: str) -> Agreement:
        """Put an approved version into force from its effective date."""
        with self._refusals_audited(actor, agreement_id, version, "activate"):
            return self._activate(agreement_id, version, actor)

    def _activate(self, agreement_id: str, version: int, actor: str) -> Agreement:
        with self._units() as uow:
            row = self._stored(uow, agreement_id, version)
            agreement = agreement_of(row)
            require_lead(agreement, actor, "activate")
            if agreement.status != "approved":
                raise Conflict(
                    f"version {version} is {agreement.status}; every party must approve it "
                    "before it can be activated",
                    code="not_approved",
                )
            require_all_approved(agreement)
            failed = [r.test.name for r in run_policy_tests(agreement) if not r.passed]
            # The DPOs' own tests are their intent: a version that fails them never goes live.
            if failed:
                raise Conflict(
                    f"version {version} fails {len(failed)} of its own policy tests "
                    f"(first: '{failed[0]}'); fix the agreement and upload a new draft",
                    code="policy_tests_failed",
                )
            uow.agreements.set_status(agreement_id, version, "active", None, self._now())
            self._record(uow, actor, agreement, "activated")
            uow.commit()
        return agreement.model_copy(update={"status": "active"})

    def suspend(self, agreement_id: str, reason: str, *, actor: str) -> int:
        """Stop all sharing under every active version at once; returns how many were active."""
        reason = clean_reason(reason)
        return self._change_all(
            agreement_id,
            actor,
            from_states=("active",),
            to_state="suspended",
            reason=reason,
            verb="suspend",
            lead_only=False,
        )

    def resume(self, agreement_id: str, *, actor: str) -> int:
        """Lift a suspension: suspended versions become active again."""
        return self._change_all(
            agreement_id,
            actor,
            from_states=("suspended",),
            to_state="active",
            reason=None,
            verb="resume",
            lead_only=True,
        )

    def terminate(self, agreement_id: str, reason: str, *, actor: str) -> int:
        """End the agreement: no version of it will share again."""
        reason = clean_reason(reason)
        return self._change_all(
            agreement_id,
            actor,
            from_states=("draft", "approved", "active", "suspended"),
            to_state="terminated",
            reason=reason,
            verb="terminate",
            lead_only=True,
        )

    def _change_all(
        self,
        agreement_id: str,
        actor: str,
        *,
        from_states: Sequence[str],
        to_state: str,
        reason: str | None,
        verb: str,
        lead_only: bool,
    ) -> int:
        with self._refusals_audited(actor, agreement_id, None, verb), self._units() as uow:
            rows = [r for r in uow.agreements.all() if r.agreement_id == agreement_id]
            if not rows:
                raise NotFound(f"agreement '{agreement_id}' is not held by the broker")
            latest = agreement_of(rows[-1])
            if lead_only:
                require_lead(latest, actor, verb)
            elif latest.party(actor) is None and actor != "operator":
                raise Refused(f"agency '{actor}' is not a party", code="agency_not_party")
            changed = [r for r in rows if r.status in from_states]
            if not changed:
                raise Conflict(
                    f"agreement '{agreement_id}' has no version that is {' or '.join(from_states)}",
                    code="nothing_to_change",
                )
            for row in changed:
                uow.agreements.set_status(agreement_id, row.version, to_state, reason, self._now())
            self._record(
                uow,
                actor,
                latest,
                to_state if verb != "resume" else "resumed",
                versions=[r.version for r in changed],
                reason_given=reason is not None,
            )
            uow.commit()
        return len(changed)

    # -- approver keys -------------------------------------------------------------

    def register_approver_key(self, agency_id: str, public_key: str, *, actor: str) -> None:
        """Trust ``public_key`` for approvals by ``agency_id`` (operator action, audited)."""
        check_public_key(public_key)
        with self._units() as uow:
            if public_key in uow.agreements.approver_keys().get(agency_id, set()):
                raise Conflict("that key is already registered for this agency")
            uow.agreements.add_approver_key(agency_id, public_key, self._now())
            self._audit(
                uow,
                AuditEvent(
                    actor=actor,
                    action="key_operation",
                    outcome="permitted",
                    detail={"operation": "approver_key_registered", "agency": agency_id},
                ),
            )
            uow.commit()

    def revoke_approver_key(self, agency_id: str, public_key: str, *, actor: str) -> None:
        """Stop trusting ``public_key`` for new approvals by ``agency_id``."""
        with self._units() as uow:
            if not uow.agreements.revoke_approver_key(agency_id, public_key, self._now()):
                raise NotFound("that key is not registered for this agency")
            self._audit(
                uow,
                AuditEvent(
                    actor=actor,
                    action="key_operation",
                    outcome="permitted",
                    detail={"operation": "approver_key_revoked", "agency": agency_id},
                ),
            )
            uow.commit()

    # -- helpers -------------------------------------------------------------------

    @contextmanager
    def _refusals_audited(
        self, actor: str, agreement_id: str, version: int | None, operation: str
    ) -> Iterator[None]:
        """A refused lifecycle change is itself audited, in a transaction of its own."""
        try:
            yield
        except (Refused, Conflict) as refused:
            with self._units() as uow:
                self._audit(
                    uow,
                    AuditEvent(
                        actor=actor,
                        action="agreement_change",
                        outcome="refused",
                        reason_code=refused.code,
                        agreement_id=agreement_id,
                        agreement_version=version,
                        detail={"operation": operation},
                    ),
                )
                uow.commit()
            raise

    def _stored(self, uow: UnitOfWork, agreement_id: str, version: int) -> AgreementRow:
        row = uow.agreements.get(agreement_id, version)
        if row is None:
            raise NotFound(f"agreement '{agreement_id}' has no version {version}")
        return row

    def _row(self, agreement: Agreement, digest: str, *, source: str, actor: str) -> AgreementRow:
        now = self._now()
        return AgreementRow(
            agreement_id=agreement.id,
            version=agreement.version,
            status=agreement.status,
            status_reason=agreement.status_reason,
            document=agreement.model_dump_json(),
            digest=digest,
            source=source,
            created_at=now,
            created_by=actor,
            updated_at=now,
        )

    def _store_document(self, uow: UnitOfWork, agreement: Agreement, digest: str) -> None:
        uow.agreements.set_document(
            agreement.id, agreement.version, agreement.model_dump_json(), digest, self._now()
        )

    def _record(
        self,
        uow: UnitOfWork,
        actor: str,
        agreement: Agreement,
        operation: str,
        **detail: object,
    ) -> None:
        uow.agreements.bump_generation()
        self._audit(
            uow,
            AuditEvent(
                actor=actor,
                action="agreement_change",
                outcome="permitted",
                agreement_id=agreement.id,
                agreement_version=agreement.version,
                detail={"operation": operation, **detail},
            ),
        )
