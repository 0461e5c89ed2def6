"""A seeded synthetic town: the agency extracts a safeguarding partnership would hold.

``generate_town(seed, people, profile)`` makes young people aged 10 to 24 on
2026-09-01 in households (siblings, some twins, a few unrelated people who
share a common name and birthday), then each agency's rows about them, with
the mistakes real extracts carry. The same arguments always give the same town.

Mistakes per record, by profile (probabilities; "clean" has none). The
moderate rates follow what linkage studies of UK administrative data report:
a few per cent of names mistyped or recorded by a short form, dates keyed by
hand with day and month swapped about one time in a hundred, and young people
who move often, so an old postcode is common.

| mistake         | moderate | hard | what it does |
| --------------- | -------- | ---- | ------------ |
| name_typo       | 0.03     | 0.08 | a letter of a given or family name changed, dropped, doubled |
| nickname        | 0.03     | 0.08 | a short form (Liv, Mo) instead of the registered given name |
| name_swap       | 0.01     | 0.03 | given and family names in each other's column |
| dob_swap        | 0.01     | 0.03 | day and month swapped (only where both are 12 or less) |
| dob_typo        | 0.01     | 0.03 | day of birth one out |
| postcode_old    | 0.06     | 0.15 | a previous address's postcode |
| postcode_missing| 0.02     | 0.06 | postcode not recorded |
| nhs_missing     | 0.10     | 0.25 | NHS number not recorded where the agency usually has it |
| nhs_transposed  | 0.01     | 0.03 | two adjacent digits swapped (fails the check digit) |

Spacing and case variants of postcodes and apostrophe variants of names are
applied too, but they are not mistakes: normalisation removes them.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from adapters.csv import CANONICAL_COLUMNS
from broker.errors import ValidationError
from broker.normalise import nhs_check_digit, upn_check_letter
from broker.synth_names import FAMILY, GIVEN_FEMALE, GIVEN_MALE, NICKNAMES, STREETS

REFERENCE_DATE = date(2026, 9, 1)
AGENCIES = ("school", "police", "social-care", "ed")
CANONICAL = CANONICAL_COLUMNS
AGENCY_COLUMNS = {
    "school": (
        "attendance_pct",
        "persistent_absence",
        "suspensions_this_year",
        "excluded",
        "alternative_provision",
        "sen_support",
    ),
    "police": (
        "incident_date",
        "incident_type",
        "role_in_incident",
        "missing_episodes_12m",
        "exploitation_concern",
    ),
    "social-care": ("csc_status", "allocated_team", "exploitation_screening", "last_contact_date"),
    "ed": ("attendance_date", "injury_type", "arrival_mode", "safeguarding_referral_made"),
}
_PREFIX = {"school": "SCH", "police": "POL", "social-care": "CSC", "ed": "ED"}
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class CorruptionProfile:
    """Per-record probabilities of each mistake (see the module docstring for the reasons)."""

    name_typo: float = 0.0
    nickname: float = 0.0
    name_swap: float = 0.0
    dob_swap: float = 0.0
    dob_typo: float = 0.0
    postcode_old: float = 0.0
    postcode_missing: float = 0.0
    nhs_missing: float = 0.0
    nhs_transposed: float = 0.0


PROFILES: dict[str, CorruptionProfile] = {
    "clean": CorruptionProfile(),
    "moderate": CorruptionProfile(0.03, 0.03, 0.01, 0.01, 0.01, 0.06, 0.02, 0.10, 0.01),
    "hard": CorruptionProfile(0.08, 0.08, 0.03, 0.03, 0.03, 0.15, 0.06, 0.25, 0.03),
}


@dataclass(frozen=True)
class Person:
    """One young person in the town, as they really are."""

    person_id: str
    household_id: str
    given_name: str
    family_name: str
    date_of_birth: date
    sex: str
    postcode: str
    old_postcode: str
    address_line: str
    nhs_number: str
    upn: str
    twin: bool
    at_risk: bool


@dataclass
class Town:
    """The people, and each agency's rows and truth rows about them."""

    people: list[Person] = field(default_factory=list)
    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    truth: list[dict[str, str]] = field(default_factory=list)


class _Maker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.nhs_seen: set[str] = set()
        self.serial = 0

    def postcode(self) -> str:
        r = self.rng
        inward = f"{r.randint(1, 9)}{r.choice(_INWARD_LETTERS)}{r.choice(_INWARD_LETTERS)}"
        return f"NS{r.randint(1, 9)} {inward}"

    def nhs_number(self) -> str:
        while True:
            first = str(self.rng.randint(400_000_000, 699_999_999))
            check = nhs_check_digit(first)
            if check is not None and first not in self.nhs_seen:
                self.nhs_seen.add(first)
                return f"{first}{check}"

    def upn(self) -> str:
        self.serial += 1
        rest = (
            f"873{self.rng.randint(2000, 2999)}{self.rng.randint(10, 26)}{self.serial % 1000:03d}"
        )
        return upn_check_letter(rest) + rest


def _people(rng: random.Random, count: int) -> list[Person]:
    maker = _Maker(rng)
    people: list[Person] = []
    household = 0
    while len(people) < count:
        household += 1
        family = rng.choice(FAMILY)
        postcode, old = maker.postcode(), maker.postcode()
        address = f"{rng.randint(1, 180)} {rng.choice(STREETS)}"
        children = rng.choices((1, 2, 3), weights=(5, 3, 1))[0]
        births: list[date] = []
        for _ in range(children):
            births.append(REFERENCE_DATE - timedelta(days=rng.randint(10 * 365 + 3, 24 * 365)))
        twins = rng.random() < 0.015 and count - len(people) >= 2
        if twins:
            births = [births[0], births[0], *births[2:]] if len(births) > 1 else births * 2
        at_risk_home = rng.random() < 0.12
        for index, born in enumerate(births[: count - len(people)]):
            sex = "F" if rng.random() < 0.49 else "M" if rng.random() < 0.98 else "X"
            given = rng.choice(GIVEN_FEMALE if sex == "F" else GIVEN_MALE)
            if twins and index == 1:
                while given == people[-1].given_name:
                    given = rng.choice(GIVEN_FEMALE if sex == "F" else GIVEN_MALE)
            age = (REFERENCE_DATE - born).days // 365
            people.append(
                Person(
                    person_id=f"P{len(people) + 1:05d}",
                    household_id=f"H{household:05d}",
                    given_name=given,
                    family_name=family,
                    date_of_birth=born,
                    sex=sex,
                    postcode=postcode,
                    old_postcode=old,
                    address_line=address,
                    nhs_number=maker.nhs_number(),
                    upn=maker.upn() if age <= 18 else "",
                    twin=twins and index < 2,
                    at_risk=at_risk_home and rng.random() < 0.7,
                )
            )
    _add_strangers(rng, people)
    return people


def _add_strangers(rng: random.Random, people: list[Person]) -> None:
    """About one in a hundred people shares a common name and birthday with someone elsewhere."""
    for index in range(1, len(people)):
        if rng.random() < 0.01:
            other = people[rng.randrange(index)]
            if other.household_id != people[index].household_id and not people[index].twin:
                mine = people[index]
                people[index] = replace(
                    mine,
                    given_name=other.given_name,
                    family_name=other.family_name,
                    date_of_birth=other.date_of_birth,
                    sex=other.sex,
                )


def _typo(rng: random.Random, name: str) -> str:
    if len(name) < 3:
        return name + name[-1]
    at = rng.randrange(1, len(name) - 1)
    kind = rng.choice(("change", "drop", "double"))
    if kind == "drop":
        return name[:at] + name[at + 1 :]
    if kind == "double":
        return name[:at] + name[at] + name[at:]
    replacement = rng.choice([c for c in "aeiourstnl" if c != name[at].lower()])
    return name[:at] + replacement + name[at + 1 :]


def _names_as_recorded(
    rng: random.Random, person: Person, profile: CorruptionProfile, applied: list[str]
) -> tuple[str, str]:
    given, family = person.given_name, person.family_name
    if rng.random() < profile.nickname and given in NICKNAMES:
        given = NICKNAMES[given]
        applied.append("nickname")
    if rng.random() < profile.name_typo:
        if rng.random() < 0.5:
            given = _typo(rng, given)
        else:
            family = _typo(rng, family)
        applied.append("name_typo")
    if rng.random() < profile.name_swap:
        given, family = family, given
        applied.append("name_swap")
    return given, family


def _birth_as_recorded(
    rng: random.Random, born: date, profile: CorruptionProfile, applied: list[str]
) -> date:
    if rng.random() < profile.dob_swap and born.day <= 12 and born.day != born.month:
        born = date(born.year, born.day, born.month)
        applied.append("dob_swap")
    if rng.random() < profile.dob_typo:
        born += timedelta(days=rng.choice((-1, 1)))
        applied.append("dob_typo")
    return born


def _nhs_as_recorded(
    rng: random.Random, nhs: str, agency: str, profile: CorruptionProfile, applied: list[str]
) -> str:
    # How often each kind of agency holds an NHS number at all.
    holds = {"school": 0.05, "police": 0.15, "social-care": 0.9, "ed": 0.95}[agency]
    if rng.random() >= holds:
        return ""
    if rng.random() < profile.nhs_missing:
        applied.append("nhs_missing")
        return ""
    if rng.random() < profile.nhs_transposed:
        at = rng.randrange(9)
        if nhs[at] != nhs[at + 1]:
            applied.append("nhs_transposed")
            return nhs[:at] + nhs[at + 1] + nhs[at] + nhs[at + 2 :]
    return nhs


def _identity_row(
    rng: random.Random, person: Person, agency: str, profile: CorruptionProfile
) -> tuple[dict[str, str], list[str]]:
    """The identifying columns as this agency recorded them, and the mistakes made."""
    applied: list[str] = []
    given, family = _names_as_recorded(rng, person, profile, applied)
    born = _birth_as_recorded(rng, person.date_of_birth, profile, applied)
    postcode = person.postcode
    if rng.random() < profile.postcode_old:
        postcode = person.old_postcode
        applied.append("postcode_old")
    if rng.random() < profile.postcode_missing:
        postcode = ""
        applied.append("postcode_missing")
    nhs = _nhs_as_recorded(rng, person.nhs_number, agency, profile, applied)
    # Variants that are not mistakes: normalisation removes them.
    if postcode and rng.random() < 0.2:
        postcode = rng.choice((postcode.lower(), postcode.replace(" ", ""), f" {postcode}"))
    if "'" in family and rng.random() < 0.3:
        family = family.replace("'", rng.choice(("", "’", " ")))
    row = {
        "given_name": given,
        "family_name": family,
        "date_of_birth": born.isoformat(),
        "sex": person.sex,
        "postcode": postcode,
        "address_line": person.address_line,
        "nhs_number": nhs,
        "upn": person.upn if agency == "school" else "",
    }
    return row, applied


def _recent(rng: random.Random, days: int = 365) -> str:
    return (REFERENCE_DATE - timedelta(days=rng.randint(0, days))).isoformat()


def _agency_fields(rng: random.Random, agency: str, person: Person) -> dict[str, str]:
    risky = person.at_risk
    if agency == "school":
        pct = round(rng.uniform(55, 89) if risky else rng.uniform(86, 100), 1)
        excluded = risky and rng.random() < 0.3
        return {
            "attendance_pct": f"{pct:.1f}",
            "persistent_absence": str(pct < 90).lower(),
            "suspensions_this_year": str(rng.randint(1, 6) if risky else rng.choice((0, 0, 0, 1))),
            "excluded": str(excluded).lower(),
            "alternative_provision": str(excluded or (risky and rng.random() < 0.2)).lower(),
            "sen_support": str(rng.random() < (0.35 if risky else 0.13)).lower(),
        }
    if agency == "police":
        kinds = (
            (
                "possession_of_weapon",
                "violence_with_injury",
                "robbery",
                "drugs_supply",
                "missing_episode",
            )
            if risky
            else ("other", "violence_with_injury", "missing_episode")
        )
        return {
            "incident_date": _recent(rng),
            "incident_type": rng.choice(kinds),
            "role_in_incident": rng.choice(("victim", "suspect", "witness", "missing_person")),
            "missing_episodes_12m": str(rng.randint(1, 8) if risky else rng.choice((0, 0, 1))),
            "exploitation_concern": str(risky and rng.random() < 0.7).lower(),
        }
    if agency == "social-care":
        return {
            "csc_status": rng.choice(
                ("child_in_need", "child_protection", "looked_after")
                if risky
                else ("early_help", "child_in_need", "closed")
            ),
            "allocated_team": f"Northshire {rng.choice(('North', 'South', 'Central'))} Team",
            "exploitation_screening": rng.choice(
                ("moderate", "significant") if risky else ("none", "none", "emerging")
            ),
            "last_contact_date": _recent(rng, 120),
        }
    return {
        "attendance_date": _recent(rng, 180),
        "injury_type": rng.choice(
            ("sharps", "sharps", "assault_other", "blunt")
            if risky
            else ("other", "other", "blunt", "self_harm")
        ),
        "arrival_mode": rng.choice(("ambulance", "police", "self", "other")),
        "safeguarding_referral_made": str(risky and rng.random() < 0.6).lower(),
    }


def _known_to(rng: random.Random, person: Person) -> list[str]:
    age = (REFERENCE_DATE - person.date_of_birth).days // 365
    odds = {
        "school": 0.95 if 11 <= age <= 16 else 0.0,
        "police": 0.85 if person.at_risk else 0.25,
        "social-care": 0.85 if person.at_risk else 0.2,
        "ed": 0.6 if person.at_risk else 0.1,
    }
    return [agency for agency in AGENCIES if rng.random() < odds[agency]]


def generate_town(seed: int = 1, people: int = 300, profile: str = "moderate") -> Town:
    """Make the town; deterministic for the same seed, size and profile."""
    if profile not in PROFILES:
        raise ValidationError(
            f"profile must be one of {', '.join(PROFILES)}", code="profile_unknown"
        )
    if not 1 <= people <= 1_000_000:
        raise ValidationError("people must be between 1 and 1,000,000", code="people_invalid")
    rng = random.Random(seed)
    chosen = PROFILES[profile]
    town = Town(people=_people(rng, people), rows={agency: [] for agency in AGENCIES})
    counters = dict.fromkeys(AGENCIES, 0)
    for person in town.people:
        for agency in _known_to(rng, person):
            # Some are recorded twice by one agency: a second attendance or incident.
            repeats = 2 if agency in ("ed", "police") and rng.random() < 0.1 else 1
            for _ in range(repeats):
                counters[agency] += 1
                record_id = f"{_PREFIX[agency]}-{counters[agency]:06d}"
                identity, applied = _identity_row(rng, person, agency, chosen)
                town.rows[agency].append(
                    {"record_id": record_id, **identity, **_agency_fields(rng, agency, person)}
                )
                town.truth.append(
                    {
                        "agency": agency,
                        "record_id": record_id,
                        "person_id": person.person_id,
                        "household_id": person.household_id,
                        "twin": str(person.twin).lower(),
                        "corruptions": ";".join(applied),
                    }
                )
    return town


def write_town(town: Town, out_dir: Path) -> list[Path]:
    """Write one CSV per agency and ``truth.csv``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for agency in AGENCIES:
        path = out_dir / f"{agency}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*CANONICAL, *AGENCY_COLUMNS[agency]])
            writer.writeheader()
            writer.writerows(town.rows[agency])
        written.append(path)
    truth = out_dir / "truth.csv"
    with truth.open("w", encoding="utf-8", newline="") as handle:
        columns = ["agency", "record_id", "person_id", "household_id", "twin", "corruptions"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(town.truth)
    written.append(truth)
    return written
