"""The agreements the broker enforces: every version of each, as one immutable snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path

from agreements.decision import current_version
from agreements.loader import load_agreement
from agreements.models import Agreement
from broker.errors import AgreementError, Location, NotFound


class AgreementRegistry:
    """Agreement versions by id. The same id and version twice is an error."""

    def __init__(self, agreements: Iterable[Agreement]) -> None:
        self._by_id: dict[str, list[Agreement]] = {}
        for agreement in agreements:
            versions = self._by_id.setdefault(agreement.id, [])
            if any(v.version == agreement.version for v in versions):
                raise AgreementError(
                    f"agreement '{agreement.id}' version {agreement.version} is defined twice"
                )
            versions.append(agreement)
        for versions in self._by_id.values():
            versions.sort(key=lambda v: v.version)

    @classmethod
    def from_directory(cls, folder: Path, *, today: date | None = None) -> AgreementRegistry:
        """Load every ``*.yaml`` / ``*.yml`` file in ``folder``; any invalid file stops loading."""
        return cls(load_directory(folder, today=today))

    def versions(self, agreement_id: str) -> tuple[Agreement, ...]:
        """Every version of one agreement, oldest first; NotFound names what to check."""
        try:
            return tuple(self._by_id[agreement_id])
        except KeyError:
            raise NotFound(
                f"agreement '{agreement_id}' is not loaded; check the id or the agreements folder"
            ) from None

    def version(self, agreement_id: str, version: int) -> Agreement:
        """One version of one agreement."""
        found = next((v for v in self.versions(agreement_id) if v.version == version), None)
        if found is None:
            raise NotFound(f"agreement '{agreement_id}' has no version {version}")
        return found

    def get(self, agreement_id: str, on: date | None = None) -> Agreement:
        """The version in force on ``on`` (default today), else the latest version.

        The latest is returned only so callers can describe the agreement; the
        decision functions still refuse anything a version not in force asks.
        """
        versions = self.versions(agreement_id)
        return current_version(versions, on or date.today()) or versions[-1]

    def ids(self) -> list[str]:
        """Agreement ids, sorted."""
        return sorted(self._by_id)

    def __iter__(self) -> Iterator[Agreement]:
        """The latest version of each agreement."""
        return iter([versions[-1] for _, versions in sorted(self._by_id.items())])

    def all_versions(self) -> Iterator[Agreement]:
        """Every version of every agreement."""
        for _, versions in sorted(self._by_id.items()):
            yield from versions

    def __len__(self) -> int:
        return len(self._by_id)


def load_directory(folder: Path, *, today: date | None = None) -> list[Agreement]:
    """Every agreement file in ``folder``, validated; the first invalid file stops loading."""
    if not folder.is_dir():
        raise AgreementError(
            "agreements folder does not exist (set BROKER_AGREEMENTS_DIR)",
            location=Location(file=str(folder)),
        )
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return [load_agreement(path, today=today) for path in files]
