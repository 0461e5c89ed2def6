"""Keyed hashing recipes for tokens and pseudonyms (with ``broker.bloom``, the only HMAC callers).

Every input is domain-separated and length-prefixed before it is hashed, so
``("ab", "c")`` and ``("a", "bc")`` can never produce the same token, and a
token made for one purpose (a match key) can never equal one made for another
(a pseudonym). Never ``sha256(value + salt)``: without a secret key a token
would fall to a dictionary of names and dates of birth.

``token`` is the reference recipe for one token; ``Tokeniser`` makes the very
same tokens, faster, when one key makes many (a record's match keys, a batch).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

_SCHEME = b"accord.v1"


def encode_parts(domain: str, parts: Sequence[str]) -> bytes:
    """Canonical bytes for a domain and its parts: each length-prefixed (4 bytes, big-endian)."""
    return _SCHEME + _length_prefixed((domain, *parts))


def _length_prefixed(parts: Sequence[str]) -> bytes:
    chunks = []
    for item in parts:
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


def pseudonym(key: bytes, subject_id: str, version: int = 1) -> str:
    """A recipient's stable pseudonym for a subject, made with that recipient's own key.

    Pseudonyms from a rotated key (version 2 on) say their version, ``ps2_...``,
    so a recipient can tell an old pseudonym from a new one for the same person.
    """
    digest = hmac.digest(key, encode_parts("pseudonym", [subject_id]), "sha256")
    prefix = "ps_" if version == 1 else f"ps{version}_"
    return prefix + base64.b32encode(digest[:15]).decode("ascii").lower()


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


# The four-byte length of a value under 256 bytes as text: three NULs and one character.
_SHORT_LENGTHS = tuple("\0\0\0" + chr(length) for length in range(256))


@lru_cache(maxsize=64)
def _token_prefix(match_key: str) -> bytes:
    # The framed scheme and domain that begin every token message of one match key.
    return encode_parts(f"token:{match_key}", ())


class Tokeniser:
    """Tokens under one linkage key, each equal to what ``token`` gives, for less work.

    The standard library's HMAC-SHA256 object is keyed once and copied for
    each token (``hmac.HMAC.copy``), so the key's padding is not hashed again
    for every token as ``hmac.digest`` must. No part of HMAC is written here.
    The tests hold it to RFC 4231's vectors and to ``token`` for random keys
    and values. Make one for a record's several match keys or for a whole
    batch; it is as good as the key, so keep it no longer than the key is in use.
    """

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def token(self, match_key: str, values: Sequence[str]) -> str:
        """The token of normalised ``values`` under ``match_key``, as ``token`` makes it."""
        # Most values are short ASCII: framed as text, encoded once, they are the bytes
        # encode_parts gives. Anything else takes the general framing.
        try:
            text = "".join([_SHORT_LENGTHS[len(value)] + value for value in values])
        except IndexError:  # a value of 256 characters or more
            framed = _length_prefixed(values)
        else:
            # ASCII throughout means no value, and so no length, reached 128.
            framed = text.encode("ascii") if text.isascii() else _length_prefixed(values)
        return self._hmac_hex(_token_prefix(match_key) + framed)

    def _hmac_hex(self, message: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.hexdigest()
