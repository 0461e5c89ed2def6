"""Opaque identifiers for things the broker creates (records, subjects, batches, requests)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A random identifier such as ``sub_5f0c...``; 128 bits, so collisions are not a concern."""
    return f"{prefix}_{secrets.token_hex(16)}"
