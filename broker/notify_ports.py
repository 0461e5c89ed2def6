"""What notifications need from storage and from an HTTP client, implemented outside the core.

Storage is ``broker.db.notify_repository`` (reached as ``uow.notifications``);
the HTTP client is ``broker.webhook_sender``. As everywhere, repositories never
commit: a batch and the notifications it triggers commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

NotificationStatus = Literal["pending", "delivered", "acknowledged", "failed"]
# pending: waiting for its next push; delivered: a push was answered 2xx;
# acknowledged: the recipient said it has it (push or poll); failed: pushes used
# up or impossible (its key was destroyed); it can still be polled if readable.
PENDING: NotificationStatus = "pending"
DELIVERED: NotificationStatus = "delivered"
ACKNOWLEDGED: NotificationStatus = "acknowledged"
FAILED: NotificationStatus = "failed"


@dataclass(frozen=True, repr=False)
class SubscriptionRow:
    """A recipient's subscription; its signing secret is sealed under the agreement's data key."""

    id: str
    agreement_id: str
    purpose: str
    recipient: str
    dataset_id: str
    rule: str  # JSON, see broker.notify.Rule
    url: str
    secret: bytes
    key_version: int
    created_at: str
    cancelled_at: str | None = None

    def __repr__(self) -> str:  # the URL may carry a recipient's routing token; keep it out
        return f"SubscriptionRow({self.id}, {self.agreement_id}/{self.purpose}/{self.recipient})"


@dataclass(frozen=True, repr=False)
class NotificationRow:
    """One notification: its sealed body (None once erased) and where its delivery stands.

    ``seq`` is given by the database on insert and orders the recipient's polling.
    """

    id: str
    subscription_id: str
    agreement_id: str
    agreement_version: int
    purpose: str
    recipient: str
    dataset_id: str
    record_id: str
    created_at: str
    key_version: int
    body: bytes | None
    status: NotificationStatus = PENDING
    attempts: int = 0
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    acknowledged_at: str | None = None
    seq: int = 0

    def __repr__(self) -> str:
        return f"NotificationRow({self.id}, {self.status}, attempts={self.attempts})"


@dataclass(frozen=True)
class AttemptRow:
    """One push of a notification: HTTP status or kind of failure; never a response body."""

    notification_id: str
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class NotificationRepository(Protocol):
    def add_subscription(self, row: SubscriptionRow) -> None: ...

    def subscription(self, subscription_id: str) -> SubscriptionRow | None: ...

    def subscriptions_of(self, agreement_id: str, recipient: str) -> list[SubscriptionRow]: ...

    def live_subscriptions(self, agreement_id: str, dataset_id: str) -> list[SubscriptionRow]: ...

    def cancel_subscription(self, subscription_id: str, at: str) -> bool: ...

    def stop_pending(self, subscription_id: str) -> int: ...

    def add_notifications(self, rows: Sequence[NotificationRow]) -> None: ...

    def claim_due(self, now: str, lease_until: str, limit: int) -> list[NotificationRow]: ...

    def record_attempt(
        self,
        attempt: AttemptRow,
        *,
        status: NotificationStatus,
        next_attempt_at: str | None,
    ) -> None: ...

    def release(self, notification_ids: Sequence[str], next_attempt_at: str) -> None: ...

    def page(
        self, agreement_id: str, recipient: str, purpose: str | None, after: int, limit: int
    ) -> list[NotificationRow]: ...

    def notification(self, notification_id: str) -> NotificationRow | None: ...

    def acknowledge(
        self, agreement_id: str, recipient: str, notification_ids: Sequence[str], at: str
    ) -> list[str]: ...

    def attempts_of(self, notification_id: str) -> list[AttemptRow]: ...

    def erase_bodies(
        self, agreement_id: str, agreement_version: int, dataset_id: str, created_before: str
    ) -> int: ...


@dataclass(frozen=True)
class PostOutcome:
    """One POST's result: a status code, or the failure's kind (a type name, never a message)."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        """Whether the recipient accepted it (any 2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender(Protocol):
    """Posts one body to one URL with the given headers; never raises, never follows redirects."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> PostOutcome: ...
