"""The agreements the broker enforces, loaded once from a folder at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from agreements.loader import load_agreement
from agreements.models import Agreement
from broker.errors import AgreementError, Location, NotFound


class AgreementRegistry:
    """Agreements by id. Two files with the same id are an error: one version loads at a time."""

    def __init__(self, agreements: Iterable[Agreement]) -> None:
        self._by_id: dict[str, Agreement] = {}
        for agreement in agreements:
            if agreement.id in self._by_id:
                raise AgreementError(f"agreement '{agreement.id}' is defined twice")
            self._by_id[agreement.id] = agreement

    @classmethod
    def from_directory(cls, folder: Path) -> AgreementRegistry:
        """Load every ``*.yaml`` / ``*.yml`` file in ``folder``; any invalid file stops loading."""
        if not folder.is_dir():
            raise AgreementError(
                "agreements folder does not exist (set BROKER_AGREEMENTS_DIR)",
                location=Location(file=str(folder)),
            )
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        return cls(load_agreement(path) for path in files)

    def get(self, agreement_id: str) -> Agreement:
        """The agreement with this id; NotFound names what to check."""
        try:
            return self._by_id[agreement_id]
        except KeyError:
            raise NotFound(
                f"agreement '{agreement_id}' is not loaded; check the id or the agreements folder"
            ) from None

    def __iter__(self) -> Iterator[Agreement]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
