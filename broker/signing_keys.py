"""Ed25519 signing keys held by people outside the broker: DPOs' approval keys, witnesses' keys.

One place makes, reads and stores them, so both kinds get the same care: a
new private key is written once, 0600, never over an existing file.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.errors import AccordError, ValidationError


def generate_signing_key() -> tuple[bytes, str]:
    """A new key: (private key as unencrypted PKCS#8 PEM, public key as base64)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_key_text(private.public_key())


def public_key_text(public: Ed25519PublicKey) -> str:
    """The base64 text of a public key's raw 32 bytes, as registrations carry it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_signing_key(pem: bytes, *, invalid: AccordError) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from PEM; raises ``invalid`` for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise invalid from None
    if not isinstance(key, Ed25519PrivateKey):
        raise invalid
    return key


def write_private_key(path: Path, pem: bytes) -> None:
    """Create ``path`` (0600) holding ``pem``; refuses to overwrite an existing file."""
    try:
        # O_EXCL: a key may already have signed approvals or cosignatures; never replace it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValidationError(
            f"{path} already exists; choose another file (a key is never overwritten)",
            code="key_exists",
        ) from None
    except OSError:
        raise ValidationError(f"{path} could not be created", code="key_unwritable") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
