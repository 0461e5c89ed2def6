"""Signed checkpoints in the transparency-log checkpoint format (a signed note).

A checkpoint says "the log called ORIGIN held SIZE entries with root hash
ROOT", signed with the broker's Ed25519 key so that anyone holding the public
key can check it, and witnesses can add their own signatures::

    accord.example/audit
    1234
    <base64 root hash>

    — accord.example/audit <base64(key id || signature)>

The key id is the first four bytes of SHA-256(name || "\\n" || 0x01 || public key),
0x01 naming Ed25519. The signature covers the body: every line up to and
including the newline after the root hash. Parsing is strict; anything else is
refused with one opaque error, because a checkpoint arrives from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from broker.errors import AuditIntegrityError, ValidationError

_ED25519 = b"\x01"
_DASH = "\u2014"
MAX_CHECKPOINT_BYTES = 16 * 1024


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint claims about the log."""

    origin: str
    size: int
    root_hash: bytes

    def body(self) -> bytes:
        """The signed text."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n".encode()


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: who signed (name and key id) and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The four-byte id that names a signer's key inside a note."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw).digest()[:4]


def _check_origin(origin: str) -> None:
    if not origin or "\n" in origin or " " in origin or len(origin) > 256:
        raise ValidationError("checkpoint origin must be one word of at most 256 characters")


def sign(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The checkpoint as a signed note, signed by ``name``."""
    _check_origin(checkpoint.origin)
    _check_origin(name)
    body = checkpoint.body()
    blob = key_id(name, private_key.public_key()) + private_key.sign(body)
    return body.decode() + f"\n{_DASH} {name} {base64.b64encode(blob).decode('ascii')}\n"


def add_signature(note: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Add a cosignature (for example a witness's) to an already signed note."""
    checkpoint, _ = parse(note)
    blob = key_id(name, private_key.public_key()) + private_key.sign(checkpoint.body())
    return note + f"{_DASH} {name} {base64.b64encode(blob).decode('ascii')}\n"


def _malformed() -> ValidationError:
    return ValidationError("checkpoint is not a well-formed signed note", code="checkpoint_invalid")


def parse(note: str) -> tuple[Checkpoint, list[NoteSignature]]:
    """Split a signed note into its checkpoint and its signature lines, strictly."""
    if len(note) > MAX_CHECKPOINT_BYTES or not note.endswith("\n"):
        raise _malformed()
    try:
        # A signed note is UTF-8 text; an unpaired surrogate could not be signed or checked.
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed() from None
    body, separator, signed = note.partition("\n\n")
    lines = body.split("\n")
    if not separator or len(lines) != 3:
        raise _malformed()
    origin, size_text, root_text = lines
    try:
        _check_origin(origin)
        if not size_text.isascii() or not size_text.isdigit() or (size_text != str(int(size_text))):
            raise _malformed()
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, ValidationError):
        raise _malformed() from None
    if len(root) != 32:
        raise _malformed()
    signatures: list[NoteSignature] = []
    for line in signed.split("\n")[:-1]:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise _malformed()
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise _malformed() from None
        if len(blob) != 4 + 64:
            raise _malformed()
        signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    if not signatures:
        raise _malformed()
    return Checkpoint(origin, int(size_text), root), signatures


def verify(note: str, name: str, public_key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint, if ``name`` signed it with ``public_key``; AuditIntegrityError otherwise."""
    checkpoint, signatures = parse(note)
    wanted = key_id(name, public_key)
    for signature in signatures:
        if signature.name == name and signature.key_id == wanted:
            try:
                public_key.verify(signature.signature, checkpoint.body())
            except InvalidSignature:
                break
            return checkpoint
    raise AuditIntegrityError(f"checkpoint carries no valid signature by '{name}'")
