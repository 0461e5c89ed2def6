"""The pure parts of notifications: rules, webhook URLs, signatures and the retry schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agreements.loader import load_agreement
from agreements.models import Agreement, Dataset, ReleasedField
from broker.errors import ConfigError, Refused, ValidationError
from broker.notify import (
    Condition,
    RetrySchedule,
    Rule,
    SignatureInvalid,
    WebhookPolicy,
    checked_rule,
    checked_webhook_url,
    matches,
    new_secret,
    secret_from_text,
    secret_text,
    sign,
    signed_headers,
    verify,
)
from tests.conftest import EXAMPLES

DATASET = "ed-sharps-attendances"
NOW = 1_795_000_000


@pytest.fixture(scope="module")
def agreement() -> Agreement:
    return load_agreement(EXAMPLES / "ed-sharps-notification.yaml")


def _dataset(agreement: Agreement) -> Dataset:
    found = agreement.dataset(DATASET)
    assert found is not None
    return found


def _granted(agreement: Agreement, recipient: str, purpose: str) -> tuple[ReleasedField, ...]:
    release = agreement.release_for(purpose, recipient)
    assert release is not None
    return release.fields


def _check(agreement: Agreement, *conditions: Condition, recipient: str = "social-care") -> Rule:
    purpose = "safeguarding-notification" if recipient == "social-care" else "violence-reduction"
    return checked_rule(
        Rule(DATASET, conditions), _dataset(agreement), _granted(agreement, recipient, purpose)
    )


# --- signatures ----------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_published_vector() -> None:
    # From the Standard Webhooks reference library's tests (libraries/python, test_sign_function).
    secret = secret_from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_signed_delivery_verifies_and_returns_its_id() -> None:
    secret = new_secret()
    body = b'{"id":"ntf_1","fields":{"injury_type":"stab_wound"}}'
    headers = signed_headers(secret, "ntf_1", NOW, body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert verify(secret, headers, body, now=NOW + 10) == "ntf_1"
    # Header names are case-insensitive, as HTTP's are.
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify(secret, upper, body, now=NOW) == "ntf_1"


@pytest.mark.parametrize(
    "change",
    [
        "body",
        "timestamp",
        "id",
        "secret",
        "stale",
        "future",
        "missing_signature",
        "missing_id",
        "bad_timestamp",
    ],
)
def test_any_change_fails_verification_with_one_opaque_error(change: str) -> None:
    secret = new_secret()
    body = b'{"id":"ntf_1"}'
    headers = dict(signed_headers(secret, "ntf_1", NOW, body))
    now = NOW
    if change == "body":
        body = b'{"id":"ntf_2"}'
    elif change == "timestamp":
        headers["webhook-timestamp"] = str(NOW + 1)
    elif change == "id":
        headers["webhook-id"] = "ntf_2"
    elif change == "secret":
        secret = new_secret()
    elif change == "stale":
        now = NOW + 301
    elif change == "future":
        now = NOW - 301
    elif change == "missing_signature":
        del headers["webhook-signature"]
    elif change == "missing_id":
        del headers["webhook-id"]
    else:
        headers["webhook-timestamp"] = "soon"
    with pytest.raises(SignatureInvalid) as raised:
        verify(secret, headers, body, now=now)
    assert raised.value.message == "the delivery's signature does not verify"


def test_any_of_several_signatures_may_match() -> None:
    secret = new_secret()
    body = b"{}"
    good = sign(secret, "ntf_1", NOW, body)
    headers = {"webhook-id": "ntf_1", "webhook-timestamp": str(NOW)}
    headers["webhook-signature"] = f"v1,AAAA {good}"
    assert verify(secret, headers, body, now=NOW) == "ntf_1"


def test_an_id_with_a_dot_cannot_be_signed_since_the_framing_would_be_ambiguous() -> None:
    with pytest.raises(SignatureInvalid):
        sign(new_secret(), "ntf.1", NOW, b"{}")


def test_secrets_round_trip_through_their_text_form() -> None:
    secret = new_secret()
    text = secret_text(secret)
    assert text.startswith("whsec_")
    assert secret_from_text(text) == secret
    with pytest.raises(SignatureInvalid):
        secret_from_text("whsec_not base64!")


# --- retries ---------------------------------------------------------------------


def test_backoff_doubles_from_the_first_delay_up_to_the_cap_then_gives_up() -> None:
    schedule = RetrySchedule(first_delay_seconds=10, max_delay_seconds=60, max_attempts=6)
    delays = [schedule.delay_after(n) for n in range(1, 7)]
    assert delays == [
        timedelta(seconds=10),
        timedelta(seconds=20),
        timedelta(seconds=40),
        timedelta(seconds=60),
        timedelta(seconds=60),
        None,
    ]


def test_the_default_schedule_tries_for_about_twelve_hours() -> None:
    schedule = RetrySchedule()
    total = sum(
        (schedule.delay_after(n) or timedelta(0) for n in range(1, schedule.max_attempts)),
        timedelta(0),
    )
    assert timedelta(hours=11) < total < timedelta(hours=13)
    assert schedule.delay_after(schedule.max_attempts) is None


@pytest.mark.parametrize(
    "options",
    [
        {"first_delay_seconds": 0},
        {"first_delay_seconds": 10, "max_delay_seconds": 5},
        {"max_attempts": 0},
    ],
)
def test_a_bad_schedule_is_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetrySchedule(**options)


# --- webhook URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.org/accord", "https://10.0.0.7:8443/in?team=front-door"],
)
def test_https_urls_are_accepted_anywhere(url: str) -> None:
    assert checked_webhook_url(url, WebhookPolicy()) == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9000/"]
)
def test_loopback_http_only_where_the_policy_allows_it(url: str) -> None:
    assert checked_webhook_url(url, WebhookPolicy(allow_loopback_http=True)) == url
    with pytest.raises(ValidationError) as refused:
        checked_webhook_url(url, WebhookPolicy())
    assert refused.value.code == "webhook_url_not_https"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://hooks.example.org/accord", "webhook_url_not_https"),
        ("http://192.168.1.10/hook", "webhook_url_not_https"),
        ("ftp://hooks.example.org/", "webhook_url_not_https"),
        ("hooks.example.org/accord", "webhook_url_invalid"),
        ("https://user:pass@hooks.example.org/", "webhook_url_invalid"),
        ("https://hooks.example.org/#frag", "webhook_url_invalid"),
        ("https://hooks.example.org:99999/", "webhook_url_invalid"),
        ("https://hooks.example.org/a b", "webhook_url_invalid"),
        ("https://hooks.example.org/" + "a" * 2048, "webhook_url_invalid"),
    ],
)
def test_other_urls_are_refused_without_being_repeated(url: str, code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        checked_webhook_url(url, WebhookPolicy(allow_loopback_http=True))
    assert refused.value.code == code
    assert refused.value.location.field == "url"
    assert "example.org" not in refused.value.message


# --- rules -----------------------------------------------------------------------------


def test_a_rule_on_released_fields_is_accepted(agreement: Agreement) -> None:
    rule = _check(
        agreement,
        Condition("injury_type", "in", ("stab_wound", "incised_wound")),
        Condition("date_of_birth", "age_under", (25,)),
        Condition("admitted", "equals", (True,)),
    )
    assert Rule.from_json(rule.to_json()) == rule


def test_an_empty_rule_is_refused_not_read_as_every_record(agreement: Agreement) -> None:
    with pytest.raises(Refused) as refused:
        _check(agreement)
    assert refused.value.code == "subscription_unconditional"
    assert "agreement model has no term" in refused.value.message


def test_a_rule_that_every_record_meets_is_refused_as_unconditional(agreement: Agreement) -> None:
    every_injury = ("stab_wound", "incised_wound", "puncture_wound", "other_sharps")
    with pytest.raises(Refused) as refused:
        _check(
            agreement,
            Condition("injury_type", "in", every_injury),
            Condition("admitted", "in", (True, False)),
        )
    assert refused.value.code == "subscription_unconditional"
    # One narrowing condition among always-true ones is enough.
    _check(
        agreement,
        Condition("injury_type", "in", every_injury),
        Condition("admitted", "equals", (True,)),
    )


def test_a_condition_on_a_field_not_released_is_refused(agreement: Agreement) -> None:
    with pytest.raises(Refused) as refused:
        _check(
            agreement,
            Condition("safeguarding_referral_made", "equals", (True,)),
            recipient="police",
        )
    assert refused.value.code == "field_not_permitted"
    assert refused.value.location.field == "rule.all_of[0].field"


@pytest.mark.parametrize(
    ("condition", "part"),
    [
        (Condition("injury_type", "equals", ("stab",)), "a value is not one"),
        (Condition("injury_type", "equals", ("stab_wound", "incised_wound")), "one value"),
        (Condition("admitted", "equals", ("yes",)), "true or false"),
        (Condition("injury_type", "equals", (True,)), "a code"),
        (Condition("date_of_birth", "age_under", (15,)), "where a band starts"),
        (Condition("date_of_birth", "age_under", (True,)), "whole number"),
        (Condition("injury_type", "age_under", (25,)), "age or age band"),
        (Condition("date_of_birth", "equals", ("12-14",)), "a value is not one"),
    ],
)
def test_a_condition_that_does_not_suit_its_field_is_invalid(
    agreement: Agreement, condition: Condition, part: str
) -> None:
    with pytest.raises(ValidationError) as invalid:
        _check(agreement, condition)
    assert invalid.value.code == "condition_invalid"
    assert part in invalid.value.message
    assert "stab" not in invalid.value.message.replace("stab_wound", "")


def test_the_police_cannot_test_the_exact_attendance_date(agreement: Agreement) -> None:
    # Released to the police as a month: a rule on the exact date would reveal it.
    with pytest.raises(ValidationError):
        _check(agreement, Condition("attendance_date", "age_under", (25,)), recipient="police")
    _check(agreement, Condition("attendance_date", "equals", ("2026-11",)), recipient="police")


@pytest.mark.parametrize(
    ("released", "expected"),
    [
        ({"injury_type": "stab_wound", "date_of_birth": "16-17"}, True),
        ({"injury_type": "stab_wound", "date_of_birth": "18-24"}, True),
        ({"injury_type": "stab_wound", "date_of_birth": "25+"}, False),
        ({"injury_type": "stab_wound", "date_of_birth": "[redacted]"}, False),
        ({"injury_type": "stab_wound", "date_of_birth": None}, False),
        ({"injury_type": "stab_wound"}, False),
        ({"injury_type": "other_sharps", "date_of_birth": "0-9"}, False),
        ({"injury_type": "incised_wound", "date_of_birth": "10-13"}, True),
    ],
)
def test_matching_tests_the_released_values(released: dict[str, Any], expected: bool) -> None:
    rule = Rule(
        DATASET,
        (
            Condition("injury_type", "in", ("stab_wound", "incised_wound")),
            Condition("date_of_birth", "age_under", (25,)),
        ),
    )
    assert matches(rule, released) is expected


def test_matching_an_age_and_typed_values() -> None:
    under = Rule(DATASET, (Condition("age", "age_under", (18,)),))
    assert matches(under, {"age": 17})
    assert not matches(under, {"age": 18})
    assert not matches(under, {"age": True})  # a flag is not an age
    flag = Rule(DATASET, (Condition("admitted", "equals", (True,)),))
    assert matches(flag, {"admitted": True})
    assert not matches(flag, {"admitted": 1})
    assert not matches(Rule(DATASET, ()), {"admitted": True})
