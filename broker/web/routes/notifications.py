"""Notifications: subscribe with a webhook and a rule, poll, acknowledge, read the delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from broker.errors import Location, ValidationError
from broker.notify import Condition, Rule, WebhookPolicy
from broker.service_notify import MAX_PAGE, ReceivedNotification, Subscription
from broker.web.authorise import AgencyDep
from broker.web.deps import BrokerDep, RequestIdDep
from broker.web.rate_limits import rate_limited
from broker.web.schemas import (
    SQL_INT_MAX,
    AcknowledgeIn,
    AcknowledgeOut,
    ConditionIn,
    ConditionOut,
    DeliveryAttemptOut,
    DeliveryLogOut,
    ErrorOut,
    NotificationOut,
    NotificationPageOut,
    RuleIn,
    RuleOut,
    SubscriptionIn,
    SubscriptionListOut,
    SubscriptionOut,
)

router = APIRouter(prefix="/v1", tags=["notifications"])

_ERRORS = {status: {"model": ErrorOut} for status in (400, 401, 403, 404, 413, 415, 422, 503)}
_ERRORS[429] = {"model": ErrorOut}  # rate_limited, with Retry-After


def get_webhook_policy(request: Request) -> WebhookPolicy:
    """Which webhook URLs this deployment accepts (set by the app factory from the environment)."""
    policy: WebhookPolicy = request.app.state.webhook_policy
    return policy


PolicyDep = Annotated[WebhookPolicy, Depends(get_webhook_policy)]


def _condition(index: int, given: ConditionIn) -> Condition:
    chosen = [
        (name, value)
        for name, value in (
            ("equals", given.equals),
            ("in", given.in_),
            ("age_under", given.age_under),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        raise ValidationError(
            "give each condition exactly one of 'equals', 'in' or 'age_under'",
            code="request_invalid",
            location=Location(field=f"rule.all_of[{index}]"),
        )
    ((op, value),) = chosen
    if op == "in":
        assert isinstance(value, list)
        return Condition(field=given.field, op="in", values=tuple(value))
    assert not isinstance(value, list)
    return Condition(
        field=given.field, op="equals" if op == "equals" else "age_under", values=(value,)
    )


def _rule(given: RuleIn) -> Rule:
    return Rule(
        dataset=given.dataset,
        all_of=tuple(_condition(i, c) for i, c in enumerate(given.all_of)),
    )


def _subscription_out(subscription: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        agreement_id=subscription.agreement_id,
        purpose=subscription.purpose,
        rule=RuleOut(
            dataset=subscription.rule.dataset,
            all_of=[
                ConditionOut(field=c.field, op=c.op, values=list(c.values))
                for c in subscription.rule.all_of
            ],
        ),
        url=subscription.url,
        created_at=subscription.created_at,
        cancelled_at=subscription.cancelled_at,
        secret=subscription.secret,
        audit_entry=subscription.audit_entry,
    )


def _notification_out(found: ReceivedNotification) -> NotificationOut:
    return NotificationOut(
        seq=found.seq,
        id=found.id,
        subscription_id=found.subscription_id,
        purpose=found.purpose,
        dataset=found.dataset,
        status=found.status,
        attempts=found.attempts,
        created_at=found.created_at,
        next_attempt_at=found.next_attempt_at,
        delivered_at=found.delivered_at,
        acknowledged_at=found.acknowledged_at,
        body=None if found.body is None else dict(found.body),
        withheld=found.withheld,
    )


@router.post(
    "/agreements/{agreement_id}/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("notification")],
)
def post_subscription(
    agreement_id: str,
    body: SubscriptionIn,
    agency: AgencyDep,
    broker: BrokerDep,
    policy: PolicyDep,
    request_id: RequestIdDep,
) -> SubscriptionOut:
    """Subscribe to records meeting a rule; the answer holds the signing secret, once.

    Refused (403) when the agreement does not release to you for the purpose
    through notifications, when a condition tests a field not released to you,
    or when the rule has no condition that narrows it
    (``subscription_unconditional``); 422 for a URL that is not https.
    """
    created = broker.subscribe(
        agency=agency,
        agreement_id=agreement_id,
        purpose=body.purpose,
        url=body.url,
        rule=_rule(body.rule),
        policy=policy,
        request_id=request_id,
    )
    return _subscription_out(created)


@router.get(
    "/agreements/{agreement_id}/subscriptions",
    response_model=SubscriptionListOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("notification")],
)
def get_subscriptions(
    agreement_id: str, agency: AgencyDep, broker: BrokerDep
) -> SubscriptionListOut:
    """Your subscriptions under this agreement, live and cancelled (never their secrets)."""
    found = broker.subscriptions(agency=agency, agreement_id=agreement_id)
    return SubscriptionListOut(subscriptions=[_subscription_out(s) for s in found])


@router.delete(
    "/agreements/{agreement_id}/subscriptions/{subscription_id}",
    response_model=SubscriptionOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("notification")],
)
def delete_subscription(
    agreement_id: str,
    subscription_id: str,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
) -> SubscriptionOut:
    """Cancel a subscription: nothing more is queued or pushed; what was queued can be polled."""
    cancelled = broker.cancel_subscription(
        agency=agency,
        agreement_id=agreement_id,
        subscription_id=subscription_id,
        request_id=request_id,
    )
    return _subscription_out(cancelled)


@router.get(
    "/agreements/{agreement_id}/notifications",
    response_model=NotificationPageOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("notification")],
)
def get_notifications(
    agreement_id: str,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
    after: Annotated[
        int, Query(ge=0, le=SQL_INT_MAX, description="The last seq you have seen")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    purpose: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> NotificationPageOut:
    """Your notifications after ``after``, oldest first, pushed or not; the poll is audited."""
    page = broker.notifications(
        agency=agency,
        agreement_id=agreement_id,
        purpose=purpose,
        after=after,
        limit=limit,
        request_id=request_id,
    )
    return NotificationPageOut(
        notifications=[_notification_out(n) for n in page.notifications],
        next_after=page.next_after,
        audit_entry=page.audit_entry,
    )


@router.post(
    "/agreements/{agreement_id}/notifications/acknowledgements",
    response_model=AcknowledgeOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("notification")],
)
def post_acknowledgements(
    agreement_id: str,
    body: AcknowledgeIn,
    agency: AgencyDep,
    broker: BrokerDep,
    request_id: RequestIdDep,
) -> AcknowledgeOut:
    """Say you hold these notifications, so the broker pushes them no more."""
    done, missing = broker.acknowledge_notifications(
        agency=agency,
        agreement_id=agreement_id,
        notification_ids=body.ids,
        request_id=request_id,
    )
    return AcknowledgeOut(acknowledged=done, not_found=missing)


@router.get(
    "/agreements/{agreement_id}/notifications/{notification_id}/deliveries",
    response_model=DeliveryLogOut,
    responses=_ERRORS,  # type: ignore[arg-type]
    dependencies=[rate_limited("notification")],
)
def get_deliveries(
    agreement_id: str, notification_id: str, agency: AgencyDep, broker: BrokerDep
) -> DeliveryLogOut:
    """Every push of one of your notifications: when, and the status code or failure kind."""
    log = broker.delivery_log(
        agency=agency, agreement_id=agreement_id, notification_id=notification_id
    )
    return DeliveryLogOut(
        notification_id=log.notification_id,
        status=log.status,
        attempts=[
            DeliveryAttemptOut(
                attempt=a.attempt,
                at=a.at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
            )
            for a in log.attempts
        ],
    )
