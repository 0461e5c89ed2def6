"""How linkage is configured: the cascade of keys, the thresholds, EM and the chaining guard.

A ``LinkageConfig`` is strict: an unknown field, a key of no declared strength
or thresholds out of order is a ``broker.errors.ValidationError`` with a stable
code and the location of the problem (the field path and, for a YAML file, the
line). ``DEFAULT_CONFIG`` is what an agreement gets when its linkage section
declares nothing.

Strengths: a ``strong`` key (a valid NHS number, a UPN) is decisive on its own
unless a strong disagreement contradicts it; ``medium`` and ``weak`` keys find
candidates (blocking) and name the rule a pair shares, but the probabilistic
model decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.errors import Location, Problem, ValidationError

Strength = Literal["strong", "medium", "weak"]
STRENGTHS: tuple[str, ...] = ("strong", "medium", "weak")

#: What a key may combine: identifiers, or a coarser form of one (the encoder
#: in ``broker.link.encode`` makes each).
Part = Literal[
    "nhs_number",
    "upn",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "given_initial",
    "given_phonetic",
    "family_phonetic",
    "given_variant",
    "sorted_names",
    "date_of_birth_swapped",
    "birth_year",
    "birth_year_month",
    "postcode_district",
    "postcode_sector",
]

_KEY_NAME = r"^[a-z][a-z0-9_]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CascadeKey(_Strict):
    """One deterministic key: a keyed hash over ``parts``, with its declared strength."""

    name: str = Field(pattern=_KEY_NAME)
    parts: tuple[Part, ...] = Field(min_length=1, max_length=8)
    strength: Strength
    # Whether records sharing this key are compared (blocking). Strong keys
    # always are; a weak key may exist only to name a rule.
    blocking: bool = True


class Cascade(_Strict):
    """The keys, strongest first; names are unique."""

    keys: tuple[CascadeKey, ...] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _unique(self) -> Cascade:
        seen: set[str] = set()
        for key in self.keys:
            if key.name in seen:
                raise ValueError(f"key name '{key.name}' is declared twice")
            seen.add(key.name)
        return self

    def strength_of(self, name: str | None) -> Strength | None:
        """The declared strength of the key called ``name``, or None if there is none."""
        for key in self.keys:
            if key.name == name:
                return key.strength
        return None

    @property
    def strong(self) -> frozenset[str]:
        """The names of the decisive keys."""
        return frozenset(k.name for k in self.keys if k.strength == "strong")


def _key(name: str, strength: Strength, *parts: str) -> CascadeKey:
    return CascadeKey.model_validate({"name": name, "strength": strength, "parts": parts})


DEFAULT_CASCADE = Cascade(
    keys=(
        _key("nhs", "strong", "nhs_number"),
        _key("upn", "strong", "upn"),
        _key(
            "name_dob_postcode", "medium", "given_name", "family_name", "date_of_birth", "postcode"
        ),
        _key(
            "variant_dob_postcode",
            "medium",
            "given_variant",
            "family_name",
            "date_of_birth",
            "postcode",
        ),
        _key("swapped_names_dob_postcode", "medium", "sorted_names", "date_of_birth", "postcode"),
        _key("name_dob", "medium", "given_name", "family_name", "date_of_birth"),
        _key("phonetic_dob", "weak", "given_phonetic", "family_phonetic", "date_of_birth"),
        _key("family_swapped_dob", "weak", "family_phonetic", "date_of_birth_swapped"),
        _key("given_dob_district", "weak", "given_phonetic", "date_of_birth", "postcode_district"),
        _key(
            "initial_month_sector",
            "weak",
            "given_initial",
            "family_phonetic",
            "birth_year_month",
            "postcode_sector",
        ),
    )
)


class Thresholds(_Strict):
    """Posterior probabilities: ``match_at`` or above links; ``possible_at`` or above waits."""

    match_at: float = Field(default=0.995, gt=0.0, lt=1.0)
    possible_at: float = Field(default=0.5, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.match_at > self.possible_at:
            raise ValueError("thresholds out of order: match_at must be above possible_at")
        return self


class EMSettings(_Strict):
    """Expectation-maximisation without labels, seeded so a fit is repeatable."""

    max_iterations: int = Field(default=100, ge=1, le=10_000)
    tolerance: float = Field(default=1e-6, gt=0.0, lt=1.0)
    # Initial share of candidate pairs that are matches (lambda); EM moves it.
    match_prior: float = Field(default=0.1, gt=0.0, lt=1.0)
    # Initial m probabilities (disagree, near, agree) of a field among matches;
    # u probabilities among non-matches are seeded from random pairs.
    m_prior: tuple[float, float, float] = (0.03, 0.07, 0.90)
    u_prior: tuple[float, float, float] = (0.85, 0.10, 0.05)
    # Random record pairs compared to estimate u (0: estimate u by EM instead).
    u_sample_pairs: int = Field(default=20_000, ge=0, le=10_000_000)
    # Pseudo-counts added to every level so no probability is ever 0 or 1.
    pseudo_count: float = Field(default=1.0, gt=0.0, le=1000.0)
    seed: int = 0

    @model_validator(mode="after")
    def _distributions(self) -> EMSettings:
        for name, dist in (("m_prior", self.m_prior), ("u_prior", self.u_prior)):
            if min(dist) <= 0.0 or abs(sum(dist) - 1.0) > 1e-6:
                raise ValueError(f"{name} must be three positive probabilities summing to 1")
        if not (self.m_prior[2] > self.u_prior[2] and self.m_prior[0] < self.u_prior[0]):
            raise ValueError("m_prior must favour agreement more than u_prior does")
        return self


class GuardSettings(_Strict):
    """Which strong disagreements keep two records out of one cluster (the chaining guard)."""

    different_nhs: bool = True
    different_upn: bool = True
    # Different given names at the same household: twins and siblings.
    household_given: bool = True
    # Different dates of birth and different given names anywhere.
    dob_and_given: bool = True


class LinkageConfig(_Strict):
    """Everything linkage can be told; see the module docstring for the rules."""

    cascade: Cascade = DEFAULT_CASCADE
    thresholds: Thresholds = Thresholds()
    em: EMSettings = EMSettings()
    guard: GuardSettings = GuardSettings()
    # Weight (log2 odds) given to a pair sharing a strong key with no strong
    # disagreement, when the model alone would give less.
    decisive_weight: float = Field(default=20.0, ge=1.0, le=60.0)
    # Whether ScoredPairs of the non-match band are kept in a LinkResult.
    keep_non_matches: bool = False


DEFAULT_CONFIG = LinkageConfig()


_CODES = {
    "extra_forbidden": "linkage_config_unknown_field",
    "missing": "linkage_config_missing_field",
}


def _code(error: Mapping[str, Any]) -> str:
    loc = tuple(str(p) for p in error.get("loc", ()))
    message = str(error.get("msg", ""))
    if "out of order" in message:
        return "linkage_thresholds_out_of_order"
    if loc and loc[-1] == "strength":
        return "linkage_key_no_strength"
    return _CODES.get(str(error.get("type")), "linkage_config_invalid")


def config_from_mapping(
    data: Any, *, file: str | None = None, lines: Mapping[tuple[str, ...], int] | None = None
) -> LinkageConfig:
    """Validate ``data`` as a ``LinkageConfig``; ValidationError naming each problem's place."""
    if not isinstance(data, Mapping):
        raise ValidationError(
            "a linkage configuration must be a mapping of settings; see docs for the fields",
            code="linkage_config_invalid",
            location=Location(file=file, line=1 if file else None),
        )
    try:
        return LinkageConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        problems: list[Problem] = []
        for error in exc.errors(include_url=False, include_input=False):
            path = tuple(str(p) for p in error["loc"])
            line = _nearest_line(path, lines) if lines is not None else None
            where = Location(field=".".join(path) or None, file=file, line=line)
            code = _code(error)
            problems.append(Problem(code, _message(code, str(error["msg"])), where))
        first = problems[0]
        raise ValidationError(
            first.message, code=first.code, location=first.location, problems=tuple(problems)
        ) from None


def _message(code: str, detail: str) -> str:
    if code == "linkage_config_unknown_field":
        return "unknown linkage setting; remove it or check its spelling"
    if code == "linkage_key_no_strength":
        return "every cascade key must declare a strength: strong, medium or weak"
    if code == "linkage_thresholds_out_of_order":
        return "match_at must be above possible_at, both between 0 and 1"
    # pydantic's message names the rule, never the value (include_input=False).
    return f"invalid linkage setting: {detail}"


def _nearest_line(path: tuple[str, ...], lines: Mapping[tuple[str, ...], int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _line_map(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _line_map(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, str(index)), out)


def load_linkage_config(path: str | Path) -> LinkageConfig:
    """Read a YAML linkage configuration; ValidationError with the file line of each problem."""
    source = Path(path)
    name = source.name
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ValidationError(
            "cannot read the linkage configuration; check the path and that it is UTF-8",
            code="linkage_config_unreadable",
            location=Location(file=name),
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ValidationError(
            "the linkage configuration is not valid YAML; fix the syntax at the line given",
            code="linkage_config_not_yaml",
            location=Location(file=name, line=mark.line + 1 if mark is not None else None),
        ) from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return config_from_mapping({} if data is None else data, file=name, lines=lines)
