"""Small builders shared by integration and functional tests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import agreements
from agreements.loader import load_agreement
from agreements.models import Agreement

AGREEMENT = "sv-early-identification"
EXAMPLE_FILE = Path(agreements.__file__).resolve().parent / "examples" / f"{AGREEMENT}.yaml"


def example_agreement() -> Agreement:
    """The shipped example agreement, freshly loaded."""
    return load_agreement(EXAMPLE_FILE)


def school_record(
    ref: str, given: str = "Amira", family: str = "Okafor", **extra: Any
) -> dict[str, Any]:
    """A valid school-attendance record."""
    record: dict[str, Any] = {
        "record_id": ref,
        "given_name": given,
        "family_name": family,
        "date_of_birth": "2011-03-14",
        "postcode": "NS1 4AB",
        "attendance_pct": "82.5",
        "persistent_absence": "true",
        "excluded": "false",
        "sen_support": "true",
    }
    record.update(extra)
    return record


def ed_record(
    ref: str, given: str = "Amira", family: str = "Okafor", **extra: Any
) -> dict[str, Any]:
    """A valid ed-attendances record for the same young person as school_record by default."""
    record: dict[str, Any] = {
        "record_id": ref,
        "given_name": given,
        "family_name": family,
        "date_of_birth": "2011-03-14",
        "postcode": "ns14ab",
        "attendance_date": "2026-11-20",
        "injury_type": "sharps",
        "arrival_mode": "ambulance",
        "safeguarding_referral_made": True,
    }
    record.update(extra)
    return record


IDENTIFIERS = {
    "given_name": "AMIRA",
    "family_name": "okafor",
    "date_of_birth": "2011-03-14",
    "postcode": "NS1 4AB",
}


def idempotent(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus a fresh ``Idempotency-Key``: every batch carries one (issue 8)."""
    return {**headers, "Idempotency-Key": str(uuid.uuid4())}
