"""Approvals: each party's Ed25519 signature over the canonical form of one version.

The canonical form is the agreement's content as sorted, compact JSON, without
the parts that change over its life and not its meaning (status, the status
reason, the approvals themselves). Reformatting or re-commenting a file keeps
its approvals; changing anything it says breaks every one of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agreements.models import Agreement
from agreements.terms import Approval
from broker.errors import AgreementError
from broker.signing_keys import generate_signing_key, load_signing_key, public_key_text

# Domain separation: an approval signature can never be replayed as any other
# kind of signature the broker makes (checkpoints, webhooks).
_CONTEXT = b"accord agreement approval v1\n"
_EXCLUDED = {"status", "status_reason", "approvals"}


def canonical_form(agreement: Agreement) -> bytes:
    """The bytes an approval signs: the agreement's content, independent of layout."""
    content = agreement.model_dump(mode="json", exclude=_EXCLUDED)
    # Limits came later: an agreement without them signs the bytes it always did.
    if content.get("limits") is None:
        content.pop("limits", None)
    # So did the engine's cascade and thresholds in the linkage section.
    for later in ("cascade", "thresholds"):
        if content.get("linkage", {}).get(later, ...) is None:
            content["linkage"].pop(later)
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def content_digest(agreement: Agreement) -> str:
    """SHA-256 of the canonical form, hex: names exactly what was approved."""
    return hashlib.sha256(canonical_form(agreement)).hexdigest()


def generate_approver_key() -> tuple[bytes, str]:
    """A new approver key: (private key as PEM, public key as base64)."""
    return generate_signing_key()


def public_key_problem(text: str) -> str | None:
    """Why ``text`` is not a base64 Ed25519 public key, or None when it is one."""
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        return "not an Ed25519 public key in base64 (44 characters, as keygen prints it)"
    return None


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Read an approver's private key; AgreementError if it is not an Ed25519 PEM key."""
    return load_signing_key(
        pem,
        invalid=AgreementError(
            "approver key is not a readable Ed25519 PEM private key; make one with "
            "'broker agreements keygen'",
            code="approver_key_invalid",
        ),
    )


def sign_approval(
    agreement: Agreement,
    private_key: Ed25519PrivateKey,
    *,
    party: str,
    approver: str,
    role: str,
    on: date,
) -> Approval:
    """One party's approval of this exact version."""
    if agreement.party(party) is None:
        raise AgreementError(
            f"'{party}' is not a party to agreement '{agreement.id}'", code="agency_not_party"
        )
    signature = private_key.sign(_CONTEXT + canonical_form(agreement))
    return Approval(
        party=party,
        approver=approver,
        role=role,
        approved_on=on,
        public_key=public_key_text(private_key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
    )


def with_approval(agreement: Agreement, approval: Approval) -> Agreement:
    """The agreement with ``approval`` replacing any earlier approval by the same party."""
    kept = tuple(a for a in agreement.approvals if a.party != approval.party)
    ordered = sorted((*kept, approval), key=lambda a: a.party)
    return agreement.model_copy(update={"approvals": tuple(ordered)})


@dataclass(frozen=True)
class ApprovalCheck:
    """The verdict on one approval: ``problem`` is None when it holds."""

    party: str
    approver: str
    problem: str | None


def check_approval(
    agreement: Agreement, approval: Approval, trusted: Mapping[str, Iterable[str]] | None = None
) -> ApprovalCheck:
    """Verify one approval; ``trusted`` maps a party to its registered approver keys."""
    problem = _approval_problem(agreement, approval, trusted)
    return ApprovalCheck(party=approval.party, approver=approval.approver, problem=problem)


def _approval_problem(
    agreement: Agreement, approval: Approval, trusted: Mapping[str, Iterable[str]] | None
) -> str | None:
    if agreement.party(approval.party) is None:
        return f"approval names '{approval.party}', which is not a party"
    if trusted is not None and approval.public_key not in set(trusted.get(approval.party, ())):
        return (
            f"approval by '{approval.party}' is signed with a key not registered for that "
            "party; register the key or approve again with a registered one"
        )
    try:
        public = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(approval.public_key, validate=True)
        )
        signature = base64.b64decode(approval.signature, validate=True)
    except (ValueError, binascii.Error):
        return f"approval by '{approval.party}' has a malformed key or signature"
    try:
        public.verify(signature, _CONTEXT + canonical_form(agreement))
    except InvalidSignature:
        return (
            f"approval by '{approval.party}' does not match this version: the agreement "
            f"changed after it was approved; ask {approval.party}'s DPO to approve it again"
        )
    return None


def check_approvals(
    agreement: Agreement, trusted: Mapping[str, Iterable[str]] | None = None
) -> list[ApprovalCheck]:
    """Verify every approval the agreement carries, in order."""
    return [check_approval(agreement, a, trusted) for a in agreement.approvals]


def unapproved_parties(agreement: Agreement) -> list[str]:
    """Parties with no approval on this version (valid or not), in declaration order."""
    approved = {a.party for a in agreement.approvals}
    return [p.id for p in agreement.parties if p.id not in approved]
