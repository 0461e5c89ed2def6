"""People's accounts: DPOs, IG leads and administrators, and their passwords.

A password is kept only as an scrypt hash with its salt and parameters
(``scrypt$16384$8$1$<salt>$<hash>``, base64), so the parameters can be raised
later without breaking stored hashes. Comparison is constant-time. Nothing
here knows HTTP or SQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from broker.errors import ValidationError
from broker.principal import AGENCY_ROLES, Principal, Role

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_LENGTH = 12
# A bound on the work one sign-in can ask of the broker.
MAX_PASSWORD_LENGTH = 1024
PEOPLE_ROLES = (Role.DPO, Role.IG_LEAD, Role.ADMIN)
ACTIVE = "active"
DISABLED = "disabled"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
_SCHEME = "scrypt"


@dataclass(frozen=True)
class PersonAccount:
    """A person's account as stored (the hash is never shown)."""

    username: str
    role: str
    agency_id: str | None
    password_hash: str
    status: str
    created_at: str
    disabled_at: str | None = None

    def principal(self) -> Principal:
        """The principal this account acts as."""
        return Principal(subject=self.username, role=Role(self.role), agency=self.agency_id)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=64 * 1024 * 1024,
        dklen=HASH_BYTES,
    )


def hash_password(password: str) -> str:
    """The stored form of a password: scrypt with a fresh 16-byte salt, parameters included."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time; False for a malformed hash)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME or len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
        # Refuse parameters that would make one check cost more than a sign-in should.
        if not (2 <= n <= 2**17 and 1 <= r <= 16 and 1 <= p <= 4):
            return False
        actual = _scrypt(password, salt, n, r, p)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Checked against when no account matches, so that a sign-in for an unknown name
# costs what one for a known name does and its timing tells nothing.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def check_password(password: str) -> None:
    """ValidationError unless the password is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters; "
            "a passphrase of several words is easiest",
            code="password_too_short",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"a password may have at most {MAX_PASSWORD_LENGTH} characters",
            code="password_too_long",
        )


def check_username(username: str) -> None:
    """ValidationError unless the name is 2-64 lower-case letters, digits or ._@-."""
    if not _USERNAME.match(username):
        raise ValidationError(
            "a user name is 2 to 64 lower-case letters, digits, '.', '_', '@' or '-'",
            code="username_invalid",
        )


def check_role(role: str, agency_id: str | None) -> Role:
    """The role, checked: dpo and ig_lead name one agency; admin names none."""
    try:
        parsed = Role(role)
    except ValueError:
        parsed = None
    if parsed is None or parsed not in PEOPLE_ROLES:
        raise ValidationError(
            "a person's role is dpo, ig_lead or admin (agency systems are clients)",
            code="role_unknown",
        )
    if parsed in AGENCY_ROLES and agency_id is None:
        raise ValidationError(
            f"a {parsed.value} acts for one agency; give --agency", code="agency_required"
        )
    if parsed not in AGENCY_ROLES and agency_id is not None:
        raise ValidationError("an administrator acts for no agency", code="agency_not_allowed")
    return parsed
