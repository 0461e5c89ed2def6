"""The audit trail's use cases: verify it, checkpoint it, prove entries, accept cosignatures.

Appends happen inside each action's own transaction (``Broker._audit``); this
module serves everything that reads or attests to the log afterwards.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit import checkpoint as notes
from audit.events import AuditEvent, StoredCheckpoint
from audit.log import LogSigner, checkpoint_now
from audit.tree import consistency_proof_at, inclusion_proof_at, root_at
from audit.verify import Verified, verify_log
from broker.errors import (
    AccordError,
    Conflict,
    NotFound,
    Refused,
    ValidationError,
)
from broker.interfaces import UnitOfWork, UnitOfWorkFactory

AuditAppender = Callable[[UnitOfWork, AuditEvent], object]


@dataclass(frozen=True)
class InclusionProof:
    """Proof that entry ``entry`` is leaf ``entry - 1`` of the tree of ``size`` entries."""

    entry: int
    size: int
    leaf_hash: str
    path: tuple[str, ...]
    checkpoint: StoredCheckpoint


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that the tree of ``old_size`` entries is a prefix of the tree of ``new_size``."""

    old_size: int
    new_size: int
    path: tuple[str, ...]


class AuditTrail:
    """Reads of and attestations to the audit log."""

    def __init__(
        self,
        *,
        units: UnitOfWorkFactory,
        signer: LogSigner,
        audit: AuditAppender,
        now: Callable[[], str],
    ) -> None:
        self._units = units
        self.signer = signer
        self._audit = audit
        self._now = now

    @property
    def origin(self) -> str:
        """The log's name in its checkpoints."""
        return self.signer.origin

    def public_key_text(self) -> str:
        """The checkpoint verification key, as base64 of the raw 32 bytes."""
        raw = self.signer.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def verify(self) -> Verified:
        """Recompute every entry, node, checkpoint and cosignature; raise at the first bad one."""
        with self._units() as uow:
            size, root = uow.audit.head()
            witnesses = _witness_keys(uow.audit.witness_keys())
            return verify_log(
                uow.audit.iter_all(),
                head_size=size,
                head_root=root,
                stored_root=lambda n: root_at(uow.audit.nodes, n),
                stored_nodes=uow.audit.nodes.level_range,
                stored_node_count=uow.audit.nodes.count,
                checkpoints=uow.audit.checkpoints(),
                origin=self.signer.origin,
                log_key=self.signer.public_key,
                witness_keys=witnesses,
            )

    def checkpoint_now(self) -> StoredCheckpoint:
        """Sign a checkpoint of the log as it stands (or return the latest if nothing changed)."""
        with self._units() as uow:
            stored = checkpoint_now(uow.audit, self.signer, at=self._now())
            uow.commit()
        return stored

    def checkpoint_age_seconds(self) -> float:
        """How long entries have waited for a checkpoint to cover them; 0 when all are covered.

        Measured from the newest checkpoint, so it grows while the log has entries
        that no signed checkpoint covers yet (what monitoring should alert on).
        """
        with self._units() as uow:
            latest = uow.audit.latest_checkpoint()
            size, _ = uow.audit.head()
        if latest is None:
            return 0.0 if size == 0 else float("inf")
        if size <= latest.size:
            return 0.0
        waited = datetime.fromisoformat(self._now()) - datetime.fromisoformat(latest.created_at)
        return max(waited.total_seconds(), 0.0)

    def latest_checkpoint(self) -> StoredCheckpoint:
        """The newest signed checkpoint; a fresh one when entries have waited T seconds for one.

        Appends sign every N entries; this covers the quiet log whose last entries
        would otherwise wait for the next append before any checkpoint covered them.
        """
        with self._units() as uow:
            latest = uow.audit.latest_checkpoint()
            size, _ = uow.audit.head()
        if latest is None:
            return self.checkpoint_now()
        waited = datetime.fromisoformat(self._now()) - datetime.fromisoformat(latest.created_at)
        if size > latest.size and waited.total_seconds() >= self.signer.every_seconds:
            return self.checkpoint_now()
        return latest

    def checkpoint(self, size: int) -> StoredCheckpoint:
        """The checkpoint signed at exactly ``size`` entries."""
        with self._units() as uow:
            found = uow.audit.checkpoint(size)
        if found is None:
            raise NotFound(f"no checkpoint was signed at size {size}", code="checkpoint_unknown")
        return found

    def inclusion_proof(
        self, entry: int, *, size: int | None = None, actor: str | None = None
    ) -> InclusionProof:
        """Proof that an entry is in the log, against a signed checkpoint.

        ``actor`` limits an agency to its own entries (None: the operator's view).
        Without ``size`` the first checkpoint covering the entry is used, signed now
        if none covers it yet.
        """
        with self._units() as uow:
            found = uow.audit.entry(entry) if entry >= 1 else None
            if found is None or (actor is not None and found.event.actor != actor):
                raise NotFound(f"audit entry {entry} is not one of yours", code="entry_unknown")
            checkpoint = (
                uow.audit.checkpoint_covering(entry) if size is None else uow.audit.checkpoint(size)
            )
        if checkpoint is None and size is None:
            checkpoint = self.checkpoint_now()
        if checkpoint is None or checkpoint.size < entry:
            raise NotFound(
                f"no checkpoint at size {size} covers entry {entry}", code="checkpoint_unknown"
            )
        with self._units() as uow:
            path = inclusion_proof_at(uow.audit.nodes, entry - 1, checkpoint.size)
        return InclusionProof(
            entry=entry,
            size=checkpoint.size,
            leaf_hash=found.leaf_hash,
            path=tuple(p.hex() for p in path),
            checkpoint=checkpoint,
        )

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        """Proof that the log of ``old_size`` entries is a prefix of the log of ``new_size``."""
        with self._units() as uow:
            size, _ = uow.audit.head()
            if new_size > size:
                raise ValidationError(
                    f"the log holds {size} entries; ask for a size up to that",
                    code="proof_request_invalid",
                )
            path = consistency_proof_at(uow.audit.nodes, old_size, new_size)
        return ConsistencyProof(old_size, new_size, tuple(p.hex() for p in path))

    def add_cosignature(self, size: int, note: str, *, actor: str) -> list[str]:
        """Store the witness signatures a cosigned note adds to checkpoint ``size``.

        Every signature line by a registered witness must verify; lines the
        broker already holds are ignored. Returns the witnesses newly stored.
        """
        stored = self.checkpoint(size)
        checkpoint, _ = notes.parse(note)
        if checkpoint.body() != notes.parse(stored.note)[0].body():
            raise Refused(
                f"that note is not the checkpoint the broker signed at size {size}",
                code="cosignature_invalid",
            )
        added: list[str] = []
        with self._units() as uow:
            keys = _witness_keys(uow.audit.witness_keys())
            held = {w for w, _ in stored.cosignatures}
            # Signature lines may stand in any order (parse has checked their form).
            for line in note.partition("\n\n")[2].splitlines():
                name = line.split(" ")[1]
                if name == self.signer.origin or name in held or name in added:
                    continue
                key = keys.get(name)
                if key is None:
                    raise Refused(
                        f"'{name[:64]}' is not a registered witness; ask the operator to add it",
                        code="witness_unknown",
                    )
                try:
                    notes.verify(stored.note + line + "\n", name, key)
                except AccordError:
                    raise Refused(
                        f"the signature of witness '{name}' does not verify",
                        code="cosignature_invalid",
                    ) from None
                uow.audit.add_cosignature(size, name, line, self._now())
                added.append(name)
            if not added:
                raise Conflict("the note carries no new cosignature", code="cosignature_known")
            self._audit(
                uow,
                AuditEvent(
                    actor=actor,
                    action="key_operation",
                    outcome="permitted",
                    detail={"operation": "checkpoint_cosigned", "size": size, "witnesses": added},
                ),
            )
            uow.commit()
        return added

    def add_witness_key(self, name: str, public_key: str, *, actor: str) -> None:
        """Accept cosignatures from witness ``name`` with this Ed25519 public key (audited)."""
        if not name or " " in name or "\n" in name or len(name) > 256:
            raise ValidationError("a witness name is one word of at most 256 characters")
        _public_key(public_key)
        with self._units() as uow:
            if name in uow.audit.witness_keys():
                raise Conflict(f"witness '{name}' is already registered")
            uow.audit.add_witness_key(name, public_key, self._now())
            self._audit(
                uow,
                AuditEvent(
                    actor=actor,
                    action="key_operation",
                    outcome="permitted",
                    detail={"operation": "witness_registered", "witness": name},
                ),
            )
            uow.commit()


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        raise ValidationError(
            "not an Ed25519 public key in base64 (44 characters)", code="witness_key_invalid"
        ) from None


def _witness_keys(stored: dict[str, str]) -> dict[str, Ed25519PublicKey]:
    return {name: _public_key(key) for name, key in stored.items()}
