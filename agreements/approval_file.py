"""Writing approvals into an agreement file without disturbing the rest of it.

A DPO's comments and layout matter, so the file is not re-serialised: the
top-level ``approvals:`` block is replaced (or appended) as text, and the
result is parsed again to prove it still says the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from agreements.approval import content_digest
from agreements.loader import parse_agreement
from agreements.models import Agreement
from agreements.terms import Approval
from broker.errors import AgreementError

_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*:")


def approvals_block(approvals: Sequence[Approval]) -> str:
    """The YAML text of an ``approvals:`` block, one mapping per approval."""
    if not approvals:
        return "approvals: []\n"
    items = [a.model_dump(mode="json") for a in approvals]
    body = yaml.safe_dump(items, sort_keys=False, default_flow_style=False, width=200)
    return "approvals:\n" + "".join(f"  {line}\n" for line in body.splitlines())


def replace_approvals(text: str, approvals: Sequence[Approval]) -> str:
    """``text`` with its top-level approvals block replaced by ``approvals``."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("approvals:")), None)
    if start is None:
        kept = text if text.endswith("\n") or not text else text + "\n"
        return kept + approvals_block(approvals)
    end = start + 1
    while end < len(lines) and not _TOP_LEVEL_KEY.match(lines[end]):
        end += 1
    return "".join(lines[:start]) + approvals_block(approvals) + "".join(lines[end:])


def write_approvals(path: Path, agreement: Agreement, approvals: Sequence[Approval]) -> Agreement:
    """Rewrite ``path`` with ``approvals``; refuses if that would change anything else."""
    text = path.read_text(encoding="utf-8")
    updated = replace_approvals(text, approvals)
    reread = parse_agreement(updated, source=str(path))
    if content_digest(reread) != content_digest(agreement):
        raise AgreementError(
            "writing the approvals would change the agreement itself; fix the file's layout "
            "so that 'approvals:' is a top-level key",
            code="approval_write_failed",
        )
    path.write_text(updated, encoding="utf-8")
    return reread
