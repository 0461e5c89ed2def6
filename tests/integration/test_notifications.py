"""Notifications against a real database, on SQLite and PostgreSQL: queue, push, retry, poll."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.events import LoggedEntry
from broker.bootstrap import Runtime
from broker.clock import FixedClock
from broker.config import Settings
from broker.db.handles import NOTIFICATION
from broker.errors import BatchRejected, NotFound, Refused, ValidationError
from broker.jobs import stamp
from broker.notify import (
    Condition,
    RetrySchedule,
    Rule,
    WebhookPolicy,
    secret_from_text,
    verify,
)
from broker.service import Broker
from broker.service_notify import Subscription
from tests.notify_helpers import (
    ADULT,
    DATASET,
    OLDER,
    SAFEGUARDING,
    SHARPS,
    VIOLENCE,
    YOUNG,
    ScriptedSender,
    notify_settings,
    sharps_record,
)

LOOPBACK = WebhookPolicy(allow_loopback_http=True)
RETRY = RetrySchedule(first_delay_seconds=10, max_delay_seconds=40, max_attempts=4)
UNDER_25 = Rule(
    DATASET,
    (
        Condition("date_of_birth", "age_under", (25,)),
        Condition("injury_type", "in", ("stab_wound", "incised_wound")),
    ),
)
STABBED = Rule(DATASET, (Condition("injury_type", "equals", ("stab_wound",)),))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """This module's broker holds the sharps notification agreement too."""
    return notify_settings(database_url, tmp_path)


@pytest.fixture
def broker(runtime: Runtime) -> Broker:
    return runtime.broker


def _subscribe(broker: Broker, agency: str, rule: Rule, path: str = "/hook") -> Subscription:
    purpose = SAFEGUARDING if agency == "social-care" else VIOLENCE
    return broker.subscribe(
        agency=agency,
        agreement_id=SHARPS,
        purpose=purpose,
        url=f"https://{agency}.example.org{path}",
        rule=rule,
    )


def _ingest(broker: Broker, *records: dict[str, Any]) -> None:
    broker.ingest_batch(agency="ed", agreement_id=SHARPS, dataset_id=DATASET, records=records)


def _entries(broker: Broker, action: str) -> list[LoggedEntry]:
    return [
        e for e in broker.audit_page(actor=None, after=0, limit=1000) if e.event.action == action
    ]


def _deliver(broker: Broker, sender: ScriptedSender) -> dict[str, int]:
    return broker.deliver_due(sender=sender, policy=LOOPBACK, retry=RETRY)


def _notification_count(runtime: Runtime) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(NOTIFICATION)).scalar_one())


def test_matching_records_queue_notifications_of_permitted_fields_only(broker: Broker) -> None:
    front_door = _subscribe(broker, "social-care", UNDER_25)
    police = _subscribe(broker, "police", STABBED)
    _ingest(broker, YOUNG, ADULT, OLDER)

    page = broker.notifications(agency="social-care", agreement_id=SHARPS)
    assert [n.body["reference"] for n in page.notifications if n.body] == ["ED-1", "ED-2"]
    first = page.notifications[0]
    assert first.status == "pending"
    assert first.subscription_id == front_door.id
    assert first.body is not None
    assert first.body["fields"] == {
        "attendance_date": "2026-11-25",
        "injury_type": "stab_wound",
        "admitted": True,
        "safeguarding_referral_made": False,
        "date_of_birth": "16-17",
        "postcode": "NS1",
    }
    assert first.body["forms"]["date_of_birth"] == "age_band"
    assert first.body["id"] == first.id
    # The recipient's own pseudonym, the one its lookups give for the same young person.
    found = broker.lookup(
        agency="social-care",
        agreement_id=SHARPS,
        purpose=SAFEGUARDING,
        identifiers={
            "given_name": "Kai",
            "family_name": "Marsh",
            "date_of_birth": "2009-05-01",
            "postcode": "NS1 4AB",
        },
    )
    assert found.pseudonym == first.body["pseudonym"]

    # The police rule has no age condition: both stab wounds, the 27 year old's too.
    stabbed, older = broker.notifications(agency="police", agreement_id=SHARPS).notifications
    assert older.body is not None
    assert older.body["fields"]["date_of_birth"] == "25+"
    assert stabbed.subscription_id == police.id
    assert stabbed.body is not None
    assert stabbed.body["reference"] is None
    assert stabbed.body["fields"] == {
        "attendance_date": "2026-11",
        "injury_type": "stab_wound",
        "date_of_birth": "16-17",
        "postcode": "NS1",
    }
    # Separate pseudonyms: two recipients cannot join their notifications.
    assert stabbed.body["pseudonym"] != first.body["pseudonym"]

    queued = _entries(broker, "notification")
    assert len(queued) == 4
    assert all(e.event.detail["subject"].startswith("sub_") for e in queued)
    text = json.dumps([e.event.detail for e in broker.audit_page(actor=None, after=0, limit=1000)])
    for value in ("stab_wound", "2009-05-01", "Marsh", "NS1 4AB", "2026-11-25"):
        assert value not in text
    broker.verify_audit()


def test_a_rejected_batch_queues_nothing_and_a_quiet_dataset_costs_nothing(
    runtime: Runtime, broker: Broker
) -> None:
    _ingest(broker, YOUNG)  # nobody subscribed yet
    _subscribe(broker, "social-care", UNDER_25)
    broken = sharps_record("ED-9", given="Ann", family="Lee", born="2010-01-01", injury="bite")
    with pytest.raises(BatchRejected):
        _ingest(broker, ADULT, broken)
    assert _notification_count(runtime) == 0
    _ingest(broker, ADULT)
    assert _notification_count(runtime) == 1


def test_delivery_signs_each_push_and_records_it(broker: Broker, clock: FixedClock) -> None:
    front_door = _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG, ADULT)
    sender = ScriptedSender()
    assert _deliver(broker, sender) == {
        "claimed": 2,
        "delivered": 2,
        "failed_attempts": 0,
        "gave_up": 0,
        "deferred": 0,
    }
    assert front_door.secret is not None
    secret = secret_from_text(front_door.secret)
    now = int(clock.now().timestamp())
    ids = [verify(secret, headers, body, now=now) for _, body, headers in sender.posts]
    polled = broker.notifications(agency="social-care", agreement_id=SHARPS).notifications
    assert ids == [n.id for n in polled]
    assert [json.loads(body) for _, body, _ in sender.posts] == [n.body for n in polled]
    assert {n.status for n in polled} == {"delivered"}
    log = broker.delivery_log(agency="social-care", agreement_id=SHARPS, notification_id=ids[0])
    assert [(a.attempt, a.status_code, a.error) for a in log.attempts] == [(1, 200, None)]
    assert _deliver(broker, sender)["claimed"] == 0
    (delivery,) = _entries(broker, "notification_delivery")
    assert delivery.event.detail["delivered"] == ids
    broker.verify_audit()


def test_failed_pushes_back_off_then_give_up_and_stay_pollable(
    broker: Broker, clock: FixedClock
) -> None:
    _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG, ADULT)
    sender = ScriptedSender(500, "timeout", 503, 500)
    for wait in (10, 20, 40):
        done = _deliver(broker, sender)
        # After the first fails, the subscription's second waits with it, unattempted.
        assert (done["failed_attempts"], done["deferred"]) == (1, 1)
        first, second = broker.notifications(
            agency="social-care", agreement_id=SHARPS
        ).notifications
        assert first.status == second.status == "pending"
        assert first.next_attempt_at == second.next_attempt_at
        assert first.next_attempt_at == stamp(clock.now() + timedelta(seconds=wait))
        clock.advance(timedelta(seconds=wait - 1))
        assert _deliver(broker, sender)["claimed"] == 0  # not due yet
        clock.advance(timedelta(seconds=1))
    # The fourth failure uses up the attempts; the second then goes at once.
    done = _deliver(broker, sender)
    assert (done["failed_attempts"], done["gave_up"], done["delivered"]) == (1, 1, 1)
    first, second = broker.notifications(agency="social-care", agreement_id=SHARPS).notifications
    assert (first.status, first.next_attempt_at, second.status) == ("failed", None, "delivered")
    log = broker.delivery_log(agency="social-care", agreement_id=SHARPS, notification_id=first.id)
    assert [(a.attempt, a.status_code, a.error) for a in log.attempts] == [
        (1, 500, None),
        (2, None, "timeout"),
        (3, 503, None),
        (4, 500, None),
    ]
    assert first.body is not None  # given up pushing, never lost: it can still be polled
    assert _deliver(broker, sender)["claimed"] == 0


def test_a_worker_that_dies_mid_push_leaves_it_to_be_pushed_again(
    broker: Broker, clock: FixedClock
) -> None:
    _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG)

    class DiesAfterSending(ScriptedSender):
        def post(self, url: str, body: bytes, headers: Any) -> Any:
            super().post(url, body, headers)
            raise KeyboardInterrupt  # the worker stops after the recipient got it

    dying = DiesAfterSending()
    with pytest.raises(KeyboardInterrupt):
        _deliver(broker, dying)
    survivor = ScriptedSender()
    assert _deliver(broker, survivor)["claimed"] == 0  # still leased to the dead worker
    clock.advance(timedelta(minutes=10))
    assert _deliver(broker, survivor)["delivered"] == 1
    # At least once from the broker; the same webhook-id lets the recipient act once.
    ids = [h["webhook-id"] for _, _, h in dying.posts + survivor.posts]
    assert len(ids) == 2
    assert len(set(ids)) == 1


def test_acknowledged_notifications_are_pushed_no_more(broker: Broker) -> None:
    _subscribe(broker, "social-care", UNDER_25)
    police = _subscribe(broker, "police", STABBED)
    _ingest(broker, YOUNG, ADULT)
    first, second = broker.notifications(agency="social-care", agreement_id=SHARPS).notifications
    (theirs,) = broker.notifications(agency="police", agreement_id=SHARPS).notifications
    done, missing = broker.acknowledge_notifications(
        agency="social-care",
        agreement_id=SHARPS,
        notification_ids=[first.id, theirs.id, "ntf_unknown"],
    )
    assert done == [first.id]
    assert missing == sorted([theirs.id, "ntf_unknown"])  # another recipient's is not found
    sender = ScriptedSender()
    assert _deliver(broker, sender)["delivered"] == 2
    assert sorted(h["webhook-id"] for _, _, h in sender.posts) == sorted([second.id, theirs.id])
    page = broker.notifications(agency="social-care", agreement_id=SHARPS)
    assert [n.status for n in page.notifications] == ["acknowledged", "delivered"]
    assert police.secret is not None
    with pytest.raises(ValidationError):
        broker.acknowledge_notifications(
            agency="social-care", agreement_id=SHARPS, notification_ids=[]
        )


def test_polling_pages_by_seq(broker: Broker) -> None:
    _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG)
    _ingest(broker, ADULT)
    one = broker.notifications(agency="social-care", agreement_id=SHARPS, limit=1)
    assert len(one.notifications) == 1
    assert one.next_after == one.notifications[0].seq
    two = broker.notifications(agency="social-care", agreement_id=SHARPS, after=one.next_after)
    assert [n.body["reference"] for n in two.notifications if n.body] == ["ED-2"]
    assert two.next_after is None
    polls = _entries(broker, "notification_poll")
    assert [e.event.detail["released"] for e in polls] == [
        [one.notifications[0].id],
        [two.notifications[0].id],
    ]
    with pytest.raises(ValidationError):
        broker.notifications(agency="social-care", agreement_id=SHARPS, limit=0)


def test_a_suspended_agreement_withholds_what_was_queued(broker: Broker) -> None:
    _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG)
    broker.agreements.suspend(SHARPS, "review of the pathway", actor="social-care")
    (held,) = broker.notifications(agency="social-care", agreement_id=SHARPS).notifications
    assert held.body is None
    assert held.withheld == "agreement_not_active"
    sender = ScriptedSender()
    assert _deliver(broker, sender)["failed_attempts"] == 1
    assert sender.posts == []
    log = broker.delivery_log(agency="social-care", agreement_id=SHARPS, notification_id=held.id)
    assert [a.error for a in log.attempts] == ["agreement_not_active"]


def test_a_cancelled_subscription_queues_and_pushes_nothing_more(
    runtime: Runtime, broker: Broker
) -> None:
    subscription = _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG)
    cancelled = broker.cancel_subscription(
        agency="social-care", agreement_id=SHARPS, subscription_id=subscription.id
    )
    assert cancelled.cancelled_at is not None
    _ingest(broker, ADULT)
    assert _notification_count(runtime) == 1
    assert _deliver(broker, ScriptedSender())["claimed"] == 0
    (kept,) = broker.notifications(agency="social-care", agreement_id=SHARPS).notifications
    assert kept.body is not None  # still pollable
    with pytest.raises(NotFound):
        broker.cancel_subscription(
            agency="police", agreement_id=SHARPS, subscription_id=subscription.id
        )
    (listed,) = broker.subscriptions(agency="social-care", agreement_id=SHARPS)
    assert listed.cancelled_at == cancelled.cancelled_at
    assert listed.secret is None


def test_bodies_are_erased_with_their_dataset_retention(broker: Broker, clock: FixedClock) -> None:
    _subscribe(broker, "social-care", UNDER_25)
    _ingest(broker, YOUNG)
    assert broker.erase_expired_notifications() == 0
    clock.advance(timedelta(days=91))  # the dataset keeps attendances 90 days
    assert broker.erase_expired_notifications() == 1
    (erased,) = broker.notifications(agency="social-care", agreement_id=SHARPS).notifications
    assert (erased.body, erased.withheld) == (None, "body_erased")
    assert _deliver(broker, ScriptedSender())["gave_up"] == 1


_POLICE_URL = "https://police.example.org/in"
_REFUSED: dict[str, tuple[str, str, str, str, Rule]] = {
    "webhook_url_not_https": ("police", SHARPS, VIOLENCE, "http://police.example.org/in", STABBED),
    "subscription_unconditional": ("police", SHARPS, VIOLENCE, _POLICE_URL, Rule(DATASET, ())),
    "purpose_unknown": ("police", SHARPS, "patrols", _POLICE_URL, STABBED),
    "no_release_for_recipient": ("police", SHARPS, SAFEGUARDING, _POLICE_URL, STABBED),
    # The main example releases to social care for lookups only.
    "output_not_allowed": (
        "social-care",
        "sv-early-identification",
        "safeguarding-triage",
        "https://sc.example.org/in",
        Rule("ed-attendances", (Condition("injury_type", "equals", ("sharps",)),)),
    ),
    "field_not_permitted": (
        "police",
        SHARPS,
        VIOLENCE,
        _POLICE_URL,
        Rule(DATASET, (Condition("safeguarding_referral_made", "equals", (True,)),)),
    ),
    "agency_not_recipient": ("ed", SHARPS, SAFEGUARDING, "https://ed.example.org/in", STABBED),
    "dataset_not_released": (
        "police",
        SHARPS,
        VIOLENCE,
        _POLICE_URL,
        Rule("ed-attendances", (Condition("injury_type", "equals", ("sharps",)),)),
    ),
}


@pytest.mark.parametrize("code", sorted(_REFUSED))
def test_each_refused_subscription_is_audited(broker: Broker, code: str) -> None:
    agency, agreement, purpose, url, rule = _REFUSED[code]
    with pytest.raises((Refused, ValidationError)) as refused:
        broker.subscribe(
            agency=agency,
            agreement_id=agreement,
            purpose=purpose,
            url=url,
            rule=rule,
            policy=LOOPBACK,
        )
    assert refused.value.code == code
    (entry,) = _entries(broker, "subscription")
    assert (entry.event.outcome, entry.event.reason_code, entry.event.actor) == (
        "refused",
        code,
        agency,
    )
    assert "example.org" not in json.dumps(entry.event.detail)


def test_a_subscription_is_audited_without_its_values_or_secret(broker: Broker) -> None:
    created = _subscribe(broker, "social-care", UNDER_25)
    (entry,) = _entries(broker, "subscription")
    assert entry.seq == created.audit_entry
    assert entry.event.detail["conditions"] == [
        {"field": "date_of_birth", "op": "age_under"},
        {"field": "injury_type", "op": "in"},
    ]
    text = json.dumps(entry.event.detail)
    assert created.secret is not None
    assert created.secret not in text
    assert "stab_wound" not in text
    assert repr(created) == f"Subscription({created.id}, {SHARPS}/{SAFEGUARDING}/social-care)"
