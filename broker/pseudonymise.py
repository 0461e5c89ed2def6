"""Keyed hashing recipes: the only module in Accord that calls HMAC.

Every input is domain-separated and length-prefixed before it is hashed, so
``("ab", "c")`` and ``("a", "bc")`` can never produce the same token, and a
token made for one purpose (a match key) can never equal one made for another
(a pseudonym). Never ``sha256(value + salt)``: without a secret key a token
would fall to a dictionary of names and dates of birth.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

_SCHEME = b"accord.v1"


def encode_parts(domain: str, parts: Sequence[str]) -> bytes:
    """Canonical bytes for a domain and its parts: each length-prefixed (4 bytes, big-endian)."""
    chunks = [_SCHEME]
    for item in (domain, *parts):
        data = item.encode("utf-8")
        chunks.append(len(data).to_bytes(4, "big"))
        chunks.append(data)
    return b"".join(chunks)


def token(key: bytes, match_key: str, values: Sequence[str]) -> str:
    """The token (hex HMAC-SHA256) of normalised identifier ``values`` under ``match_key``.

    The caller must pass values already normalised; the key must be the
    agreement's linkage key so that tokens cannot be joined across agreements.
    """
    # hmac.digest is the one-shot C path: several times faster than hmac.new for short inputs.
    return hmac.digest(key, encode_parts(f"token:{match_key}", values), "sha256").hex()


def pseudonym(key: bytes, subject_id: str) -> str:
    """A recipient's stable pseudonym for a subject, made with that recipient's own key."""
    digest = hmac.digest(key, encode_parts("pseudonym", [subject_id]), "sha256")
    return "ps_" + base64.b32encode(digest[:15]).decode("ascii").lower()


def key_check_value(key: bytes, version: int = 1) -> str:
    """A value that shows which key (and key version) is loaded without revealing it.

    The version is included because it feeds every derived key: the same secret
    under another version number would derive different tokens.
    """
    digest = hmac.new(key, encode_parts("key-check", [str(version)]), hashlib.sha256)
    return digest.hexdigest()[:16]


def constant_time_equal(left: str, right: str) -> bool:
    """Compare two tokens or digests without leaking where they differ."""
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))
