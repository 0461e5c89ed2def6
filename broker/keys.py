"""The master key: a key provider, from a file or the environment, wraps the working keys.

The working keys (each agreement's linkage and data keys, each recipient's
pseudonym key, the audit log's signing key) are random and live in the
database only wrapped under the master key (see ``broker.keystore``). The
master key comes from a *key provider*: the local key file (the embedded
default) or the ``BROKER_MASTER_KEY`` environment variable. An external KMS or
HSM can be added later by implementing ``KeyProvider``; nothing else changes.

The key file is created (mode 0600) only when it does not exist. A key file
that exists but cannot be read is an error; it is never regenerated, because
a new key would silently orphan every stored token and payload.

Databases written before the key store used keys derived from the master key
with HKDF; ``KeyRing.legacy_key`` still derives those, once, so that such a
database's keys can be adopted into the store rather than lost.

An agency that tokenises at source receives one agreement's linkage key in a
*linkage key file* the operator exports (never the master key): with it the
agency computes exactly the tokens the broker would, and nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.errors import KeyFileError
from broker.pseudonymise import constant_time_equal, encode_parts, key_check_value

KEY_FILE_FORMAT = "accord-key-file"
LINKAGE_KEY_FILE_FORMAT = "accord-linkage-key"
KEY_BYTES = 32
MASTER_KEY_VARIABLE = "BROKER_MASTER_KEY"
_WRAP_FORMAT = b"\x01"
_NONCE_BYTES = 12
_AGREEMENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$", re.ASCII)


@dataclass(frozen=True, repr=False)
class LinkageKey:
    """One agreement's linkage key, as an agency that tokenises at source holds it."""

    agreement_id: str
    version: int
    key: bytes

    def __repr__(self) -> str:  # the key must never reach a log line or a traceback
        return f"LinkageKey(agreement_id={self.agreement_id!r}, version={self.version})"

    @property
    def check_value(self) -> str:
        """The key check value the broker compares a tokenised batch's against."""
        return key_check_value(self.key, self.version)


class KeyProvider(Protocol):
    """Wraps and unwraps working keys under a master key the caller never sees.

    A KMS or HSM implements the same four members; the key store calls only these.
    """

    @property
    def source(self) -> str:
        """Where the master key lives, for messages (never the key itself)."""
        ...

    def check_value(self) -> str:
        """A short value identifying the master key, safe to store and compare."""
        ...

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        """Encrypt a working key, bound to ``aad`` (which key slot it belongs to)."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a wrapped key; a wrong master key or ``aad`` raises KeyFileError."""
        ...


@dataclass(frozen=True, repr=False)
class KeyRing:
    """A master key held in this process (from the key file or the environment).

    It implements ``KeyProvider``: working keys are wrapped with AES-256-GCM
    under a key-encryption key derived from the master key.
    """

    master_key: bytes
    version: int
    source: str = "the key file"

    def __repr__(self) -> str:  # keys must never reach a log line or a traceback
        return f"KeyRing(version={self.version})"

    def _wrapping_key(self) -> bytes:
        return self._derive("key-wrapping")

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        """Encrypt a working key under the master key, bound to ``aad``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _WRAP_FORMAT + nonce + AESGCM(self._wrapping_key()).encrypt(nonce, key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a wrapped key; any mismatch raises KeyFileError (never the key's bytes)."""
        if len(wrapped) < 1 + _NONCE_BYTES + 16 or wrapped[:1] != _WRAP_FORMAT:
            raise KeyFileError("a stored key is not in a known wrapped format")
        nonce, body = wrapped[1 : 1 + _NONCE_BYTES], wrapped[1 + _NONCE_BYTES :]
        try:
            return AESGCM(self._wrapping_key()).decrypt(nonce, body, aad)
        except InvalidTag:
            raise KeyFileError(
                f"a stored key could not be unwrapped with the master key from {self.source}; "
                "restore the master key the database was written with"
            ) from None

    def legacy_key(self, kind: str, *owners: str) -> bytes:
        """A key as databases before the key store derived it; used only to adopt them."""
        return self._derive(kind, *owners)

    def _derive(self, kind: str, *owners: str) -> bytes:
        info = encode_parts(f"hkdf:{kind}", [str(self.version), *owners])
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(
            self.master_key
        )

    def check_value(self) -> str:
        """A short value identifying this key, safe to store and compare."""
        return key_check_value(self.master_key, self.version)


def write_linkage_key_file(linkage: LinkageKey, path: Path, *, at: datetime) -> None:
    """Write one agreement's linkage key file (mode 0600); never overwrites a file."""
    document = {
        "format": LINKAGE_KEY_FILE_FORMAT,
        "agreement_id": linkage.agreement_id,
        "key_version": linkage.version,
        "created": at.isoformat(),
        "linkage_key": base64.b64encode(linkage.key).decode("ascii"),
        "key_check": linkage.check_value,
    }
    _write_private(path, document, what="linkage key file")


def signing_key_from_bytes(key: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key whose 32-byte seed is ``key`` (the audit log's signing key)."""
    return Ed25519PrivateKey.from_private_bytes(key)


def master_key_from_environment(value: str) -> KeyRing:
    """The master key from ``BROKER_MASTER_KEY``: 32 random bytes in base64.

    A value that is not exactly that is refused with one line that never echoes it.
    """
    try:
        master = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        master = b""
    if len(master) != KEY_BYTES:
        raise KeyFileError(
            f"{MASTER_KEY_VARIABLE} must hold 32 random bytes in base64 "
            "(for example from: openssl rand -base64 32)"
        )
    return KeyRing(master_key=master, version=1, source=MASTER_KEY_VARIABLE)


def create_key_file(path: Path, *, at: datetime) -> KeyRing:
    """Write a new key file with mode 0600; refuses to overwrite an existing file."""
    master = secrets.token_bytes(KEY_BYTES)
    document = {
        "format": KEY_FILE_FORMAT,
        "version": 1,
        "created": at.isoformat(),
        "master_key": base64.b64encode(master).decode("ascii"),
    }
    _write_private(path, document, what="key file")
    return KeyRing(master_key=master, version=1)


def _write_private(path: Path, document: dict[str, object], *, what: str) -> None:
    """Create ``path`` with mode 0600 and write ``document``; an existing file is an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"{what} could not be created: {exc.strerror}") from None
    try:
        # O_EXCL: creating and checking for an existing file is one step, so no race overwrites.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{what} already exists; it is never overwritten") from None
    except OSError as exc:
        raise KeyFileError(f"{what} could not be created: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
        handle.write("\n")


def load_key_file(path: Path) -> KeyRing:
    """Read a key file; any problem raises KeyFileError with one clear line."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError("key file does not exist (set BROKER_KEY_FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file could not be read: {type(exc).__name__}") from None
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
            raise ValueError("format")
        version = document["version"]
        master = base64.b64decode(document["master_key"], validate=True)
        # JSON true is an int to Python, but str(True) would derive different keys than 1.
        bad_version = not isinstance(version, int) or isinstance(version, bool) or version < 1
        if bad_version or len(master) != KEY_BYTES:
            raise ValueError("shape")
    except (ValueError, KeyError, TypeError):
        raise KeyFileError("key file is corrupt or not an Accord key file") from None
    return KeyRing(master_key=master, version=version)


def open_or_create_key_file(path: Path, *, at: datetime) -> KeyRing:
    """Load the key file, creating it only when no file exists at ``path``."""
    if not path.exists():
        return create_key_file(path, at=at)
    return load_key_file(path)


def load_linkage_key_file(path: Path, *, agreement_id: str | None = None) -> LinkageKey:
    """Read a linkage key file; any problem raises KeyFileError with one clear line.

    With ``agreement_id``, a file exported for another agreement is refused: its
    tokens would never match anything the broker holds under this one.
    """
    try:
        # Anyone who can read this key can tokenise guesses of names and dates of birth.
        if path.stat().st_mode & 0o077:
            raise KeyFileError(
                f"linkage key file {path} is readable by other users; restrict it with chmod 600"
            )
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(
            f"linkage key file {path} does not exist; ask the broker operator to export it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(
            f"linkage key file {path} could not be read: {type(exc).__name__}"
        ) from None
    corrupt = KeyFileError(f"linkage key file {path} is corrupt or not an Accord linkage key file")
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != LINKAGE_KEY_FILE_FORMAT:
            raise ValueError("format")
        owner = document["agreement_id"]
        version = document["key_version"]
        key = base64.b64decode(document["linkage_key"], validate=True)
        check = document["key_check"]
        bad_version = not isinstance(version, int) or isinstance(version, bool) or version < 1
        if not isinstance(owner, str) or not owner or bad_version or len(key) != KEY_BYTES:
            raise ValueError("shape")
        linkage = LinkageKey(owner, version, key)
        # The check value catches a key edited or truncated in transit.
        if not isinstance(check, str) or not constant_time_equal(check, linkage.check_value):
            raise ValueError("check")
    except (ValueError, KeyError, TypeError):
        raise corrupt from None
    if agreement_id is not None and owner != agreement_id:
        # Only an id-shaped value is echoed: the file could hold anything.
        named = f"agreement '{owner}'" if _AGREEMENT_ID.match(owner) else "another agreement"
        raise KeyFileError(
            f"linkage key file {path} is for {named}, not '{agreement_id}'; "
            "ask the broker operator for this agreement's key"
        )
    return linkage
