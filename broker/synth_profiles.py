"""Mistake profiles for the synthetic town: which errors agency extracts carry, and how often.

Mistakes are drawn per record, never applied to the truth, so one person can
look different to each agency. Rates are per record ("clean" has all zero);
"if" rates apply only where the mistake is possible. They are assumptions,
reasoned in the comments on :class:`CorruptionProfile`, not measurements of
any real extract, and are not tuned to make linkage look good.

| mistake            | moderate | hard  | what it does |
| ------------------ | -------- | ----- | ------------ |
| name_typo          | 0.03     | 0.06  | a letter of a name changed, dropped, doubled, swapped |
| nickname           | 0.05 if  | 0.10 if | a short form (Liv, Mo) for a name that has one |
| diacritics_dropped | 0.50 if  | 0.80 if | family name without accents (Wójcik as Wojcik) |
| apostrophe_variant | 0.30 if  | 0.50 if | O'Brien as OBrien, O Brien, O’Brien (normalises away) |
| hyphen_variant     | 0.30 if  | 0.50 if | Smith-Jones as Smith Jones, SmithJones, Smith, Jones |
| name_swap          | 0.01     | 0.03  | given and family names in each other's column |
| dob_swap           | 0.02 if  | 0.05 if | day and month swapped (only where both are 12 or less) |
| dob_typo           | 0.005    | 0.02  | day of birth one out |
| postcode_old       | 0.08     | 0.15  | the previous address (line and postcode) |
| postcode_missing   | 0.03     | 0.08  | postcode not recorded |
| postcode_format    | 0.20     | 0.40  | case or spacing variant; not an error, normalises away |
| nhs_missing        | 0.08 if  | 0.20 if | NHS number blank where the agency holds one |
| nhs_transposed     | 0.005 if | 0.02 if | adjacent digits swapped; always fails the check digit |
| address_variant    | 0.15     | 0.30  | the address line written another way (Rd, 3/12) |
| dob_missing        | 0.01     | 0.03  | date of birth not recorded |
| sex_missing        | 0.02     | 0.05  | sex not recorded (blank) |
| sex_miscoded       | 0.003    | 0.01  | F and M exchanged, or a known sex recorded as X |

The population, not the extracts, holds the other hard cases, the same in
every profile (``broker.synth``): twins in about 3.5% of households of two or
more; siblings, with half- and step-siblings of another family name; and in
1% of households a young person who shares the given name, family name and
date of birth of an unrelated earlier one, half of them living in the same
postcode sector. That is far above the rate chance gives (two of the town's
people share a name and birthday only when the name is common); it is there
on purpose, so that the strangers a real partnership will meet a few times
are met often enough to count, and it makes the profiles harder, not easier.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from broker.errors import ValidationError


@dataclass(frozen=True)
class CorruptionProfile:
    """Per-record probability of each mistake, in the order they are applied."""

    # Keying slips run at a few per cent of names in UK administrative data;
    # with two names a record, 3% a record is about 1.5% a name.
    name_typo: float = 0.0
    # Police and ED staff write the name a young person gives; only about a
    # third of given names have a common short form, so the overall rate is lower.
    nickname: float = 0.0
    # Many case-management systems and keyboards drop accents; given only when
    # the family name has one, so half of those is realistic, not extreme.
    diacritics_dropped: float = 0.0
    # O'Brien is typed three or four ways across systems; only where there is one.
    apostrophe_variant: float = 0.0
    # Double-barrelled surnames are often shortened to one half or de-hyphenated.
    hyphen_variant: float = 0.0
    # Given and family swapped, mostly for names unfamiliar to the person keying.
    name_swap: float = 0.0
    # Dates keyed by hand in US order; possible only for about a third of dates.
    dob_swap: float = 0.0
    # A day mistyped by one; rarer than a swap because it is not a systematic habit.
    dob_typo: float = 0.0
    # Young people at risk move often (care placements, sofa-surfing); 5-10% of
    # records holding a previous address is the usual range for this cohort.
    postcode_old: float = 0.0
    # No fixed abode, or not asked (an ED at 3am, a stop in the street).
    postcode_missing: float = 0.0
    # Lower case, no space, double space: not an error, shown to test normalisation.
    postcode_format: float = 0.0
    # The agency normally records it but this record lacks it (unregistered, not traced).
    nhs_missing: float = 0.0
    # Two adjacent digits swapped by hand; the modulus 11 check always catches it.
    nhs_transposed: float = 0.0
    # Free-text address lines differ between systems far more than postcodes do:
    # "Rd" for "Road", "3/12" for "Flat 3, 12", capitals, a comma dropped. Any
    # record's line may be written so; the postcode is untouched by this mistake.
    address_variant: float = 0.0
    # EDs record unknown or unconscious patients with no date of birth, and police
    # stops of someone who will not give one leave it blank; about 1% of such
    # records in administrative extracts, more in poorer ones.
    dob_missing: float = 0.0
    # Sex is optional in several case-management systems and not asked at a stop.
    sex_missing: float = 0.0
    # A keying slip between F and M, or a young person's stated gender recorded in
    # one agency as X where another holds their sex at birth.
    sex_miscoded: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            if not 0.0 <= getattr(self, item.name) <= 1.0:
                raise ValidationError(f"rate '{item.name}' must be between 0 and 1")


CORRUPTIONS: tuple[str, ...] = tuple(item.name for item in fields(CorruptionProfile))
PROFILES: dict[str, CorruptionProfile] = {
    "clean": CorruptionProfile(),
    "moderate": CorruptionProfile(
        name_typo=0.03, nickname=0.05, diacritics_dropped=0.5, apostrophe_variant=0.3,
        hyphen_variant=0.3, name_swap=0.01, dob_swap=0.02, dob_typo=0.005, postcode_old=0.08,
        postcode_missing=0.03, postcode_format=0.2, nhs_missing=0.08, nhs_transposed=0.005,
        address_variant=0.15, dob_missing=0.01, sex_missing=0.02, sex_miscoded=0.003,
    ),
    "hard": CorruptionProfile(
        name_typo=0.06, nickname=0.1, diacritics_dropped=0.8, apostrophe_variant=0.5,
        hyphen_variant=0.5, name_swap=0.03, dob_swap=0.05, dob_typo=0.02, postcode_old=0.15,
        postcode_missing=0.08, postcode_format=0.4, nhs_missing=0.2, nhs_transposed=0.02,
        address_variant=0.3, dob_missing=0.03, sex_missing=0.05, sex_miscoded=0.01,
    ),
}  # fmt: skip
