"""A small population for the partnership dashboard agreement, and the counts it should give.

Each young person has a distinct name, so the broker links their records exactly as
the truth below groups them: the tests can compare what is published with counts
worked out here without the broker.
"""

from __future__ import annotations

import random
import shutil
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from broker.release import age_band, age_on
from broker.service import Broker
from tests.conftest import EXAMPLES

DASHBOARD = "partnership-dashboard"
PURPOSE = "serious-violence-dashboard"
ED = "ed-violence-attendances"
POLICE = "police-serious-violence"
SCHOOL = "school-exclusions"
TODAY = date(2026, 11, 26)  # the conftest clock's day
# Districts of very different sizes, so that some cells are small and some are not.
POSTCODES = {"NS1": "NS1 4AB", "NS2": "NS2 7QD", "NS3": "NS3 1HX", "NS9": "NS9 9ZZ"}
WEIGHTS = {"NS1": 10, "NS2": 6, "NS3": 3, "NS9": 1}


def dashboard_folder(into: Path) -> Path:
    """A folder holding the dashboard and the main example agreement, which allows no aggregate."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / f"{DASHBOARD}.yaml", into)
    shutil.copy(EXAMPLES / "sv-early-identification.yaml", into)
    return into


@dataclass
class Person:
    given: str
    family: str
    born: date
    sex: str
    district: str
    ed: list[dict[str, Any]] = field(default_factory=list)
    police: list[dict[str, Any]] = field(default_factory=list)
    school: list[dict[str, Any]] = field(default_factory=list)

    def identifiers(self) -> dict[str, str]:
        return {
            "given_name": self.given,
            "family_name": self.family,
            "date_of_birth": self.born.isoformat(),
            "sex": self.sex,
            "postcode": POSTCODES[self.district],
        }

    @property
    def band(self) -> str:
        return age_band(age_on(self.born, TODAY))


def _family(index: int) -> str:
    letters = string.ascii_lowercase
    return "Holt" + letters[index // 26 % 26] + letters[index % 26]


def population(seed: int = 7, people: int = 160) -> list[Person]:
    """Young people with ED attendances, police records and school exclusions, at random."""
    rng = random.Random(seed)
    districts = [d for d, w in WEIGHTS.items() for _ in range(w)]
    found: list[Person] = []
    for index in range(people):
        born = date(2003, 1, 1) + timedelta(days=rng.randrange(0, 365 * 14))
        person = Person(
            given=rng.choice(["Amira", "Jordan", "Kai", "Leah", "Noah", "Priya", "Tom", "Zara"]),
            family=_family(index),
            born=born,
            sex=rng.choice("FM"),
            district=rng.choice(districts),
        )
        for n in range(rng.choice([0, 1, 1, 1, 2, 3])):
            person.ed.append(
                {
                    "record_id": f"ED-{index}-{n}",
                    "attendance_date": (
                        date(2026, 7, 1) + timedelta(days=rng.randrange(0, 140))
                    ).isoformat(),
                    "sharps_injury": rng.random() < 0.4,
                    "admitted": rng.random() < 0.2,
                }
            )
        for n in range(rng.choice([0, 0, 1, 2])):
            person.police.append(
                {
                    "record_id": f"POL-{index}-{n}",
                    "offence_date": (
                        date(2026, 6, 1) + timedelta(days=rng.randrange(0, 170))
                    ).isoformat(),
                    "knife_or_sharp_instrument": rng.random() < 0.5,
                    "recorded_as_victim": rng.random() < 0.5,
                }
            )
        if rng.random() < 0.4:
            person.school.append(
                {
                    "record_id": f"SCH-{index}",
                    "suspensions_this_year": rng.choice([0, 1, 2, 5]),
                    "permanently_excluded": rng.random() < 0.3,
                }
            )
        found.append(person)
    return found


def ingest(broker: Broker, people: list[Person]) -> None:
    """Each provider posts its records, one batch per dataset."""
    batches = (("ed", ED, "ed"), ("police", POLICE, "police"), ("school", SCHOOL, "school"))
    for agency, dataset, attribute in batches:
        records = [
            {**p.identifiers(), **record} for p in people for record in getattr(p, attribute)
        ]
        broker.ingest_batch(
            agency=agency, agreement_id=DASHBOARD, dataset_id=dataset, records=records
        )


def true_counts(
    people: list[Person],
    cell: Callable[[Person, dict[str, Any]], tuple[str, ...]],
    *,
    dataset: str = "ed",
    keep: Callable[[Person, dict[str, Any]], bool] = lambda _p, _r: True,
    first: Callable[[dict[str, Any]], str] = lambda r: str(r["record_id"]),
    subjects: bool = True,
) -> Counter[tuple[str, ...]]:
    """Counts by cell worked out from the population, each person once in their first record's."""
    counts: Counter[tuple[str, ...]] = Counter()
    for person in people:
        kept = [r for r in getattr(person, dataset) if keep(person, r)]
        if subjects and kept:
            counts[cell(person, min(kept, key=first))] += 1
        elif not subjects:
            counts.update(cell(person, r) for r in kept)
    return counts
