"""The broker's keys: a master secret in a local key file, and keys derived from it.

Each agreement gets its own linkage key and data key, and each recipient under
an agreement its own pseudonym key, all derived with HKDF-SHA256 using a
length-prefixed ``info`` that names the kind, the key version and the owner.
So tokens made under one agreement cannot be joined with another's, and one
recipient cannot compute another's pseudonyms.

The key file is created (mode 0600) only when it does not exist. A key file
that exists but cannot be read is an error; it is never regenerated, because
a new key would silently orphan every stored token and payload.

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

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.errors import KeyFileError
from broker.pseudonymise import constant_time_equal, encode_parts, key_check_value

KEY_FILE_FORMAT = "accord-key-file"
LINKAGE_KEY_FILE_FORMAT = "accord-linkage-key"
KEY_BYTES = 32
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


@dataclass(frozen=True, repr=False)
class KeyRing:
    """The loaded master key and its version; derives every working key."""

    master_key: bytes
    version: int

    def __repr__(self) -> str:  # keys must never reach a log line or a traceback
        return f"KeyRing(version={self.version})"

    def _derive(self, kind: str, *owners: str) -> bytes:
        info = encode_parts(f"hkdf:{kind}", [str(self.version), *owners])
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(
            self.master_key
        )

    def linkage_key(self, agreement_id: str) -> bytes:
        """The key for match-key tokens under one agreement."""
        return self._derive("linkage", agreement_id)

    def data_key(self, agreement_id: str) -> bytes:
        """The AES-256-GCM key for payloads stored under one agreement."""
        return self._derive("data", agreement_id)

    def pseudonym_key(self, agreement_id: str, recipient: str) -> bytes:
        """The key for one recipient's pseudonyms under one agreement."""
        return self._derive("pseudonym", agreement_id, recipient)

    def log_signing_key(self) -> Ed25519PrivateKey:
        """The Ed25519 key the broker signs audit checkpoints with (derived, never stored)."""
        return Ed25519PrivateKey.from_private_bytes(self._derive("audit-log-signing"))

    def check_value(self) -> str:
        """A short value identifying this key, safe to store and compare."""
        return key_check_value(self.master_key, self.version)

    def linkage(self, agreement_id: str) -> LinkageKey:
        """One agreement's linkage key with its version, as it is exported to a provider."""
        return LinkageKey(agreement_id, self.version, self.linkage_key(agreement_id))

    def linkage_check_value(self, agreement_id: str) -> str:
        """The key check value of one agreement's current linkage key."""
        return self.linkage(agreement_id).check_value

    def export_linkage_key(self, agreement_id: str, path: Path, *, at: datetime) -> LinkageKey:
        """Write one agreement's linkage key file (mode 0600); never overwrites a file."""
        linkage = self.linkage(agreement_id)
        document = {
            "format": LINKAGE_KEY_FILE_FORMAT,
            "agreement_id": agreement_id,
            "key_version": linkage.version,
            "created": at.isoformat(),
            "linkage_key": base64.b64encode(linkage.key).decode("ascii"),
            "key_check": linkage.check_value,
        }
        _write_private(path, document, what="linkage key file")
        return linkage


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
