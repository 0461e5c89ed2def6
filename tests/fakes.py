"""In-memory stand-ins for storage, shared by unit and property tests of the pure core."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from broker.linkage import Assignment, assign_subjects, find_subject


class MemoryStore:
    """Stored tokens by (match key, token), as the linkage repository keeps them."""

    def __init__(self) -> None:
        self.tokens: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.issued = 0
        self.lookups: list[tuple[str, tuple[str, ...]]] = []

    def subjects_for(self, match_key: str, tokens: Sequence[str]) -> Mapping[str, set[str]]:
        self.lookups.append((match_key, tuple(tokens)))
        return {
            value: set(self.tokens[(match_key, value)])
            for value in tokens
            if self.tokens.get((match_key, value))
        }

    def identity_of(self, match_key: str, subjects: Sequence[str]) -> Mapping[str, set[str]]:
        wanted = set(subjects)
        out: dict[str, set[str]] = defaultdict(set)
        for (key, value), holders in self.tokens.items():
            if key == match_key:
                for subject in holders & wanted:
                    out[subject].add(value)
        return out

    def new_subject(self) -> str:
        self.issued += 1
        return f"subject-{self.issued}"

    def ingest(self, batch: Sequence[Mapping[str, str]]) -> list[Assignment]:
        placed = assign_subjects(
            batch,
            subjects_for=self.subjects_for,
            identity_of=self.identity_of,
            new_subject=self.new_subject,
        )
        for tokens, assignment in zip(batch, placed, strict=True):
            for match_key, value in tokens.items():
                self.tokens[(match_key, value)].add(assignment.subject_id)
        return placed

    def find(self, tokens: Mapping[str, str]) -> tuple[str | None, str | None]:
        return find_subject(tokens, subjects_for=self.subjects_for, identity_of=self.identity_of)
