"""A seeded synthetic town: the agency extracts a safeguarding partnership would hold.

``generate_town(seed, people, profile)`` makes young people aged 10 to 24 on
2026-09-01 in households (siblings, about 1-2% twins, and in 1% of households
an unrelated young person who shares an earlier one's name and birthday, half
of them in the same postcode sector), then each agency's rows about them,
with the mistakes real extracts carry, and a truth file saying who is who.
The same arguments always give the same town, byte for byte.

Mistakes and their rates per profile are in :mod:`broker.synth_profiles`.

Whether an agency holds an NHS number or UPN at all is agency practice, not a
mistake, and applies in every profile: schools hold UPNs and seldom NHS
numbers, the police seldom hold either, social care and EDs usually hold NHS
numbers. Given names keep their accents: only family names are varied in form.

Identifiers cannot belong to real people: NHS numbers come from the 999 test
range (past 909,000 people, the unissued 998 range), UPNs carry local
authority code 990, above the codes English authorities use (201-938), and
postcodes are in "NS", which is not a Royal Mail postcode area.
"""

from __future__ import annotations

import csv
import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from adapters.csv import CANONICAL_COLUMNS
from broker.errors import ValidationError
from broker.normalise import nhs_check_digit, upn_check_letter
from broker.synth_names import (
    ASCII_FOLDS,
    HERITAGES,
    KEYBOARD_NEIGHBOURS,
    NICKNAMES,
    STREET_KINDS,
    STREET_STEMS,
    Heritage,
)
from broker.synth_profiles import PROFILES, CorruptionProfile

REFERENCE_DATE = date(2026, 9, 1)
MAX_PEOPLE = 1_000_000
AGENCIES = ("school", "police", "social-care", "ed")
DATASETS = {
    "school": "school-attendance",
    "police": "police-incidents",
    "social-care": "csc-involvement",
    "ed": "ed-attendances",
}
CANONICAL = CANONICAL_COLUMNS
AGENCY_COLUMNS = {
    "school": ("attendance_pct", "persistent_absence", "suspensions_this_year", "excluded",
               "alternative_provision", "sen_support"),
    "police": ("incident_date", "incident_type", "role_in_incident", "missing_episodes_12m",
               "exploitation_concern"),
    "social-care": ("csc_status", "allocated_team", "exploitation_screening", "last_contact_date"),
    "ed": ("attendance_date", "injury_type", "arrival_mode", "safeguarding_referral_made"),
}  # fmt: skip
TRUTH_COLUMNS = ("agency", "record_id", "person_id", "household_id", "twin", "corruptions")
_PREFIX = {"school": "SCH", "police": "POL", "social-care": "CSC", "ed": "ED"}
# How often each agency records an NHS number at all (schools and the police rarely ask).
_HOLDS_NHS = {"school": 0.04, "police": 0.1, "social-care": 0.92, "ed": 0.96}
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters Royal Mail uses in inward codes
_LA_CODE = "990"
_OLDEST, _YOUNGEST = date(2001, 9, 2), date(2016, 9, 1)  # aged 24 and 10 on REFERENCE_DATE


@dataclass(frozen=True, slots=True)
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
    old_address_line: str
    nhs_number: str
    upn: str
    twin: bool
    at_risk: bool
    namesake_of: str | None = None  # an unrelated person with the same name and birthday


@dataclass
class Town:
    """The people, each agency's rows (canonical columns first) and the truth rows."""

    people: list[Person] = field(default_factory=list)
    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    truth: list[dict[str, str]] = field(default_factory=list)


def age_on_reference_date(born: date) -> int:
    """Age in whole years on 2026-09-01."""
    return REFERENCE_DATE.year - born.year - ((born.month, born.day) > (9, 1))


class _Allocator:
    """Identifiers and addresses, unique within the town, in constant time each."""

    def __init__(self, rng: random.Random, people: int) -> None:
        self.rng = rng
        # NHS numbers walk the test range in a seeded order: an affine map with a
        # step coprime to 10**6 visits every suffix once, with no set of those used.
        self.nhs_step = rng.randrange(1, 10**6) | 1
        while self.nhs_step % 5 == 0:
            self.nhs_step += 2
        self.nhs_offset, self.nhs_next = rng.randrange(10**6), 0
        self.schools = people // 7500 + 20  # keeps each school's yearly serials under 1000
        self.serials: dict[tuple[int, int], int] = {}
        streets = [f"{stem} {kind}" for stem in STREET_STEMS for kind in STREET_KINDS]
        rng.shuffle(streets)
        self.streets = streets[: min(len(streets), max(12, people // 45))]
        sectors = [f"NS{d} {s}" for d in range(1, 10) for s in range(1, 10)]
        rng.shuffle(sectors)
        self.sector = [sectors[i % len(sectors)] for i in range(len(self.streets))]
        self.by_sector: dict[str, list[int]] = {}
        for index, sector in enumerate(self.sector):
            self.by_sector.setdefault(sector, []).append(index)
        self.units: dict[tuple[int, int], str] = {}
        self.units_used: set[str] = set()
        self.buildings: dict[tuple[int, int], int] = {}

    def nhs_number(self) -> str:
        while True:
            block, index = divmod(self.nhs_next, 10**6)
            self.nhs_next += 1
            first = f"{999 - block}{(self.nhs_step * index + self.nhs_offset) % 10**6:06d}"
            check = nhs_check_digit(first)
            if check is not None:  # about 1 in 11 prefixes has no valid check digit
                return f"{first}{check}"

    def upn(self, born: date) -> str:
        year = (born.year + 5) % 100  # allocated on entry to reception
        school = self.rng.randrange(self.schools)
        while self.serials.get((school, year), 0) >= 1000:
            school = (school + 1) % self.schools
        serial = self.serials.get((school, year), 0)
        self.serials[(school, year)] = serial + 1
        rest = f"{_LA_CODE}{2000 + school:04d}{year:02d}{serial:03d}"
        return upn_check_letter(rest) + rest

    def address(self, *, home: bool = True, sector: str | None = None) -> tuple[str, str]:
        """A new home (never anyone else's), or with ``home=False`` any previous address.

        With ``sector`` (a postcode sector such as "NS3 5"), a street in that sector.
        """
        rng = self.rng
        streets = self.by_sector.get(sector or "", ()) or range(len(self.streets))
        street, number = rng.choice(streets), rng.randint(1, 160)
        unit_key = (street, (number - 1) // 16)  # about 16 doors share a postcode
        postcode = self.units.get(unit_key)
        if postcode is None:  # a new unit: letters not used by any other unit in the town
            while postcode is None or postcode in self.units_used:
                letters = rng.choice(_INWARD_LETTERS) + rng.choice(_INWARD_LETTERS)
                postcode = f"{self.sector[street]}{letters}"
            self.units[unit_key] = postcode
            self.units_used.add(postcode)
        line = f"{number} {self.streets[street]}"
        if not home:
            return line, postcode
        flats = self.buildings.get((street, number))
        if flats is None and rng.random() < 0.85:
            self.buildings[(street, number)] = 0
            return line, postcode
        flats = (flats or 0) + 1  # a taken house becomes flats rather than a shared address
        self.buildings[(street, number)] = flats
        return f"Flat {flats}, {line}", postcode


_HERITAGE_LIST = list(HERITAGES.values())
_HERITAGE_WEIGHTS = [h.weight for h in _HERITAGE_LIST]


def _given_name(rng: random.Random, heritage: Heritage, sex: str, avoid: set[str]) -> str:
    for _ in range(20):
        # Mixed families and second generations often choose English names.
        pool = heritage if rng.random() < 0.85 else HERITAGES["english"]
        female = sex == "F" or (sex == "X" and rng.random() < 0.5)
        name = rng.choice(pool.female if female else pool.male)
        if name not in avoid:
            return name
    return name


def _at_risk_odds(age: int) -> float:
    """Base chance of exploitation risk by age; it concentrates in the mid-teens."""
    return 0.02 if age < 12 else 0.09 if age < 18 else 0.06 if age < 20 else 0.03


def _people(rng: random.Random, count: int) -> list[Person]:
    alloc = _Allocator(rng, count)
    people: list[Person] = []
    household = 0
    while len(people) < count:
        household += 1
        heritage = rng.choices(_HERITAGE_LIST, _HERITAGE_WEIGHTS)[0]
        family = rng.choice(heritage.family)
        size = min(rng.choices((1, 2, 3, 4), (58, 29, 10, 3))[0], count - len(people))
        namesake = people[rng.randrange(len(people))] if people and rng.random() < 0.01 else None
        # Common names cluster by community: half the namesakes live in the same sector.
        near = namesake.postcode[:-2] if namesake and rng.random() < 0.5 else None
        line, postcode = alloc.address(sector=near)
        while namesake and postcode == namesake.postcode:  # the same sector, not the same unit
            line, postcode = alloc.address(sector=near)
        old_line, old_postcode = alloc.address(home=False)
        while old_postcode == postcode:
            old_line, old_postcode = alloc.address(home=False)
        twins = size >= 2 and namesake is None and rng.random() < 0.035
        # A household under strain raises every child's risk: sibling risk is real.
        risk_factor = 3.0 if rng.random() < 0.15 else 0.65
        births: list[date] = []
        given_names: set[str] = set()
        for index in range(size):
            sex = rng.choices(("F", "M", "X"), (49.5, 49.5, 1))[0]
            given = _given_name(rng, heritage, sex, given_names)
            own_family = family
            if index == 0 and namesake is not None:
                given, own_family, sex = namesake.given_name, namesake.family_name, namesake.sex
                family, born = own_family, namesake.date_of_birth
            elif index == 1 and twins:
                born = births[0]
            else:
                for _ in range(8):  # siblings are born at least ten months apart
                    born = _OLDEST + timedelta(days=rng.randrange((_YOUNGEST - _OLDEST).days + 1))
                    if all(abs((born - other).days) >= 300 for other in births):
                        break
                if index > 0 and rng.random() < 0.12:  # a half- or step-sibling
                    own_family = rng.choice(
                        rng.choices(_HERITAGE_LIST, _HERITAGE_WEIGHTS)[0].family
                    )
            births.append(born)
            given_names.add(given)
            age = age_on_reference_date(born)
            people.append(
                Person(
                    person_id=f"P{len(people) + 1:05d}",
                    household_id=f"H{household:05d}",
                    given_name=given,
                    family_name=own_family,
                    date_of_birth=born,
                    sex=sex,
                    postcode=postcode,
                    old_postcode=old_postcode,
                    address_line=line,
                    old_address_line=old_line,
                    nhs_number=alloc.nhs_number(),
                    upn=alloc.upn(born),
                    twin=twins and index < 2,
                    at_risk=rng.random() < _at_risk_odds(age) * risk_factor,
                    namesake_of=namesake.person_id if index == 0 and namesake else None,
                )
            )
    return people


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _pick(rng: random.Random, weighted: Mapping[str, float]) -> str:
    return rng.choices(tuple(weighted), tuple(weighted.values()))[0]


def _days_ago(rng: random.Random, low: int, high: int) -> str:
    return (REFERENCE_DATE - timedelta(days=rng.randint(low, high))).isoformat()


# Agency-field distributions, each a pair: (the at-risk cohort, everyone else).
# fmt: off
_INCIDENTS = (
    {"violence_with_injury": 2, "possession_of_weapon": 3, "robbery": 2, "drugs_supply": 3,
     "missing_episode": 3, "other": 1},
    {"violence_with_injury": 3, "possession_of_weapon": 0.5, "robbery": 1, "drugs_supply": 0.5,
     "missing_episode": 1.5, "other": 5},
)
_ROLES = ({"suspect": 5, "victim": 4, "witness": 1}, {"victim": 4, "witness": 4, "suspect": 3})
_CHILD_STATUS = (
    {"child_in_need": 35, "child_protection": 30, "looked_after": 25, "early_help": 10},
    {"early_help": 30, "child_in_need": 25, "child_protection": 7, "looked_after": 5, "closed": 33},
)
# Care leavers stay open to the leaving care team up to 25; other adults' cases are closed.
_ADULT_STATUS = ({"looked_after": 4, "closed": 6}, {"looked_after": 1, "closed": 9})
_SCREENING = (
    {"emerging": 15, "moderate": 45, "significant": 40},
    {"none": 88, "emerging": 9, "moderate": 3},
)
_INJURIES = (
    {"sharps": 35, "assault_other": 25, "blunt": 15, "self_harm": 15, "other": 10},
    {"other": 50, "blunt": 20, "assault_other": 12, "self_harm": 10, "sharps": 8},
)
_ARRIVAL = (  # (after a stabbing, otherwise)
    {"ambulance": 50, "police": 25, "self": 20, "other": 5},
    {"ambulance": 25, "police": 5, "self": 60, "other": 10},
)
_LOCALITY = ("North",) * 3 + ("Central",) * 3 + ("South",) * 3  # by district NS1 to NS9
# fmt: on


def _school(rng: random.Random, p: Person, age: int) -> list[dict[str, str]]:
    # Secondary pupils (11-16) are nearly all on a roll; some 10s and 17s are too.
    on_roll = {10: 0.3, 16: 0.75, 17: 0.4}.get(age, 0.96 if 11 <= age <= 15 else 0.0)
    if not (p.at_risk and 11 <= age <= 16) and rng.random() >= on_roll:
        return []
    sen = _flag(rng.random() < (0.4 if p.at_risk else 0.13))
    out = []
    # Dual registration: a pupil also on an alternative provision's roll.
    for index in range(2 if rng.random() < (0.2 if p.at_risk else 0.02) else 1):
        absence = 8 + rng.expovariate(1 / 15) if p.at_risk else rng.expovariate(1 / 5.5)
        pct = round(max(0.0, 100 - absence), 1)
        excluded = rng.random() < (0.15 if p.at_risk else 0.003)
        suspensions = rng.choice((1, 2, 3, 4, 6)) if p.at_risk and rng.random() < 0.7 else 0
        provision = index == 1 or excluded or rng.random() < (0.25 if p.at_risk else 0.01)
        out.append(
            {
                "attendance_pct": f"{pct:.1f}",
                "persistent_absence": _flag(pct < 90),
                "suspensions_this_year": str(suspensions + (rng.random() < 0.06)),
                "excluded": _flag(excluded),
                "alternative_provision": _flag(provision),
                "sen_support": sen,
            }
        )
    return out


def _police(rng: random.Random, p: Person, age: int) -> list[dict[str, str]]:
    risk = 0 if p.at_risk else 1
    if not p.at_risk and rng.random() >= (0.12 if age < 14 else 0.28 if age < 18 else 0.3):
        return []
    count = 2 if rng.random() < (0.35 if p.at_risk else 0.06) else 1
    incidents = [_pick(rng, _INCIDENTS[risk]) for _ in range(count)]
    episodes = rng.randint(1, 10) if p.at_risk and rng.random() < 0.6 else 0
    # Person-level columns agree across that person's rows.
    episodes = max(episodes, incidents.count("missing_episode"))
    concern = _flag(rng.random() < (0.75 if p.at_risk else 0.02))
    return [
        {
            "incident_date": _days_ago(rng, 0, 364),
            "incident_type": kind,
            "role_in_incident": (
                "missing_person" if kind == "missing_episode" else _pick(rng, _ROLES[risk])
            ),
            "missing_episodes_12m": str(episodes),
            "exploitation_concern": concern,
        }
        for kind in incidents
    ]


def _social_care(rng: random.Random, p: Person, age: int) -> list[dict[str, str]]:
    risk = 0 if p.at_risk else 1
    if not p.at_risk and rng.random() >= (0.24 if age < 18 else 0.1):
        return []
    status = _pick(rng, (_ADULT_STATUS if age >= 18 else _CHILD_STATUS)[risk])
    team = f"Northshire {_LOCALITY[int(p.postcode[2]) - 1]} Locality Team"
    if status == "looked_after":
        team = "Northshire Leaving Care Team" if age >= 18 else "Northshire Children in Care Team"
    elif p.at_risk and rng.random() < 0.5:
        team = "Northshire Exploitation and Missing Team"
    closed = status == "closed"
    row = {
        "csc_status": status,
        "allocated_team": "" if closed else team,
        "exploitation_screening": _pick(rng, _SCREENING[risk]),
        "last_contact_date": _days_ago(rng, 90, 730) if closed else _days_ago(rng, 0, 89),
    }
    if rng.random() < 0.03:  # an earlier, closed case record that was never merged
        return [row, {**row, "csc_status": "closed", "allocated_team": "",
                      "last_contact_date": _days_ago(rng, 365, 1500)}]  # fmt: skip
    return [row]


def _ed(rng: random.Random, p: Person, *, force: bool = False) -> list[dict[str, str]]:
    if not force and rng.random() >= (0.6 if p.at_risk else 0.11):
        return []
    rows = []
    for _ in range(2 if rng.random() < (0.3 if p.at_risk else 0.05) else 1):
        injury = _pick(rng, _INJURIES[0 if p.at_risk else 1])
        referral = 0.6 if p.at_risk else 0.5 if injury in ("sharps", "self_harm") else 0.08
        rows.append(
            {
                "attendance_date": _days_ago(rng, 0, 364),
                "injury_type": injury,
                "arrival_mode": _pick(rng, _ARRIVAL[0 if injury == "sharps" else 1]),
                "safeguarding_referral_made": _flag(rng.random() < referral),
            }
        )
    return rows


def _enrol(rng: random.Random, p: Person) -> dict[str, list[dict[str, str]]]:
    """Each agency's own columns for the rows it holds about one person (often none)."""
    age = age_on_reference_date(p.date_of_birth)
    held = {
        "school": _school(rng, p, age),
        "police": _police(rng, p, age),
        "social-care": _social_care(rng, p, age),
        "ed": _ed(rng, p),
    }
    # The at-risk cohort is known to police and social care always; one not in school
    # is seen in ED, so every one of them is known to three agencies or more.
    if p.at_risk and not held["school"] and not held["ed"]:
        held["ed"] = _ed(rng, p, force=True)
    return held


def _typo(rng: random.Random, name: str) -> str:
    """A keying slip on a letter after the first (people seldom get the first wrong)."""
    spots = [i for i, ch in enumerate(name) if ch.isalpha()][1:]
    for _ in range(8 if spots else 0):
        at = rng.choice(spots)
        kind, ch = rng.choice(("change", "drop", "double", "swap")), name[at]
        if kind == "change" and ch.lower() in KEYBOARD_NEIGHBOURS:
            near = rng.choice(KEYBOARD_NEIGHBOURS[ch.lower()])
            typed = name[:at] + (near.upper() if ch.isupper() else near) + name[at + 1 :]
        elif kind == "drop":
            typed = name[:at] + name[at + 1 :]
        elif kind == "swap" and name[at - 1].isalpha():
            typed = name[: at - 1] + ch + name[at - 1] + name[at + 1 :]
        else:
            typed = name[:at] + ch + name[at:]
        if typed != name:
            return typed
    return name + name[-1]


def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", "".join(ASCII_FOLDS.get(c, c) for c in name))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _names(
    rng: random.Random, p: Person, rates: CorruptionProfile, applied: list[str]
) -> tuple[str, str]:
    given, family = p.given_name, p.family_name
    if given in NICKNAMES and rng.random() < rates.nickname:
        given = rng.choice(NICKNAMES[given])
        applied.append("nickname")
    if rng.random() < rates.name_typo:
        if rng.random() < 0.5:
            given = _typo(rng, given)
        else:
            family = _typo(rng, family)
        applied.append("name_typo")
    if not family.isascii() and rng.random() < rates.diacritics_dropped:
        family = _ascii(family)
        applied.append("diacritics_dropped")
    if "'" in family and rng.random() < rates.apostrophe_variant:
        family = family.replace("'", rng.choice(("", " ", "\u2019", "`")))
        applied.append("apostrophe_variant")
    if "-" in family and rng.random() < rates.hyphen_variant:
        first, _, second = family.partition("-")
        family = rng.choice((f"{first} {second}", first + second, first, second))
        applied.append("hyphen_variant")
    if rng.random() < rates.name_swap:
        given, family = family, given
        applied.append("name_swap")
    return given, family


def _birth(rng: random.Random, born: date, rates: CorruptionProfile, applied: list[str]) -> str:
    if born.day <= 12 and born.day != born.month and rng.random() < rates.dob_swap:
        born = date(born.year, born.day, born.month)
        applied.append("dob_swap")
    if rng.random() < rates.dob_typo:
        born += timedelta(days=rng.choice((-1, 1)))
        applied.append("dob_typo")
    if rng.random() < rates.dob_missing:
        applied.append("dob_missing")
        return ""
    return born.isoformat()


_STREET_SHORT = {"Road": "Rd", "Street": "St", "Lane": "Ln", "Close": "Cl", "Avenue": "Ave",
                 "Court": "Ct", "Gardens": "Gdns", "Crescent": "Cres", "Drive": "Dr",
                 "Terrace": "Ter", "Place": "Pl", "Grove": "Gr"}  # fmt: skip


def address_variant(rng: random.Random, line: str) -> str:
    """The same address line as another system writes it; always different from ``line``."""
    flat, _, house = line.rpartition(", ") if line.startswith("Flat ") else ("", "", line)
    number, _, street = house.partition(" ")
    stem, _, kind = street.rpartition(" ")
    short = f"{stem} {_STREET_SHORT.get(kind, kind)}"
    houses = [f"{number}, {street}", f"{number} {short}"]
    choices = [line.upper(), *houses]
    if flat:  # the flat is always kept: without it the line would be another household's
        choices = [line.upper(), *(f"{flat}, {h}" for h in houses)]
        choices += [f"{flat.removeprefix('Flat ')}/{house}", f"{flat} {house}", f"{house} {flat}"]
    return rng.choice([c for c in choices if c != line] or [line.upper()])


def _sex(rng: random.Random, sex: str, rates: CorruptionProfile, applied: list[str]) -> str:
    if rng.random() < rates.sex_missing:
        applied.append("sex_missing")
        return ""
    if rng.random() < rates.sex_miscoded:
        applied.append("sex_miscoded")
        return {"F": rng.choice("MX"), "M": rng.choice("FX"), "X": rng.choice("FM")}[sex]
    return sex


def _nhs(
    rng: random.Random, p: Person, agency: str, rates: CorruptionProfile, applied: list[str]
) -> str:
    if rng.random() >= _HOLDS_NHS[agency]:
        return ""
    if rng.random() < rates.nhs_missing:
        applied.append("nhs_missing")
        return ""
    nhs = p.nhs_number
    spots = [i for i in range(8) if nhs[i] != nhs[i + 1]]
    if spots and rng.random() < rates.nhs_transposed:
        # Swapping digits a, b at weights w, w-1 moves the weighted sum by a-b, never
        # a multiple of 11, so the check digit always fails.
        at = rng.choice(spots)
        nhs = nhs[:at] + nhs[at + 1] + nhs[at] + nhs[at + 2 :]
        applied.append("nhs_transposed")
    return nhs


def _identity(
    rng: random.Random, p: Person, agency: str, rates: CorruptionProfile
) -> tuple[dict[str, str], list[str]]:
    """The canonical columns as this agency recorded them, and the mistakes made."""
    applied: list[str] = []
    given, family = _names(rng, p, rates, applied)
    born = _birth(rng, p.date_of_birth, rates, applied)
    line, postcode = p.address_line, p.postcode
    if rng.random() < rates.postcode_old:
        line, postcode = p.old_address_line, p.old_postcode
        applied.append("postcode_old")
    if rng.random() < rates.address_variant:
        line = address_variant(rng, line)
        applied.append("address_variant")
    if rng.random() < rates.postcode_missing:
        postcode = ""
        applied.append("postcode_missing")
    if postcode and rng.random() < rates.postcode_format:
        outward, inward = postcode.split(" ")
        postcode = rng.choice(
            (
                postcode.lower(),
                outward + inward,
                f"{outward}  {inward}",
                postcode + " ",
                f"{outward.lower()}{inward}",
            )
        )
        applied.append("postcode_format")
    nhs = _nhs(rng, p, agency, rates, applied)
    sex = _sex(rng, p.sex, rates, applied)
    row = {
        "given_name": given,
        "family_name": family,
        "date_of_birth": born,
        "sex": sex,
        "postcode": postcode,
        "address_line": line,
        "nhs_number": nhs,
        "upn": p.upn if agency == "school" else "",
    }
    return row, applied


def generate_town(seed: int = 1, people: int = 300, profile: str = "moderate") -> Town:
    """Make the town's people and every agency's extract, deterministically.

    The same (seed, people, profile) always gives the same town: only
    ``random.Random(seed)`` is used, never the clock. Raises ValidationError for
    an unknown profile or a people count outside 1 to 1,000,000.
    """
    if profile not in PROFILES:
        choices = ", ".join(PROFILES)
        raise ValidationError(f"profile must be one of {choices}", code="profile_unknown")
    if not 1 <= people <= MAX_PEOPLE:
        raise ValidationError("people must be between 1 and 1,000,000", code="people_invalid")
    rng = random.Random(seed)
    rates = PROFILES[profile]
    town = Town(people=_people(rng, people), rows={agency: [] for agency in AGENCIES})
    held: dict[str, list[tuple[Person, dict[str, str]]]] = {agency: [] for agency in AGENCIES}
    for person in town.people:
        for agency, rows in _enrol(rng, person).items():
            held[agency].extend((person, row) for row in rows)
    for agency in AGENCIES:
        # Shuffled so that record order says nothing about who is who across agencies.
        rng.shuffle(held[agency])
        for number, (person, own) in enumerate(held[agency], start=1):
            record_id = f"{_PREFIX[agency]}-{number:06d}"
            identity, applied = _identity(rng, person, agency, rates)
            town.rows[agency].append({"record_id": record_id, **identity, **own})
            town.truth.append(
                {
                    "agency": agency,
                    "record_id": record_id,
                    "person_id": person.person_id,
                    "household_id": person.household_id,
                    "twin": _flag(person.twin),
                    "corruptions": ";".join(applied),
                }
            )
    return town


def write_town(town: Town, out_dir: Path) -> list[Path]:
    """Write ``school.csv``, ``police.csv``, ``social-care.csv``, ``ed.csv`` and ``truth.csv``.

    Creates ``out_dir`` if needed and overwrites those files; returns the paths
    in that order. Files are UTF-8 without a BOM, CRLF line endings (the csv
    module's default), canonical columns first, blank cells for values not held.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    tables = [(f"{a}.csv", (*CANONICAL, *AGENCY_COLUMNS[a]), town.rows[a]) for a in AGENCIES]
    tables.append(("truth.csv", TRUTH_COLUMNS, town.truth))
    for name, columns, rows in tables:
        path = out_dir / name
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written
