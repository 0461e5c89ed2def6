"""Authenticated encryption of stored payloads (AES-256-GCM), bound to where they belong."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.errors import AccordError
from broker.pseudonymise import encode_parts

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealBroken(AccordError):
    """A sealed payload failed authentication: wrong key, wrong record, or changed bytes."""

    code = "payload_unreadable"


def associated_data(agreement_id: str, record_id: str) -> bytes:
    """The data each payload is bound to, so a ciphertext cannot be moved to another record."""
    return encode_parts("payload", [agreement_id, record_id])


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext``; the result carries a version byte and a fresh random nonce."""
    nonce = os.urandom(_NONCE_BYTES)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt a sealed payload; any change, or the wrong key or aad, raises SealBroken."""
    if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
        raise SealBroken("stored payload is not in a known sealed format")
    nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError):  # ValueError: a key of the wrong length
        raise SealBroken("stored payload failed authentication") from None
