"""Notifications, the pure parts: which records a rule wants, webhook URLs, signatures, retries.

A subscription's rule names one dataset and a list of conditions that must all
hold. Conditions are tested on the record as it would be released to the
recipient (each permitted field in its permitted form), never on the stored
values: a rule on a finer form than the release would tell the recipient,
by whether it was notified, what the agreement keeps from it. An empty list
is refused, not read as "every record" (the agreement model has no term that
allows that).

Signatures follow the Standard Webhooks specification (version ``v1``), so a
recipient can verify them with any of its libraries or the ten lines in
docs/integrator-guide.md: HMAC-SHA256 under the subscription's secret over
``{webhook-id}.{webhook-timestamp}.{body}``. Unlike the tokens of
``broker.pseudonymise`` this framing is not length-prefixed, because the
recipient must reproduce it exactly; it is unambiguous because neither the id
nor the timestamp may hold a dot.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from agreements.models import Dataset, ReleasedField
from broker.errors import AccordError, ConfigError, Location, Refused, ValidationError
from broker.release import AGE_BANDS, REDACTED

Operator = Literal["equals", "in", "age_under"]
OPERATORS: tuple[Operator, ...] = ("equals", "in", "age_under")
Scalar = str | int | bool
MAX_CONDITIONS = 20
MAX_VALUES = 50
MAX_URL_LENGTH = 2048

SIGNATURE_SCHEME = "v1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix every Standard Webhooks secret carries
SECRET_BYTES = 32
# Standard Webhooks' header names: the idempotency id, Unix seconds, and the signature.
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
DEFAULT_TOLERANCE_SECONDS = 300


# --- rules ------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One test on one released field: ``equals`` or ``in`` its values, or ``age_under`` one."""

    field: str
    op: Operator
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Rule:
    """The records of ``dataset`` that meet every one of ``all_of``.

    Build it with ``checked_rule``, which refuses an empty or always-true list.
    """

    dataset: str
    all_of: tuple[Condition, ...]

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "dataset": self.dataset,
                "all_of": [
                    {"field": c.field, "op": c.op, "values": list(c.values)} for c in self.all_of
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Rule:
        """The rule from its stored form (already checked when it was stored)."""
        data = json.loads(text)
        return cls(
            dataset=str(data["dataset"]),
            all_of=tuple(
                Condition(field=c["field"], op=c["op"], values=tuple(c["values"]))
                for c in data["all_of"]
            ),
        )


def _band_bounds() -> dict[str, tuple[int, int | None]]:
    return {label: (low, high) for low, high, label in AGE_BANDS}


_BANDS = _band_bounds()
_BAND_STARTS = tuple(low for low, _, _ in AGE_BANDS if low > 0)


def _problem(index: int, message: str, part: str = "") -> ValidationError:
    return ValidationError(
        message, code="condition_invalid", location=Location(field=f"rule.all_of[{index}]{part}")
    )


def _possible_values(dataset: Dataset, grant: ReleasedField) -> frozenset[Scalar] | None:
    """Every value the released field can take, when that is a short known list."""
    spec = dataset.releasable(grant.field)
    if spec is None:
        return None
    if grant.form == "flag" or (grant.form == "as_supplied" and spec.type == "boolean"):
        return frozenset({True, False})
    if grant.form == "age_band":
        return frozenset(_BANDS)
    if grant.form == "as_supplied" and spec.type == "code" and spec.values:
        return frozenset(spec.values)
    return None


def _check_values(index: int, condition: Condition, dataset: Dataset, grant: ReleasedField) -> None:
    spec = dataset.releasable(grant.field)
    assert spec is not None  # the release was checked against the dataset when loaded
    values = condition.values
    if not 1 <= len(values) <= MAX_VALUES or (condition.op == "equals" and len(values) != 1):
        raise _problem(index, f"'{condition.op}' takes one value, 'in' from 1 to {MAX_VALUES}")
    known = _possible_values(dataset, grant)
    boolean = known == frozenset({True, False})
    for value in values:
        if boolean != isinstance(value, bool):
            kind = "true or false" if boolean else "a code, text or a number"
            raise _problem(index, f"values for '{grant.field}' must be {kind}")
        if known is not None and value not in known:
            # The value itself is not repeated: a message names fields, not values.
            raise _problem(
                index, f"a value is not one that '{grant.field}' can take in its released form"
            )


def _check_age(index: int, condition: Condition, grant: ReleasedField) -> None:
    if grant.form not in ("age", "age_band"):
        raise _problem(
            index,
            f"'age_under' needs a field released as an age or age band; '{grant.field}' is "
            f"released as {grant.form}",
        )
    limit = condition.values[0] if len(condition.values) == 1 else None
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 150:
        raise _problem(index, "'age_under' takes one whole number of years from 1 to 150")
    # Under an age band only a limit at a band's start can be decided without the age itself.
    if grant.form == "age_band" and limit not in _BAND_STARTS:
        starts = ", ".join(str(s) for s in _BAND_STARTS)
        raise _problem(
            index,
            f"'{grant.field}' is released as an age band, so 'age_under' must be where a band "
            f"starts ({starts})",
        )


def checked_rule(rule: Rule, dataset: Dataset, permitted: Sequence[ReleasedField]) -> Rule:
    """The rule, if each condition tests a field released from ``dataset`` as its form allows.

    Refused (``field_not_permitted``) for a condition on a field not released to
    the recipient; ``subscription_unconditional`` for an empty list, or one
    whose every condition accepts any value the field can take. ValidationError
    (``condition_invalid``) for a condition that does not suit its field.
    """
    grants = {g.field: g for g in permitted if g.dataset == rule.dataset}
    if len(rule.all_of) > MAX_CONDITIONS:
        raise _problem(MAX_CONDITIONS, f"a rule may hold at most {MAX_CONDITIONS} conditions")
    trivial = 0
    for index, condition in enumerate(rule.all_of):
        grant = grants.get(condition.field)
        if grant is None:
            raise Refused(
                f"condition {index + 1} tests '{rule.dataset}.{condition.field}', which is not "
                "released to you for this purpose",
                code="field_not_permitted",
                location=Location(field=f"rule.all_of[{index}].field"),
            )
        if grant.form == "redacted":
            raise _problem(index, f"'{condition.field}' is released redacted; nothing to test")
        if condition.op == "age_under":
            _check_age(index, condition, grant)
            continue
        _check_values(index, condition, dataset, grant)
        known = _possible_values(dataset, grant)
        if condition.op == "in" and known is not None and known <= set(condition.values):
            trivial += 1
    if trivial == len(rule.all_of):
        raise Refused(
            "a subscription must narrow the records it is notified of with at least one condition "
            "on a released field that some records fail (for example injury_type in [...] or "
            "date_of_birth age_under 25): the agreement model has no term allowing notification "
            "of every record of a dataset, so such a subscription is always refused",
            code="subscription_unconditional",
            location=Location(field="rule.all_of"),
        )
    return rule


def _holds(condition: Condition, value: Any) -> bool:
    if value is None or value == REDACTED:
        return False
    if condition.op == "age_under":
        limit = condition.values[0]
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return value < int(limit)
        _, high = _BANDS.get(str(value), (0, None))
        return high is not None and high < int(limit)
    # Typed comparison: True must not equal 1, nor "1" equal 1.
    return any(type(value) is type(wanted) and value == wanted for wanted in condition.values)


def matches(rule: Rule, released: Mapping[str, Any]) -> bool:
    """Whether a record, as released (field name to released value), meets every condition."""
    return bool(rule.all_of) and all(_holds(c, released.get(c.field)) for c in rule.all_of)


# --- webhook URLs -------------------------------------------------------------


@dataclass(frozen=True)
class WebhookPolicy:
    """Which webhook URLs are accepted: https, and loopback http only if allowed (development)."""

    allow_loopback_http: bool = False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_webhook_url(url: str, policy: WebhookPolicy) -> str:
    """The URL, if the broker may post notifications to it under ``policy``.

    ValidationError ``webhook_url_not_https`` for any scheme but https (http to a
    loopback address only when the policy allows it), ``webhook_url_invalid``
    for a URL without a host, with credentials or a fragment, or too long. No
    message repeats the URL.
    """
    where = Location(field="url")
    if len(url) > MAX_URL_LENGTH or any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise ValidationError(
            f"the webhook URL must be at most {MAX_URL_LENGTH} characters, without spaces or "
            "control characters",
            code="webhook_url_invalid",
            location=where,
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a port out of range raises here
    except ValueError:
        raise ValidationError(
            "the webhook URL is not a valid URL", code="webhook_url_invalid", location=where
        ) from None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise ValidationError(
            "the webhook URL needs a host, and no user name, password or fragment: use the "
            "signature, not the URL, to authenticate the broker",
            code="webhook_url_invalid",
            location=where,
        )
    scheme = parts.scheme.lower()
    if scheme == "https" or (
        scheme == "http" and policy.allow_loopback_http and _is_loopback(host)
    ):
        return url
    raise ValidationError(
        "the webhook URL must use https; plain http is accepted only to a loopback address "
        "(127.0.0.1, ::1, localhost) while BROKER_ENVIRONMENT is development",
        code="webhook_url_not_https",
        location=where,
    )


# --- signatures ---------------------------------------------------------------


class SignatureInvalid(AccordError):
    """A webhook signature did not verify; which part was wrong is not said."""

    code = "signature_invalid"


def new_secret() -> bytes:
    """A fresh random signing secret for one subscription."""
    return secrets.token_bytes(SECRET_BYTES)


def secret_text(secret: bytes) -> str:
    """The secret as given to the recipient once: ``whsec_`` and base64 (Standard Webhooks)."""
    return SECRET_PREFIX + base64.b64encode(secret).decode("ascii")


def secret_from_text(text: str) -> bytes:
    """The secret's bytes from its text form; SignatureInvalid if it is not one."""
    encoded = text.removeprefix(SECRET_PREFIX)
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("the webhook secret is not valid") from None
    if not secret:
        raise SignatureInvalid("the webhook secret is not valid")
    return secret


def _signed_content(message_id: str, timestamp: int, body: bytes) -> bytes:
    if not message_id or "." in message_id or not message_id.isascii():
        raise SignatureInvalid("the webhook id cannot be signed")
    return f"{message_id}.{timestamp}.".encode("ascii") + body


def sign(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,`` and base64 HMAC-SHA256 of the content."""
    digest = hmac.digest(secret, _signed_content(message_id, timestamp, body), "sha256")
    return f"{SIGNATURE_SCHEME}," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a delivery carries."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body),
    }


def verify(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """Check a delivery as a recipient must; returns its idempotency id.

    SignatureInvalid, saying nothing of why, when a header is missing, the
    timestamp is not within ``tolerance_seconds`` of ``now`` (Unix seconds), or
    no ``v1`` signature in the header matches the id, timestamp and body.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get(ID_HEADER, "")
    stamp = lowered.get(TIMESTAMP_HEADER, "")
    offered = lowered.get(SIGNATURE_HEADER, "")
    if not (message_id and stamp.isascii() and stamp.isdigit() and offered):
        raise SignatureInvalid("the delivery's signature does not verify")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureInvalid("the delivery's signature does not verify")
    expected = sign(secret, message_id, timestamp, body).encode("ascii")
    # Several signatures may be sent while a secret is rotated; any one may match.
    found = False
    for candidate in offered.split(" "):
        found |= hmac.compare_digest(candidate.encode("utf-8"), expected)
    if not found:
        raise SignatureInvalid("the delivery's signature does not verify")
    return message_id


# --- retries ------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySchedule:
    """When a failed delivery is tried again: doubling from the first delay, capped, then given up.

    With the defaults a notification is pushed 20 times over about 12 hours;
    after that it waits to be polled (it is never deleted for failing).
    """

    first_delay_seconds: float = 10.0
    max_delay_seconds: float = 3600.0
    max_attempts: int = 20

    def __post_init__(self) -> None:
        if self.first_delay_seconds <= 0 or self.max_delay_seconds < self.first_delay_seconds:
            raise ConfigError("notification retry delays must be positive, the cap above the first")
        if self.max_attempts < 1:
            raise ConfigError("a notification must be attempted at least once")

    def delay_after(self, attempts: int) -> timedelta | None:
        """How long to wait after ``attempts`` failed attempts; None once they are used up."""
        if attempts >= self.max_attempts:
            return None
        # The exponent is capped so that a long outage cannot overflow the float.
        seconds = self.first_delay_seconds * 2 ** min(max(attempts - 1, 0), 60)
        return timedelta(seconds=min(seconds, self.max_delay_seconds))
