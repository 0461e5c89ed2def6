"""Storage for notifications: subscriptions, notifications and their delivery log.

Implements ``broker.notify_ports.NotificationRepository``. Like every repository
here, none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from broker.db.handles import NOTIFICATION, NOTIFICATION_ATTEMPT, SUBSCRIPTION
from broker.interfaces import chunked
from broker.notify_ports import (
    ACKNOWLEDGED,
    DELIVERED,
    FAILED,
    PENDING,
    AttemptRow,
    NotificationRow,
    NotificationStatus,
    SubscriptionRow,
)

_ACKNOWLEDGEABLE = (PENDING, DELIVERED, FAILED)


def _subscription(row: Any) -> SubscriptionRow:
    return SubscriptionRow(**row._mapping)


def _notification(row: Any) -> NotificationRow:
    return NotificationRow(**row._mapping)


class SqlNotifications:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    # -- subscriptions ------------------------------------------------------

    def add_subscription(self, row: SubscriptionRow) -> None:
        self._c.execute(insert(SUBSCRIPTION).values(**row.__dict__))

    def subscription(self, subscription_id: str) -> SubscriptionRow | None:
        row = self._c.execute(
            select(SUBSCRIPTION).where(SUBSCRIPTION.c.id == subscription_id)
        ).first()
        return None if row is None else _subscription(row)

    def subscriptions_of(self, agreement_id: str, recipient: str) -> list[SubscriptionRow]:
        rows = self._c.execute(
            select(SUBSCRIPTION)
            .where(
                SUBSCRIPTION.c.agreement_id == agreement_id, SUBSCRIPTION.c.recipient == recipient
            )
            .order_by(SUBSCRIPTION.c.created_at, SUBSCRIPTION.c.id)
        )
        return [_subscription(row) for row in rows]

    def live_subscriptions(self, agreement_id: str, dataset_id: str) -> list[SubscriptionRow]:
        rows = self._c.execute(
            select(SUBSCRIPTION)
            .where(
                SUBSCRIPTION.c.agreement_id == agreement_id,
                SUBSCRIPTION.c.dataset_id == dataset_id,
                SUBSCRIPTION.c.cancelled_at.is_(None),
            )
            .order_by(SUBSCRIPTION.c.id)
        )
        return [_subscription(row) for row in rows]

    def cancel_subscription(self, subscription_id: str, at: str) -> bool:
        result = self._c.execute(
            update(SUBSCRIPTION)
            .where(SUBSCRIPTION.c.id == subscription_id, SUBSCRIPTION.c.cancelled_at.is_(None))
            .values(cancelled_at=at)
        )
        return bool(result.rowcount)

    def stop_pending(self, subscription_id: str) -> int:
        """Push none of a subscription's pending notifications again (they can still be polled)."""
        result = self._c.execute(
            update(NOTIFICATION)
            .where(
                NOTIFICATION.c.subscription_id == subscription_id,
                NOTIFICATION.c.status == PENDING,
            )
            .values(status=FAILED, next_attempt_at=None)
        )
        return int(result.rowcount)

    # -- notifications --------------------------------------------------------

    def add_notifications(self, rows: Sequence[NotificationRow]) -> None:
        if not rows:
            return
        values = []
        for row in rows:
            fields = dict(row.__dict__)
            fields.pop("seq")  # given by the database, in insertion order
            values.append(fields)
        self._c.execute(insert(NOTIFICATION), values)

    def claim_due(self, now: str, lease_until: str, limit: int) -> list[NotificationRow]:
        """Lock up to ``limit`` due pending notifications, skipping rows another worker holds.

        Their next attempt moves to ``lease_until``, so that once this
        transaction commits no other worker claims them while this one pushes;
        if it dies, they fall due again when the lease ends. On SQLite the
        locking clause compiles to nothing: ``BEGIN IMMEDIATE`` already holds
        the only write lock.
        """
        rows = self._c.execute(
            select(NOTIFICATION)
            .where(NOTIFICATION.c.status == PENDING, NOTIFICATION.c.next_attempt_at <= now)
            .order_by(NOTIFICATION.c.next_attempt_at, NOTIFICATION.c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = [_notification(row) for row in rows]
        if claimed:
            self._c.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.seq.in_([n.seq for n in claimed]))
                .values(next_attempt_at=lease_until)
            )
        return claimed

    def record_attempt(
        self, attempt: AttemptRow, *, status: NotificationStatus, next_attempt_at: str | None
    ) -> None:
        """Log the attempt; move the notification on, unless it was acknowledged meanwhile."""
        self._c.execute(insert(NOTIFICATION_ATTEMPT).values(**attempt.__dict__))
        changes: dict[str, Any] = {
            "attempts": attempt.attempt,
            "status": status,
            "next_attempt_at": next_attempt_at,
        }
        if status == DELIVERED:
            changes["delivered_at"] = attempt.at
        self._c.execute(
            update(NOTIFICATION)
            .where(NOTIFICATION.c.id == attempt.notification_id, NOTIFICATION.c.status == PENDING)
            .values(**changes)
        )

    def release(self, notification_ids: Sequence[str], next_attempt_at: str) -> None:
        """Put claimed notifications back, unattempted, to fall due at ``next_attempt_at``."""
        for piece in chunked(list(notification_ids)):
            self._c.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id.in_(piece), NOTIFICATION.c.status == PENDING)
                .values(next_attempt_at=next_attempt_at)
            )

    def page(
        self, agreement_id: str, recipient: str, purpose: str | None, after: int, limit: int
    ) -> list[NotificationRow]:
        where = [
            NOTIFICATION.c.agreement_id == agreement_id,
            NOTIFICATION.c.recipient == recipient,
            NOTIFICATION.c.seq > after,
        ]
        if purpose is not None:
            where.append(NOTIFICATION.c.purpose == purpose)
        rows = self._c.execute(
            select(NOTIFICATION).where(and_(*where)).order_by(NOTIFICATION.c.seq).limit(limit)
        )
        return [_notification(row) for row in rows]

    def notification(self, notification_id: str) -> NotificationRow | None:
        row = self._c.execute(
            select(NOTIFICATION).where(NOTIFICATION.c.id == notification_id)
        ).first()
        return None if row is None else _notification(row)

    def acknowledge(
        self, agreement_id: str, recipient: str, notification_ids: Sequence[str], at: str
    ) -> list[str]:
        """Mark the recipient's own notifications acknowledged; returns those that changed."""
        changed: list[str] = []
        for piece in chunked(sorted(set(notification_ids))):
            mine = NOTIFICATION.c.id.in_(piece) & (NOTIFICATION.c.agreement_id == agreement_id)
            mine &= NOTIFICATION.c.recipient == recipient
            mine &= NOTIFICATION.c.status.in_(_ACKNOWLEDGEABLE)
            found = [str(i) for (i,) in self._c.execute(select(NOTIFICATION.c.id).where(mine))]
            if found:
                self._c.execute(
                    update(NOTIFICATION)
                    .where(NOTIFICATION.c.id.in_(found))
                    .values(status=ACKNOWLEDGED, acknowledged_at=at, next_attempt_at=None)
                )
                changed.extend(found)
        return changed

    def attempts_of(self, notification_id: str) -> list[AttemptRow]:
        rows = self._c.execute(
            select(
                NOTIFICATION_ATTEMPT.c.notification_id,
                NOTIFICATION_ATTEMPT.c.attempt,
                NOTIFICATION_ATTEMPT.c.at,
                NOTIFICATION_ATTEMPT.c.status_code,
                NOTIFICATION_ATTEMPT.c.error,
                NOTIFICATION_ATTEMPT.c.duration_ms,
            )
            .where(NOTIFICATION_ATTEMPT.c.notification_id == notification_id)
            .order_by(NOTIFICATION_ATTEMPT.c.attempt)
        )
        return [AttemptRow(**row._mapping) for row in rows]

    def erase_bodies(
        self, agreement_id: str, agreement_version: int, dataset_id: str, created_before: str
    ) -> int:
        """Erase the bodies of notifications created before the cut-off; the log stays."""
        result = self._c.execute(
            update(NOTIFICATION)
            .where(
                NOTIFICATION.c.agreement_id == agreement_id,
                NOTIFICATION.c.agreement_version == agreement_version,
                NOTIFICATION.c.dataset_id == dataset_id,
                NOTIFICATION.c.created_at < created_before,
                NOTIFICATION.c.body.is_not(None),
            )
            .values(body=None)
        )
        return int(result.rowcount)
