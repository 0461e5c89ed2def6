"""A witness of the audit log: cosign a checkpoint only if it extends what was seen before.

A witness is run by a partner agency, not by the broker. It remembers the last
checkpoint it cosigned (``WitnessState``) and signs a new one only when

* the note carries a valid signature by the log, under the log key the witness pinned;
* the new size is not smaller than the last size it saw;
* at the same size, the root is the same;
* at a larger size, the log's consistency proof verifies from (last size, last root)
  to (new size, new root): the old log is a prefix of the new one.

A broker that rewrites or truncates its log after a witness has seen it can no longer
get that witness's signature on any later checkpoint, and anyone holding a cosigned
checkpoint can tell.

Trust on first use: with no state, the witness has nothing to compare with and trusts
the checkpoint it is shown, as long as it verifies under the log key. Pass the log key
out of band (``--log-key``) to avoid trusting the key the broker serves on first use.

Everything here is pure apart from ``load_state``/``save_state``. Refusals raise
``AuditIntegrityError`` with one line saying why; a state file that cannot be read
raises ``ValidationError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit import checkpoint as notes
from audit.checkpoint import Checkpoint
from audit.merkle import verify_consistency
from broker.errors import AccordError, AuditIntegrityError, ValidationError
from broker.signing_keys import generate_signing_key, load_signing_key, public_key_text

__all__ = [
    "WitnessState",
    "checkpoint_of",
    "cosign",
    "decide_cosign",
    "generate_key",
    "load_private_key",
    "load_state",
    "parse_public_key",
    "public_key_text",
    "save_state",
    "signed_by",
]

_STATE_VERSION = 1


@dataclass(frozen=True)
class WitnessState:
    """What a witness remembers: the log it watches and the last checkpoint it cosigned."""

    origin: str
    log_key: str  # the log's Ed25519 public key, base64 of the raw 32 bytes
    last_size: int
    last_root: str  # hex of the 32-byte root hash


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 raw bytes; ValidationError otherwise."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        raise ValidationError(
            "not an Ed25519 public key in base64 (44 characters)", code="log_key_invalid"
        ) from None


def generate_key() -> tuple[bytes, str]:
    """A new witness key: (private key as unencrypted PKCS#8 PEM, public key as base64)."""
    return generate_signing_key()


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """A witness's private key from PEM; ValidationError if it is not an Ed25519 key."""
    return load_signing_key(
        pem,
        invalid=ValidationError(
            "the witness key is not a readable Ed25519 PEM private key; make one with "
            "'broker audit witness-keygen'",
            code="witness_key_invalid",
        ),
    )


# -- state ----------------------------------------------------------------------


def _bad_state(path: Path, why: str) -> ValidationError:
    return ValidationError(
        f"witness state file {path} {why}; restore it from a backup (deleting it makes the "
        "witness trust the log afresh)",
        code="witness_state_invalid",
    )


def load_state(path: Path) -> WitnessState | None:
    """The state saved at ``path``, or None if there is no file yet (first use)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise _bad_state(path, "could not be read") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            raise ValueError
        state = WitnessState(
            origin=data["origin"],
            log_key=data["log_key"],
            last_size=data["last_size"],
            last_root=data["last_root"],
        )
        if not isinstance(state.origin, str) or not isinstance(state.log_key, str):
            raise ValueError
        if not isinstance(state.last_size, int) or isinstance(state.last_size, bool):
            raise ValueError
        if state.last_size < 0 or not isinstance(state.last_root, str):
            raise ValueError
        if len(bytes.fromhex(state.last_root)) != 32:
            raise ValueError
        parse_public_key(state.log_key)
    except (ValueError, KeyError, TypeError, ValidationError):
        raise _bad_state(path, "is not a witness state") from None
    return state


def save_state(path: Path, state: WitnessState) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file renamed over it), mode 0600."""
    data = {"version": _STATE_VERSION, **asdict(state)}
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        directory_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_fd)
    except OSError:
        pass
    finally:
        os.close(directory_fd)


# -- the decision ----------------------------------------------------------------


def checkpoint_of(note: str) -> Checkpoint:
    """The checkpoint a note claims, unverified; AuditIntegrityError if it is malformed."""
    try:
        checkpoint, _ = notes.parse(note)
    except ValidationError:
        raise AuditIntegrityError(
            "the broker's checkpoint is not a well-formed signed note"
        ) from None
    return checkpoint


def decide_cosign(
    state: WitnessState | None,
    note: str,
    log_key: Ed25519PublicKey | str,
    consistency_path: Sequence[bytes],
    *,
    origin: str | None = None,
) -> tuple[Checkpoint, WitnessState]:
    """Decide whether to cosign ``note``: the checkpoint and the state to keep, or a refusal.

    ``log_key`` is the key the witness pinned (base64 text or a key). ``origin``, when
    given, is the log's name the witness expects; otherwise the state's, or on first use
    the note's own. ``consistency_path`` proves the state's size extends to the note's
    (empty when the sizes are equal or there is no state). Raises ``AuditIntegrityError``.
    """
    key_text = log_key if isinstance(log_key, str) else public_key_text(log_key)
    try:
        key = parse_public_key(key_text)
    except ValidationError:
        raise AuditIntegrityError("the pinned log key is not an Ed25519 public key") from None
    claimed = checkpoint_of(note)
    expected = origin if origin is not None else (state.origin if state else claimed.origin)
    if state is not None and state.origin != expected:
        raise AuditIntegrityError(
            f"this witness watches the log '{state.origin}', not '{expected}'; "
            "use another state file for another log"
        )
    if state is not None and state.log_key != key_text:
        raise AuditIntegrityError(
            f"the log key differs from the one this witness pinned for '{state.origin}'; "
            "a new log key needs a human decision"
        )
    if claimed.origin != expected:
        raise AuditIntegrityError(
            f"the checkpoint names the log '{claimed.origin[:64]}', not '{expected}'"
        )
    try:
        checkpoint = notes.verify(note, expected, key)
    except AuditIntegrityError:
        raise AuditIntegrityError(
            f"the checkpoint is not signed by the pinned log key of '{expected}'"
        ) from None
    new_state = WitnessState(expected, key_text, checkpoint.size, checkpoint.root_hash.hex())
    if state is None:
        return checkpoint, new_state  # trust on first use
    old_root = bytes.fromhex(state.last_root)
    if checkpoint.size < state.last_size:
        raise AuditIntegrityError(
            f"the log at size {checkpoint.size} is smaller than the log this witness saw at "
            f"size {state.last_size}: it has been truncated or rewritten"
        )
    if checkpoint.size == state.last_size:
        if checkpoint.root_hash != old_root:
            raise AuditIntegrityError(
                f"the log at size {checkpoint.size} is not the log this witness saw at that "
                "size (the roots differ): it has been rewritten"
            )
        if consistency_path:
            raise AuditIntegrityError("a consistency proof between equal sizes must be empty")
        return checkpoint, new_state
    if state.last_size == 0:
        return checkpoint, new_state  # every log extends the empty one
    try:
        verify_consistency(
            state.last_size, checkpoint.size, old_root, checkpoint.root_hash, consistency_path
        )
    except AccordError:
        raise AuditIntegrityError(
            f"the log at size {checkpoint.size} is not an extension of the log this witness "
            f"saw at size {state.last_size}: it has been rewritten"
        ) from None
    return checkpoint, new_state


def signed_by(note: str, name: str, public_key: Ed25519PublicKey) -> bool:
    """Whether ``note`` already carries a valid signature by ``name`` with ``public_key``."""
    try:
        notes.verify(note, name, public_key)
    except AccordError:
        return False
    return True


def cosign(note: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The note with the witness's signature line (``name``, ``private_key``) added."""
    return notes.add_signature(note, name, private_key)
