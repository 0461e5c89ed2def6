"""The possible-match queue's rules: what each holder may see, and when a pair links.

Pure domain: no HTTP, no SQL. A queued pair holds per-field levels
(``broker.link.types.Level``) and which agency holds each side; a holder sees
which fields agree, nearly agree or disagree, never a value, and only its own
record's reference. A pair links only when both holders say it is the same
person; either holder saying different closes it as different.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from broker.errors import Conflict, NotFound, ValidationError
from broker.link.types import COMPARED_FIELDS, Level

OPEN = "open"
SAME = "same"
DIFFERENT = "different"
DECISIONS = (SAME, DIFFERENT)

_LEVEL_NAMES = {
    Level.MISSING: "missing",
    Level.DISAGREE: "disagree",
    Level.NEAR: "nearly_agree",
    Level.AGREE: "agree",
}


@dataclass(frozen=True, slots=True)
class QueuedPair:
    """One possible match as stored; record ids are the broker's, never shown to the other side."""

    id: str
    agreement_id: str
    left_record_id: str
    right_record_id: str
    left_agency: str
    right_agency: str
    levels: tuple[Level, ...]
    probability: float
    state: str = OPEN
    left_decision: str | None = None
    right_decision: str | None = None
    created_at: str = ""
    resolved_at: str | None = None

    def held_by(self, agency: str) -> bool:
        """Whether ``agency`` holds either side of the pair."""
        return agency in (self.left_agency, self.right_agency)


def encode_levels(levels: tuple[Level, ...]) -> str:
    """Levels as one digit per compared field, for storage."""
    if len(levels) != len(COMPARED_FIELDS):
        raise ValueError("one level per compared field is needed")
    return "".join(str(int(level)) for level in levels)


def decode_levels(text: str) -> tuple[Level, ...]:
    """The inverse of ``encode_levels``."""
    return tuple(Level(int(ch)) for ch in text)


def field_view(levels: tuple[Level, ...]) -> dict[str, str]:
    """Each compared field's level by name (agree, nearly_agree, disagree, missing)."""
    return {name: _LEVEL_NAMES[level] for name, level in zip(COMPARED_FIELDS, levels, strict=True)}


def view_for(
    pair: QueuedPair, agency: str | None, source_refs: Mapping[str, str]
) -> dict[str, object]:
    """What ``agency`` may see of a pair (``None``: an oversight role, no record references).

    ``source_refs`` maps the broker's record ids to the providers' own record
    references; a side's reference is shown only to the agency that holds it.
    """
    view: dict[str, object] = {
        "pair_id": pair.id,
        "probability": round(pair.probability, 4),
        "fields": field_view(pair.levels),
        "state": pair.state,
    }
    if agency is not None:
        if agency == pair.left_agency:
            view["your_record"] = source_refs.get(pair.left_record_id)
            view["your_decision"] = pair.left_decision
        if agency == pair.right_agency:
            # One agency may hold both sides (two of its own datasets).
            key = "your_other_record" if agency == pair.left_agency else "your_record"
            view[key] = source_refs.get(pair.right_record_id)
            view["your_decision"] = pair.right_decision or view.get("your_decision")
    return view


def decide(pair: QueuedPair, agency: str, decision: str, at: str) -> QueuedPair:
    """Record ``agency``'s decision; the pair is ``same`` once both holders say so.

    Raises ``NotFound`` when the agency holds neither side (so it learns nothing
    of a pair it may not see), ``Conflict`` when the pair is already resolved
    and ``ValidationError`` for a decision other than same or different.
    """
    if not pair.held_by(agency):
        raise NotFound("no such possible match for your agency; list the queue to see yours")
    if decision not in DECISIONS:
        raise ValidationError("decision must be 'same' or 'different'")
    if pair.state != OPEN:
        raise Conflict("this possible match is already resolved; list the queue for open ones")
    left = decision if agency == pair.left_agency else pair.left_decision
    right = decision if agency == pair.right_agency else pair.right_decision
    state = OPEN
    if DIFFERENT in (left, right):
        state = DIFFERENT
    elif left == SAME and right == SAME:
        state = SAME
    return replace(
        pair,
        left_decision=left,
        right_decision=right,
        state=state,
        resolved_at=at if state != OPEN else None,
    )
