"""Approve the shipped example agreements for demonstration, with throwaway keys.

Run ``python -m agreements.demo_approvals FILE...`` after editing an example.
Each party gets a fresh Ed25519 key that is used once and discarded, so the
examples carry real, verifiable signatures while no private key is ever kept
in the repository. Such approvals prove only that the file is unchanged
since it was signed; a live partnership registers its DPOs' keys instead.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agreements.approval import sign_approval
from agreements.approval_file import replace_approvals, write_approvals
from agreements.loader import parse_agreement

DEMO_APPROVAL_DATE = date(2026, 11, 26)


def approve_for_demo(path: Path) -> int:
    """Sign ``path`` for every party with a fresh key; returns how many approvals it carries."""
    # Old approvals no longer match an edited file, so they are dropped before loading.
    unsigned = replace_approvals(path.read_text(encoding="utf-8"), ())
    agreement = parse_agreement(unsigned, source=str(path))
    approvals = [
        sign_approval(
            agreement,
            Ed25519PrivateKey.generate(),
            party=party.id,
            approver=f"Demonstration DPO, {party.name}"[:200],
            role="Data Protection Officer (demonstration only)",
            on=DEMO_APPROVAL_DATE,
        )
        for party in agreement.parties
    ]
    write_approvals(path, agreement, approvals)
    return len(approvals)


def main(argv: list[str]) -> int:
    """Entry point: approve each named file."""
    for name in argv:
        count = approve_for_demo(Path(name))
        print(f"{name}: {count} demonstration approvals written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
