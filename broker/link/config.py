"""How linkage is configured: the cascade of keys, the thresholds, EM and the chaining guard.

A ``LinkageConfig`` is strict: an unknown field, a key of no declared strength
or thresholds out of order is a ``broker.errors.ValidationError`` with a stable
code and the location of the problem (the field path and, for a YAML file, the
line). ``DEFAULT_CONFIG`` is what an agreement gets when its linkage section
declares nothing.

The cascade is declared in the shape of ``broker.link.encode`` (name, forms,
strength 1-3) and checked by its ``validate_cascade``. A key of strength 3 (a
valid NHS number, a UPN) is decisive on its own unless a strong disagreement
contradicts it; keys of strength 2 and 1 name the rule a pair shares, and the
probabilistic model decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.errors import Location, Problem, ValidationError
from broker.link.encode import (
    DEFAULT_CASCADE,
    IDENTITY_STRENGTH,
    Cascade,
    CascadeKey,
    validate_cascade,
)

#: Declared strengths (``broker.link.encode``): 3 a national identifier, decisive
#: on its own; 2 an exact combination only one person shares in practice; 1 a
#: fuzzy combination, evidence and not proof.
Strength = Literal[1, 2, 3]
DECISIVE_STRENGTH = IDENTITY_STRENGTH

_KEY_NAME = r"^[a-z][a-z0-9_]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CascadeKeySpec(_Strict):
    """One deterministic key as declared: a keyed hash over ``forms``, with its strength.

    ``forms`` are those ``broker.link.encode.FORMS`` names (``given``,
    ``dob_year_month``, ``postcode_sector``...).
    """

    name: str = Field(pattern=_KEY_NAME)
    forms: tuple[str, ...] = Field(min_length=1, max_length=8)
    strength: Strength


def _spec(key: CascadeKey) -> CascadeKeySpec:
    return CascadeKeySpec.model_validate(
        {"name": key.name, "forms": key.forms, "strength": key.strength}
    )


#: The default cascade, as the encoder declares it.
DEFAULT_CASCADE_SPEC: tuple[CascadeKeySpec, ...] = tuple(_spec(k) for k in DEFAULT_CASCADE)


def to_cascade(specs: Sequence[CascadeKeySpec]) -> Cascade:
    """The encoder's ``Cascade`` for declared keys; ValueError saying which key is wrong."""
    return validate_cascade(tuple(CascadeKey(k.name, k.forms, k.strength) for k in specs))


class Thresholds(_Strict):
    """Posterior probabilities: ``match_at`` or above links; ``possible_at`` or above waits."""

    match_at: float = Field(default=0.85, gt=0.0, lt=1.0)
    possible_at: float = Field(default=0.3, gt=0.0, lt=1.0)

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
    # Random record pairs compared to seed u (0: start u from u_prior).
    u_sample_pairs: int = Field(default=5_000, ge=0, le=10_000_000)
    # Hold u at its random-pair estimate. Off by default: the non-matches among
    # blocked candidates (siblings, namesakes) agree far more than random pairs,
    # and weights held to random pairs overrate them (measured: precision fell
    # from 0.998 to 0.96 on the moderate synthetic town).
    hold_u: bool = False
    # Fix the posterior of pairs whose NHS numbers or UPNs are compared: agree
    # (with no strong disagreement) a match, differ a non-match. See model.py.
    anchor_identifiers: bool = True
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
    # A record linked to two records that may not share a cluster, by weights
    # within this many bits, is ambiguous (a namesake): neither link is made.
    # None turns the check off.
    ambiguity_margin: float | None = Field(default=1.0, ge=0.0, le=60.0)
    # Two records whose own comparison the model gives less than this match
    # probability never share a cluster, however a third record links them
    # (a record with only a name joining two different children). None: off.
    min_pair_probability: float | None = Field(default=0.01, gt=0.0, lt=1.0)


class LinkageConfig(_Strict):
    """Everything linkage can be told; see the module docstring for the rules."""

    cascade: tuple[CascadeKeySpec, ...] = Field(default=DEFAULT_CASCADE_SPEC, min_length=1)
    thresholds: Thresholds = Thresholds()
    em: EMSettings = EMSettings()
    guard: GuardSettings = GuardSettings()
    # Weight (log2 odds) given to a pair sharing a strong key with no strong
    # disagreement, when the model alone would give less.
    decisive_weight: float = Field(default=20.0, ge=1.0, le=60.0)
    # A pair with no date of birth, NHS number or UPN compared, and no full
    # postcode agreeing, is at most possible.
    require_dob_or_identifier: bool = True
    # Whether ScoredPairs of the non-match band are kept in a LinkResult.
    keep_non_matches: bool = False

    @model_validator(mode="after")
    def _cascade_valid(self) -> LinkageConfig:
        try:
            to_cascade(self.cascade)
        except ValueError as exc:
            raise ValueError(f"cascade invalid: {exc}") from None
        return self

    def encoder_cascade(self) -> Cascade:
        """The cascade in the shape ``RecordEncoder`` and ``make_comparer`` take."""
        return to_cascade(self.cascade)

    @property
    def strong_rules(self) -> frozenset[str]:
        """The names of the decisive keys (strength 3)."""
        return frozenset(k.name for k in self.cascade if k.strength == DECISIVE_STRENGTH)

    def with_agreement(
        self,
        cascade: Sequence[CascadeKeySpec] | None,
        thresholds: Thresholds | None,
    ) -> LinkageConfig:
        """This configuration with what an agreement's linkage section declares (None: keep)."""
        update: dict[str, Any] = {}
        if cascade is not None:
            update["cascade"] = tuple(cascade)
        if thresholds is not None:
            update["thresholds"] = thresholds
        return LinkageConfig.model_validate({**self.model_dump(), **update})


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
    if "cascade invalid" in message:
        return "linkage_cascade_invalid"
    if len(loc) > 1 and loc[0] == "cascade" and loc[-1] == "strength":
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
        return (
            "every cascade key must declare a strength: 3 (a national identifier), "
            "2 (an exact combination) or 1 (fuzzy)"
        )
    if code == "linkage_cascade_invalid":
        return "cascade invalid: " + detail.split("cascade invalid: ", 1)[-1]
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
