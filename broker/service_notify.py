"""Notifications: recipients subscribe, arriving records queue notifications, a job pushes them.

A recipient subscribes, per agreement and purpose, with a webhook URL and a
rule (``broker.notify``). When a provider's batch is stored, ``queue_notifications``
runs in the batch's own transaction: for each live subscription to that
dataset the decision is made again, and each record that meets the rule, as
released, becomes a notification holding only the permitted fields in their
permitted forms and the recipient's pseudonym, sealed under the agreement's
data key and audited with its subject. Nothing is lost: the batch and its
notifications commit together or not at all.

The delivery job (``NotificationDelivery``) claims due notifications, decides
again, signs and posts each, and records every attempt; a failure waits
(``RetrySchedule``) and is tried again, so delivery is at least once, and the
idempotency id (``webhook-id``) lets the recipient make it exactly once. A
recipient can also poll and acknowledge.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from agreements.decision import Deny, Permit, ReleaseRequest, current_version, decide_under
from agreements.models import Agreement, Dataset
from agreements.registry import AgreementRegistry
from audit.events import AuditEvent
from broker.errors import AccordError, Location, NotFound, Refused, ValidationError
from broker.ids import new_id
from broker.interfaces import RecordRow, UnitOfWork
from broker.jobs import Job, stamp
from broker.keystore import DATA, PSEUDONYM, KeySlot
from broker.notify import (
    RetrySchedule,
    Rule,
    WebhookPolicy,
    checked_rule,
    checked_webhook_url,
    matches,
    new_secret,
    secret_text,
    signed_headers,
)
from broker.notify_ports import (
    DELIVERED,
    FAILED,
    PENDING,
    AttemptRow,
    NotificationRow,
    NotificationStatus,
    PostOutcome,
    SubscriptionRow,
    WebhookSender,
)
from broker.pseudonymise import encode_parts, pseudonym
from broker.release import released_fields
from broker.sealing import SealBroken, associated_data, seal, unseal
from broker.service_core import BrokerCore, warning_codes, with_changes

NOTIFICATION_JOB: Final = "notification_delivery"
MAX_PAGE = 500
MAX_ACKNOWLEDGE = 500
_DEFAULT_POLICY = WebhookPolicy()


@dataclass(frozen=True, repr=False)
class Subscription:
    """A subscription as its recipient sees it; ``secret`` only in the answer that created it."""

    id: str
    agreement_id: str
    purpose: str
    recipient: str
    rule: Rule
    url: str
    created_at: str
    cancelled_at: str | None = None
    secret: str | None = None
    audit_entry: int | None = None

    def __repr__(self) -> str:  # the secret and URL stay out of logs and tracebacks
        return f"Subscription({self.id}, {self.agreement_id}/{self.purpose}/{self.recipient})"


@dataclass(frozen=True)
class ReceivedNotification:
    """One notification as its recipient polls it; ``body`` is what the webhook carries.

    ``body`` is None when it cannot be released now: ``withheld`` says why (a
    stable code such as ``agreement_not_active``, ``release_narrowed``,
    ``body_erased`` or ``key_destroyed``).
    """

    seq: int
    id: str
    subscription_id: str
    purpose: str
    dataset: str
    status: str
    attempts: int
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    acknowledged_at: str | None
    body: Mapping[str, Any] | None
    withheld: str | None = None


@dataclass(frozen=True)
class NotificationPage:
    """A page of a recipient's notifications, oldest first, and the cursor for the next."""

    notifications: tuple[ReceivedNotification, ...]
    next_after: int | None
    audit_entry: int


@dataclass(frozen=True)
class DeliveryLog:
    """Every push of one notification: attempt, time, status code or failure kind."""

    notification_id: str
    status: str
    attempts: tuple[AttemptRow, ...]


@dataclass(frozen=True, repr=False)
class _Prepared:
    """A claimed notification made ready to push, or the code of why it cannot be."""

    notification: NotificationRow
    subscription: SubscriptionRow | None
    body: bytes | None = None
    secret: bytes | None = None
    problem: str | None = None
    # True when no later attempt can succeed (its key was destroyed, its body erased).
    permanent: bool = False


@dataclass
class _Group:
    """What one run did for one subscription, recorded and audited together."""

    attempts: list[tuple[AttemptRow, NotificationStatus, str | None]] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    release_at: str | None = None

    def ids(self, status: NotificationStatus) -> list[str]:
        """The notifications whose attempt this run left in ``status``."""
        return [log.notification_id for log, done, _ in self.attempts if done == status]


def _secret_aad(agreement_id: str, subscription_id: str) -> bytes:
    return encode_parts("webhook-secret", [agreement_id, subscription_id])


def _body_aad(agreement_id: str, notification_id: str) -> bytes:
    return encode_parts("notification", [agreement_id, notification_id])


def _narrowed(body: Mapping[str, Any], permit: Permit) -> bool:
    """Whether the body holds a field, or a form, that the decision no longer releases."""
    forms = body.get("forms", {})
    granted = {f.field: f.form for f in permit.fields if f.dataset == body.get("dataset")}
    if any(granted.get(name) != form for name, form in forms.items()):
        return True
    return body.get("reference") is not None and not permit.reveal_record_reference


class NotificationUseCases(BrokerCore):
    """A recipient's subscriptions, polling and acknowledgements, and the delivery job's work."""

    # -- subscriptions ----------------------------------------------------

    def subscribe(
        self,
        *,
        agency: str,
        agreement_id: str,
        purpose: str,
        url: str,
        rule: Rule,
        policy: WebhookPolicy = _DEFAULT_POLICY,
        request_id: str | None = None,
    ) -> Subscription:
        """Subscribe ``agency`` to records of ``rule.dataset`` that meet the rule, for a purpose.

        The agreement must release to the agency for the purpose through the
        ``notification`` output; the rule may test only fields released to it;
        the URL must suit ``policy``. Every refusal is audited. The signing
        secret is in the answer once and never again.
        """
        today = self._today()
        registry = self.registry
        versions = registry.versions(agreement_id)
        agreement = registry.get(agreement_id, today)
        dataset = agreement.dataset(rule.dataset)
        base = AuditEvent(
            actor=agency,
            action="subscription",
            outcome="permitted",
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            purpose=purpose,
            dataset_id=None if dataset is None else dataset.id,
            request_id=request_id,
        )
        asked = {"conditions": len(rule.all_of)}
        decision = decide_under(
            versions,
            ReleaseRequest(agency=agency, purpose=purpose, output="notification", on=today),
        )
        if isinstance(decision, Deny):
            self._refuse(base, decision.code, asked)
            raise Refused(decision.reason, code=decision.code)
        try:
            checked = self._checked_subscription(agreement, decision, agency, purpose, rule)
            checked_webhook_url(url, policy)
        except AccordError as exc:
            self._refuse(base, exc.code, asked)
            raise
        secret = new_secret()
        row_id = new_id("nsub")
        now = self._now()
        with self._units() as uow:
            data_key = self._keystore.active(uow.keys, KeySlot(DATA, agreement.id))
            uow.notifications.add_subscription(
                SubscriptionRow(
                    id=row_id,
                    agreement_id=agreement.id,
                    purpose=purpose,
                    recipient=agency,
                    dataset_id=checked.dataset,
                    rule=checked.to_json(),
                    url=url,
                    secret=seal(data_key.key, secret, _secret_aad(agreement.id, row_id)),
                    key_version=data_key.version,
                    created_at=now,
                )
            )
            entry = self._audit(
                uow,
                with_changes(
                    base,
                    detail={
                        "subscription": row_id,
                        "conditions": [{"field": c.field, "op": c.op} for c in checked.all_of],
                        "warnings": warning_codes(decision.warnings),
                    },
                ),
            )
            uow.commit()
        return Subscription(
            id=row_id,
            agreement_id=agreement.id,
            purpose=purpose,
            recipient=agency,
            rule=checked,
            url=url,
            created_at=now,
            secret=secret_text(secret),
            audit_entry=entry.seq,
        )

    @staticmethod
    def _checked_subscription(
        agreement: Agreement, permit: Permit, agency: str, purpose: str, rule: Rule
    ) -> Rule:
        dataset = agreement.dataset(rule.dataset)
        granted = [f for f in permit.fields if f.dataset == rule.dataset]
        if dataset is None or not granted:
            raise Refused(
                f"nothing of dataset '{rule.dataset[:64]}' is released to '{agency}' for "
                f"purpose '{purpose}'",
                code="dataset_not_released",
                location=Location(field="rule.dataset"),
            )
        if dataset.provider == agency:
            raise Refused(
                "an agency is not notified of records it supplied itself",
                code="dataset_own",
                location=Location(field="rule.dataset"),
            )
        return checked_rule(rule, dataset, granted)

    def subscriptions(self, *, agency: str, agreement_id: str) -> list[Subscription]:
        """The agency's own subscriptions under an agreement, live and cancelled, oldest first."""
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            rows = uow.notifications.subscriptions_of(agreement.id, agency)
        return [_subscription_of(row) for row in rows]

    def cancel_subscription(
        self, *, agency: str, agreement_id: str, subscription_id: str, request_id: str | None = None
    ) -> Subscription:
        """Stop a subscription: nothing new is queued, nothing pending pushed (it can be polled).

        NotFound for another agency's subscription, as for one that does not exist.
        """
        with self._units() as uow:
            row = self._own_subscription(uow, agency, agreement_id, subscription_id)
            if row.cancelled_at is not None:
                return _subscription_of(row)
            now = self._now()
            uow.notifications.cancel_subscription(row.id, now)
            stopped = uow.notifications.stop_pending(row.id)
            self._audit(
                uow,
                AuditEvent(
                    actor=agency,
                    action="subscription_cancelled",
                    outcome="permitted",
                    agreement_id=row.agreement_id,
                    purpose=row.purpose,
                    dataset_id=row.dataset_id,
                    request_id=request_id,
                    detail={"subscription": row.id, "pending_stopped": stopped},
                ),
            )
            uow.commit()
        return _subscription_of(row, cancelled_at=now)

    @staticmethod
    def _own_subscription(
        uow: UnitOfWork, agency: str, agreement_id: str, subscription_id: str
    ) -> SubscriptionRow:
        row = uow.notifications.subscription(subscription_id)
        if row is None or row.recipient != agency or row.agreement_id != agreement_id:
            raise NotFound(
                f"no subscription '{subscription_id[:64]}' of yours under this agreement"
            )
        return row

    # -- polling ------------------------------------------------------------

    def notifications(
        self,
        *,
        agency: str,
        agreement_id: str,
        purpose: str | None = None,
        after: int = 0,
        limit: int = 100,
        request_id: str | None = None,
    ) -> NotificationPage:
        """The agency's notifications after position ``after``, oldest first; audited.

        Every notification is listed, whatever its delivery status, so a
        recipient that only polls misses none. Each body is released only if
        the agreement still releases it as it was made (see ``ReceivedNotification``).
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(
                f"limit must be between 1 and {MAX_PAGE}",
                code="page_size_invalid",
                location=Location(field="limit"),
            )
        if after < 0:
            raise ValidationError(
                "after must not be negative", code="page_invalid", location=Location(field="after")
            )
        today = self._today()
        registry = self.registry
        versions = registry.versions(agreement_id)
        agreement = registry.get(agreement_id, today)
        permits: dict[str, Permit | Deny] = {}
        with self._units() as uow:
            rows = uow.notifications.page(agreement.id, agency, purpose, after, limit)
            found: list[ReceivedNotification] = []
            for row in rows:
                if row.purpose not in permits:
                    permits[row.purpose] = decide_under(
                        versions,
                        ReleaseRequest(
                            agency=agency, purpose=row.purpose, output="notification", on=today
                        ),
                    )
                plain, withheld = self._releasable(uow, row, permits[row.purpose])
                found.append(_received(row, None if plain is None else json.loads(plain), withheld))
            entry = self._audit(
                uow,
                AuditEvent(
                    actor=agency,
                    action="notification_poll",
                    outcome="permitted",
                    agreement_id=agreement.id,
                    agreement_version=agreement.version,
                    purpose=purpose,
                    request_id=request_id,
                    detail={
                        "after": after,
                        "released": [n.id for n in found if n.body is not None],
                        "withheld": dict(
                            sorted(Counter(n.withheld for n in found if n.withheld).items())
                        ),
                    },
                ),
            )
            uow.commit()
        return NotificationPage(
            notifications=tuple(found),
            next_after=found[-1].seq if len(found) == limit else None,
            audit_entry=entry.seq,
        )

    def _releasable(
        self, uow: UnitOfWork, row: NotificationRow, decision: Permit | Deny
    ) -> tuple[bytes | None, str | None]:
        """The body's exact bytes if the decision releases it as it was made, else why not."""
        if isinstance(decision, Deny):
            return None, decision.code
        if row.body is None:
            return None, "body_erased"
        key = self._keystore.version(uow.keys, KeySlot(DATA, row.agreement_id), row.key_version)
        if key is None:
            return None, "key_destroyed"
        plain = unseal(key.key, row.body, _body_aad(row.agreement_id, row.id))
        if _narrowed(json.loads(plain), decision):
            return None, "release_narrowed"
        return plain, None

    def acknowledge_notifications(
        self,
        *,
        agency: str,
        agreement_id: str,
        notification_ids: Sequence[str],
        request_id: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Mark notifications received, so they are pushed no more: (acknowledged, not found).

        Ids that are not the agency's, or were acknowledged before, are "not found".
        """
        if not 1 <= len(notification_ids) <= MAX_ACKNOWLEDGE:
            raise ValidationError(
                f"acknowledge from 1 to {MAX_ACKNOWLEDGE} notifications at a time",
                code="acknowledgement_invalid",
                location=Location(field="ids"),
            )
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            done = uow.notifications.acknowledge(
                agreement.id, agency, notification_ids, self._now()
            )
            self._audit(
                uow,
                AuditEvent(
                    actor=agency,
                    action="notification_ack",
                    outcome="permitted",
                    agreement_id=agreement.id,
                    agreement_version=agreement.version,
                    request_id=request_id,
                    detail={"acknowledged": sorted(done), "asked": len(set(notification_ids))},
                ),
            )
            uow.commit()
        acknowledged = set(done)
        missing = sorted({i for i in notification_ids if i not in acknowledged})
        return sorted(acknowledged), missing

    def delivery_log(self, *, agency: str, agreement_id: str, notification_id: str) -> DeliveryLog:
        """Every push of one of the agency's notifications (status codes only, never content)."""
        with self._units() as uow:
            row = uow.notifications.notification(notification_id)
            if row is None or row.recipient != agency or row.agreement_id != agreement_id:
                raise NotFound(
                    f"no notification '{notification_id[:64]}' of yours under this agreement"
                )
            attempts = uow.notifications.attempts_of(row.id)
        return DeliveryLog(notification_id=row.id, status=row.status, attempts=tuple(attempts))

    # -- delivery -------------------------------------------------------------

    def deliver_due(
        self,
        *,
        sender: WebhookSender,
        policy: WebhookPolicy,
        retry: RetrySchedule,
        limit: int = 50,
        lease: timedelta = timedelta(minutes=10),
    ) -> dict[str, int]:
        """Push up to ``limit`` due notifications once each; returns counts for the job's record.

        A subscription's notifications go in order; after one fails, the rest
        of that subscription's wait for the same retry time without an attempt,
        so one recipient's outage cannot hold up the others for long. Each
        subscription's attempts are recorded, with one audit entry, in one
        transaction; a worker that dies first leaves them to fall due again
        when the lease ends (delivered at least once; the id makes it once).
        """
        now = self._clock.now()
        registry = self.registry  # read before the claim: it opens a transaction of its own
        with self._units() as uow:
            claimed = uow.notifications.claim_due(stamp(now), stamp(now + lease), limit)
            prepared = [self._prepare(uow, registry, row, policy) for row in claimed]
            uow.commit()
        counts: Counter[str] = Counter(claimed=len(claimed))
        by_subscription: dict[str, list[_Prepared]] = {}
        for item in prepared:
            by_subscription.setdefault(item.notification.subscription_id, []).append(item)
        for items in by_subscription.values():
            group = self._push_group(sender, retry, items, counts)
            self._record_group(items, group)
        return {
            name: counts[name]
            for name in ("claimed", "delivered", "failed_attempts", "gave_up", "deferred")
        }

    def _prepare(
        self,
        uow: UnitOfWork,
        registry: AgreementRegistry,
        row: NotificationRow,
        policy: WebhookPolicy,
    ) -> _Prepared:
        subscription = uow.notifications.subscription(row.subscription_id)
        if subscription is None or subscription.cancelled_at is not None:
            return _Prepared(row, subscription, problem="subscription_cancelled", permanent=True)
        try:
            checked_webhook_url(subscription.url, policy)
        except ValidationError as exc:
            return _Prepared(row, subscription, problem=exc.code)
        versions = registry.versions(row.agreement_id)
        decision = decide_under(
            versions,
            ReleaseRequest(
                agency=row.recipient,
                purpose=row.purpose,
                output="notification",
                on=self._today(),
            ),
        )
        try:
            plain, withheld = self._releasable(uow, row, decision)
            if plain is None:
                permanent = withheld in ("body_erased", "key_destroyed")
                return _Prepared(row, subscription, problem=withheld, permanent=permanent)
            secret_key = self._keystore.version(
                uow.keys, KeySlot(DATA, row.agreement_id), subscription.key_version
            )
            if secret_key is None:
                return _Prepared(row, subscription, problem="key_destroyed", permanent=True)
            secret = unseal(
                secret_key.key, subscription.secret, _secret_aad(row.agreement_id, subscription.id)
            )
        except SealBroken:
            return _Prepared(row, subscription, problem=SealBroken.code, permanent=True)
        return _Prepared(row, subscription, body=plain, secret=secret)

    def _push_group(
        self,
        sender: WebhookSender,
        retry: RetrySchedule,
        items: Sequence[_Prepared],
        counts: Counter[str],
    ) -> _Group:
        group = _Group()
        for item in sorted(items, key=lambda i: i.notification.seq):
            row = item.notification
            if group.release_at is not None:
                group.release.append(row.id)
                counts["deferred"] += 1
                continue
            at = self._clock.now()
            if item.problem is None:
                assert item.subscription is not None
                assert item.body is not None
                assert item.secret is not None
                headers = signed_headers(item.secret, row.id, int(at.timestamp()), item.body)
                outcome = sender.post(item.subscription.url, item.body, headers)
            else:
                outcome = PostOutcome(None, item.problem, 0)
            attempt = row.attempts + 1
            log = AttemptRow(
                notification_id=row.id,
                attempt=attempt,
                at=stamp(at),
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
            if outcome.delivered:
                group.attempts.append((log, DELIVERED, None))
                counts["delivered"] += 1
                continue
            counts["failed_attempts"] += 1
            delay = None if item.permanent else retry.delay_after(attempt)
            if delay is None:
                group.attempts.append((log, FAILED, None))
                counts["gave_up"] += 1
                continue
            next_at = stamp(at + delay)
            group.attempts.append((log, PENDING, next_at))
            group.release_at = next_at
        return group

    def _record_group(self, items: Sequence[_Prepared], group: _Group) -> None:
        first = items[0].notification
        failures = Counter(
            str(log.status_code) if log.status_code is not None else str(log.error)
            for log, status, _ in group.attempts
            if status != DELIVERED
        )
        with self._units() as uow:
            for log, status, next_at in group.attempts:
                uow.notifications.record_attempt(log, status=status, next_attempt_at=next_at)
            if group.release and group.release_at is not None:
                uow.notifications.release(group.release, group.release_at)
            self._audit(
                uow,
                AuditEvent(
                    actor=first.recipient,
                    action="notification_delivery",
                    outcome="permitted",
                    agreement_id=first.agreement_id,
                    agreement_version=first.agreement_version,
                    purpose=first.purpose,
                    dataset_id=first.dataset_id,
                    detail={
                        "subscription": first.subscription_id,
                        "delivered": group.ids(DELIVERED),
                        "gave_up": group.ids(FAILED),
                        "failed_attempts": dict(sorted(failures.items())),
                        "deferred": len(group.release),
                    },
                ),
            )
            uow.commit()

    def erase_expired_notifications(self) -> int:
        """Erase notification bodies past their dataset's retention period; how many.

        The period is that of the agreement version the notification was made
        under, as records keep the period of the version they were received under.
        """
        now = self._clock.now()
        erased = 0
        registry = self.registry
        with self._units() as uow:
            for agreement in registry.all_versions():
                for dataset in agreement.datasets:
                    if dataset.retention is None:
                        continue
                    cutoff = stamp(now - timedelta(days=dataset.retention.period_days))
                    erased += uow.notifications.erase_bodies(
                        agreement.id, agreement.version, dataset.id, cutoff
                    )
            uow.commit()
        return erased


def _subscription_of(row: SubscriptionRow, *, cancelled_at: str | None = None) -> Subscription:
    return Subscription(
        id=row.id,
        agreement_id=row.agreement_id,
        purpose=row.purpose,
        recipient=row.recipient,
        rule=Rule.from_json(row.rule),
        url=row.url,
        created_at=row.created_at,
        cancelled_at=cancelled_at or row.cancelled_at,
    )


def _received(
    row: NotificationRow, body: Mapping[str, Any] | None, withheld: str | None
) -> ReceivedNotification:
    return ReceivedNotification(
        seq=row.seq,
        id=row.id,
        subscription_id=row.subscription_id,
        purpose=row.purpose,
        dataset=row.dataset_id,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        acknowledged_at=row.acknowledged_at,
        body=body,
        withheld=withheld,
    )


# --- the ingest hook ------------------------------------------------------------


def queue_notifications(
    core: BrokerCore,
    uow: UnitOfWork,
    *,
    versions: Sequence[Agreement],
    dataset_id: str,
    batch_id: str,
    records: Sequence[Any],
) -> int:
    """Queue, in the batch's transaction, a notification per stored record a subscription wants.

    Called by ingest after a batch is stored and before it commits, with the
    agreement's versions it decided on (reading the register again here would
    open a second transaction); ``records`` are the batch as posted (only their
    ``record_id`` is read). Costs one
    indexed query when nobody subscribes to the dataset. A subscription the
    agreement no longer supports is audited as a refused notification and
    skipped; it never fails the batch. Returns how many notifications were queued.
    """
    agreement_id = versions[0].id
    subscriptions = uow.notifications.live_subscriptions(agreement_id, dataset_id)
    if not subscriptions:
        return 0
    today = core.today()
    agreement = current_version(versions, today) or versions[-1]
    dataset = agreement.dataset(dataset_id)
    assert dataset is not None  # the batch was stored under it
    refs = [r["record_id"] for r in records if isinstance(r, dict) and "record_id" in r]
    order = {ref: index for index, ref in enumerate(refs)}
    stored = sorted(
        (
            row
            for row in uow.records.by_refs(agreement_id, dataset_id, refs).values()
            if row.batch_id == batch_id
        ),
        key=lambda row: order.get(row.source_ref, 0),
    )
    payloads: dict[str, dict[str, Any]] = {}

    def payload(row: RecordRow) -> dict[str, Any]:
        if row.id not in payloads:
            key = core._keystore.version(uow.keys, KeySlot(DATA, agreement_id), row.key_version)
            assert key is not None  # the batch was sealed under the active key just now
            payloads[row.id] = json.loads(
                unseal(key.key, row.payload, associated_data(agreement_id, row.id))
            )
        return payloads[row.id]

    queued: list[NotificationRow] = []
    for subscription in subscriptions:
        wanted = [row for row in stored if row.agency_id != subscription.recipient]
        if not wanted:
            continue
        queued.extend(
            _queue_for(
                core,
                uow,
                subscription,
                versions=versions,
                dataset=dataset,
                rows=wanted,
                payload=payload,
                batch_id=batch_id,
            )
        )
    if queued:
        # Polling pages by seq, so seqs must become visible in order: this lock (held
        # already by the batch's own audit entries) serialises every transaction that
        # queues notifications until it commits.
        uow.audit.lock_head()
        uow.notifications.add_notifications(queued)
    return len(queued)


def _queue_for(
    core: BrokerCore,
    uow: UnitOfWork,
    subscription: SubscriptionRow,
    *,
    versions: Sequence[Agreement],
    dataset: Dataset,
    rows: Sequence[RecordRow],
    payload: Callable[[RecordRow], dict[str, Any]],
    batch_id: str,
) -> list[NotificationRow]:
    today = core.today()
    dataset_id = dataset.id
    agreement_id = subscription.agreement_id
    decision = decide_under(
        versions,
        ReleaseRequest(
            agency=subscription.recipient,
            purpose=subscription.purpose,
            output="notification",
            on=today,
        ),
    )
    base = AuditEvent(
        actor=subscription.recipient,
        action="notification",
        outcome="permitted",
        agreement_id=agreement_id,
        agreement_version=decision.agreement_version if isinstance(decision, Permit) else None,
        purpose=subscription.purpose,
        dataset_id=dataset_id,
    )
    refused = {"subscription": subscription.id, "batch_id": batch_id, "records": len(rows)}
    if isinstance(decision, Deny):
        core._audit(
            uow, with_changes(base, outcome="refused", reason_code=decision.code, detail=refused)
        )
        return []
    grants = tuple(f for f in decision.fields if f.dataset == dataset_id)
    try:
        rule = checked_rule(Rule.from_json(subscription.rule), dataset, grants)
    except AccordError as exc:
        # A later version narrowed the release under the rule: it no longer applies.
        core._audit(
            uow, with_changes(base, outcome="refused", reason_code=exc.code, detail=refused)
        )
        return []
    forms = {g.field: g.form for g in grants}
    recipient_key = core._keystore.active(
        uow.keys, KeySlot(PSEUDONYM, agreement_id, subscription.recipient)
    )
    data_key = core._keystore.active(uow.keys, KeySlot(DATA, agreement_id))
    now = core._now()
    queued: list[NotificationRow] = []
    for row in rows:
        released = released_fields(dataset_id, payload(row), grants, on=today)
        if not matches(rule, released):
            continue
        notification_id = new_id("ntf")
        body = {
            "id": notification_id,
            "type": "record_arrived",
            "created_at": now,
            "agreement": {"id": agreement_id, "version": decision.agreement_version},
            "purpose": subscription.purpose,
            "subscription": subscription.id,
            "provider": row.agency_id,
            "dataset": dataset_id,
            "pseudonym": pseudonym(recipient_key.key, row.subject_id, recipient_key.version),
            "reference": row.source_ref if decision.reveal_record_reference else None,
            "fields": released,
            "forms": {name: forms[name] for name in released},
        }
        plain = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
        core._audit(
            uow,
            with_changes(
                base,
                detail={
                    "notification": notification_id,
                    "subscription": subscription.id,
                    "subject": row.subject_id,
                    "batch_id": batch_id,
                    "provider": row.agency_id,
                    "released": [
                        {"field": f"{dataset_id}.{name}", "form": forms[name]}
                        for name in sorted(released)
                    ],
                    "warnings": warning_codes(decision.warnings),
                },
            ),
        )
        queued.append(
            NotificationRow(
                id=notification_id,
                subscription_id=subscription.id,
                agreement_id=agreement_id,
                agreement_version=decision.agreement_version,
                purpose=subscription.purpose,
                recipient=subscription.recipient,
                dataset_id=dataset_id,
                record_id=row.id,
                created_at=now,
                key_version=data_key.version,
                body=seal(data_key.key, plain, _body_aad(agreement_id, notification_id)),
                next_attempt_at=now,
            )
        )
    return queued


# --- the delivery job -----------------------------------------------------------


class NotificationDelivery:
    """The delivery job's work: push what is due, and now and then erase expired bodies."""

    def __init__(
        self,
        *,
        broker: NotificationUseCases,
        sender: WebhookSender,
        policy: WebhookPolicy,
        retry: RetrySchedule | None = None,
        batch: int = 50,
        erase_every: timedelta = timedelta(hours=1),
    ) -> None:
        self._broker = broker
        self._sender = sender
        self._policy = policy
        self._retry = retry or RetrySchedule()
        self._batch = batch
        self._erase_every = erase_every.total_seconds()
        self._erased_at: float | None = None

    def __call__(self) -> Mapping[str, int]:
        """Deliver due notifications until none is due (at most ten claims a run)."""
        counts: Counter[str] = Counter()
        if self._erased_at is None or time.monotonic() - self._erased_at >= self._erase_every:
            counts["erased"] = self._broker.erase_expired_notifications()
            self._erased_at = time.monotonic()
        for _ in range(10):
            done = self._broker.deliver_due(
                sender=self._sender, policy=self._policy, retry=self._retry, limit=self._batch
            )
            counts.update(done)
            if done["claimed"] < self._batch:
                break
        return dict(counts)


def notification_job(delivery: NotificationDelivery, every: timedelta) -> Job:
    """Push due notifications every ``every``."""
    return Job(NOTIFICATION_JOB, every, delivery)
