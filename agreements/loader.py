"""Reading agreement files: YAML in, a validated Agreement out, or every problem at once.

Problems carry the file, line and column of the offending node, found by
walking the composed YAML tree along the path pydantic or the cross-reference
checks report.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from agreements.models import Agreement, Dataset, FieldSpec, Purpose, ReleasedField
from broker.errors import AgreementError, Location, Problem

MAX_AGREEMENT_BYTES = 1024 * 1024
MAX_NESTING = 32

PathPart = str | int


def load_agreement(path: Path) -> Agreement:
    """Read and validate one agreement file; raises AgreementError listing every problem."""
    try:
        size = path.stat().st_size
    except OSError:
        raise AgreementError(
            "agreement file could not be read", location=Location(file=str(path))
        ) from None
    if size > MAX_AGREEMENT_BYTES:
        raise AgreementError(
            f"agreement file is larger than {MAX_AGREEMENT_BYTES} bytes",
            location=Location(file=str(path)),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise AgreementError(
            "agreement file is not readable UTF-8 text", location=Location(file=str(path))
        ) from None
    return parse_agreement(text, source=str(path))


def parse_agreement(text: str, *, source: str = "<agreement>") -> Agreement:
    """Validate agreement YAML held in memory; ``source`` names it in problems."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        location = Location(file=source)
        if mark is not None:
            location = Location(file=source, line=mark.line + 1, column=mark.column + 1)
        raise AgreementError("agreement is not valid YAML", location=location) from None
    if node is None:
        raise AgreementError("agreement file is empty", location=Location(file=source))
    structural = list(_structural_problems(node, source))
    if structural:
        raise _rejected(structural, source)
    document = yaml.safe_load(text)
    try:
        agreement = Agreement.model_validate(document)
    except PydanticValidationError as exc:
        problems = [
            Problem(
                code="agreement_invalid",
                message=f"{_dotted(err['loc'])}: {err['msg']}",
                location=_locate(node, err["loc"], source),
            )
            for err in exc.errors()
        ]
        raise _rejected(problems, source) from None
    references = [
        Problem("agreement_invalid", f"{_dotted(where)}: {message}", _locate(node, where, source))
        for where, message in _reference_problems(agreement)
    ]
    if references:
        raise _rejected(references, source)
    return agreement


def _rejected(problems: Sequence[Problem], source: str) -> AgreementError:
    first = problems[0]
    noun = "problem" if len(problems) == 1 else "problems"
    return AgreementError(
        f"agreement has {len(problems)} {noun}; first: {first.message}",
        location=first.location if first.location.file else Location(file=source),
        problems=tuple(problems),
    )


def _dotted(path: Iterable[PathPart]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _structural_problems(
    node: yaml.Node, source: str, depth: int = 0, reached: dict[int, int] | None = None
) -> Iterable[Problem]:
    """Absurd nesting and duplicate keys, which safe_load would silently accept.

    An alias makes one node reachable along many paths ("billion laughs"), so a node
    is walked again only when reached deeper than before: linear time, not exponential.
    """
    reached = {} if reached is None else reached
    if reached.get(id(node), -1) >= depth:
        return
    reached[id(node)] = depth
    here = Location(file=source, line=node.start_mark.line + 1, column=node.start_mark.column + 1)
    if depth > MAX_NESTING:
        yield Problem("agreement_invalid", f"nesting deeper than {MAX_NESTING} levels", here)
        return
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    line = key.start_mark.line + 1
                    yield Problem(
                        "agreement_invalid",
                        f"key '{key.value}' appears twice",
                        Location(file=source, line=line, column=key.start_mark.column + 1),
                    )
                seen.add(key.value)
            yield from _structural_problems(value, source, depth + 1, reached)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _structural_problems(item, source, depth + 1, reached)


def _locate(node: yaml.Node, path: Sequence[Any], source: str) -> Location:
    """Line and column of the deepest node along ``path`` that exists."""
    current = node
    for part in path:
        child: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            child = next(
                (value for key, value in current.value if getattr(key, "value", None) == part),
                None,
            )
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            child = current.value[part] if 0 <= part < len(current.value) else None
        if child is None:
            break
        current = child
    mark = current.start_mark
    return Location(file=source, line=mark.line + 1, column=mark.column + 1)


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _duplicates(ids: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    repeated = []
    for index, value in enumerate(ids):
        if value in seen:
            repeated.append(index)
        seen.add(value)
    return repeated


def _reference_problems(agreement: Agreement) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """Cross-references the schema alone cannot check."""
    if not agreement.effective_from <= agreement.review_by <= agreement.expires_on:
        yield ("review_by",), "dates must be in order: effective_from <= review_by <= expires_on"
    for section, ids in (
        ("parties", [p.id for p in agreement.parties]),
        ("purposes", [p.id for p in agreement.purposes]),
        ("datasets", [d.id for d in agreement.datasets]),
    ):
        for index in _duplicates(ids):
            yield (section, index, "id"), f"id '{ids[index]}' is used twice"
    party_ids = {p.id: p for p in agreement.parties}
    for p_index, purpose in enumerate(agreement.purposes):
        for party_id in purpose.lawful_basis:
            if party_id not in party_ids:
                yield (
                    ("purposes", p_index, "lawful_basis", party_id),
                    f"lawful basis names unknown party '{party_id}'{_suggest(party_id, party_ids)}",
                )
    for d_index, dataset in enumerate(agreement.datasets):
        provider = party_ids.get(dataset.provider)
        if provider is None:
            hint = _suggest(dataset.provider, party_ids)
            yield (
                ("datasets", d_index, "provider"),
                f"provider '{dataset.provider}' is not a party{hint}",
            )
        elif "provider" not in provider.roles:
            yield ("datasets", d_index, "provider"), f"party '{provider.id}' is not a provider"
        names = [f.name for f in dataset.fields]
        for index in _duplicates(names):
            yield ("datasets", d_index, "fields", index, "name"), f"field '{names[index]}' twice"
        for f_index, spec in enumerate(dataset.fields):
            if spec.type == "code" and not spec.values:
                yield (
                    ("datasets", d_index, "fields", f_index, "values"),
                    f"code field '{spec.name}' must list its values",
                )
    yield from _release_problems(agreement)


def _release_problems(agreement: Agreement) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    party_ids = {p.id: p for p in agreement.parties}
    purpose_ids = {p.id: p for p in agreement.purposes}
    granted: set[tuple[str, str]] = set()
    for r_index, release in enumerate(agreement.releases):
        here: tuple[PathPart, ...] = ("releases", r_index)
        # One release per purpose and recipient: what a recipient gets is read in one place.
        if (release.purpose, release.recipient) in granted:
            yield (
                (*here, "recipient"),
                f"a release to '{release.recipient}' for '{release.purpose}' is already declared; "
                "merge the two",
            )
        granted.add((release.purpose, release.recipient))
        purpose = purpose_ids.get(release.purpose)
        if purpose is None:
            hint = _suggest(release.purpose, purpose_ids)
            yield (*here, "purpose"), f"purpose '{release.purpose}' is not declared{hint}"
        elif release.recipient not in purpose.lawful_basis:
            yield (
                (*here, "recipient"),
                f"recipient '{release.recipient}' has no lawful basis for '{purpose.id}'",
            )
        recipient = party_ids.get(release.recipient)
        if recipient is None:
            hint = _suggest(release.recipient, party_ids)
            yield (*here, "recipient"), f"recipient '{release.recipient}' is not a party{hint}"
        elif "recipient" not in recipient.roles:
            yield (*here, "recipient"), f"party '{recipient.id}' does not have the recipient role"
        for f_index, released in enumerate(release.fields):
            yield from _released_field_problems(
                agreement, purpose, released, (*here, "fields", f_index)
            )


def _released_field_problems(
    agreement: Agreement,
    purpose: Purpose | None,
    released: ReleasedField,
    where: tuple[PathPart, ...],
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    dataset = agreement.dataset(released.dataset)
    if dataset is None:
        hint = _suggest(released.dataset, [d.id for d in agreement.datasets])
        yield (*where, "dataset"), f"dataset '{released.dataset}' is not declared{hint}"
        return
    if purpose is not None and dataset.provider not in purpose.lawful_basis:
        yield (
            (*where, "dataset"),
            f"provider '{dataset.provider}' has no lawful basis for '{purpose.id}'",
        )
    spec = dataset.field(released.field)
    if spec is None:
        hint = _suggest(released.field, [f.name for f in dataset.fields])
        yield (
            (*where, "field"),
            f"field '{released.field}' is not declared in dataset '{dataset.id}'{hint}",
        )
        return
    if purpose is not None:
        yield from _condition_problems(purpose, dataset, spec, where)
    if released.form == "month" and spec.type != "date":
        yield (*where, "form"), f"form 'month' needs a date field; '{spec.name}' is not"
    if released.form == "flag" and spec.type not in ("integer", "number", "boolean"):
        yield (*where, "form"), f"form 'flag' needs a count; '{spec.name}' is not"


def _condition_problems(
    purpose: Purpose, dataset: Dataset, spec: FieldSpec, where: tuple[PathPart, ...]
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """Special category and criminal offence data need their extra conditions (UK GDPR 9, 10)."""
    basis = purpose.lawful_basis.get(dataset.provider)
    if basis is None:
        return
    if spec.classification == "special_category" and not (basis.article_9 and basis.dpa_schedule_1):
        yield (
            (*where, "field"),
            f"'{spec.name}' is special category data but purpose '{purpose.id}' gives "
            f"'{dataset.provider}' no Article 9 and DPA 2018 Schedule 1 condition",
        )
    if spec.classification == "criminal_offence" and not (
        basis.article_10 and basis.dpa_schedule_1
    ):
        yield (
            (*where, "field"),
            f"'{spec.name}' is criminal offence data but purpose '{purpose.id}' gives "
            f"'{dataset.provider}' no Article 10 and DPA 2018 Schedule 1 condition",
        )
