"""Reading agreement files: YAML in, a validated Agreement out, or every problem at once.

Problems carry the file, line and column of the offending node, found by
walking the composed YAML tree along the path pydantic or the cross-reference
checks report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from agreements.models import Agreement
from agreements.references import PathPart, reference_problems
from broker.errors import AgreementError, Location, Problem

MAX_AGREEMENT_BYTES = 1024 * 1024
MAX_NESTING = 32


def load_agreement(path: Path, *, today: date | None = None) -> Agreement:
    """Read and validate one agreement file; raises AgreementError listing every problem.

    ``today`` (default: the system date) decides whether the expiry date is in the past.
    """
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
    return parse_agreement(text, source=str(path), today=today)


def parse_agreement(
    text: str, *, source: str = "<agreement>", today: date | None = None
) -> Agreement:
    """Validate agreement YAML held in memory; ``source`` names it in problems."""
    if len(text.encode("utf-8")) > MAX_AGREEMENT_BYTES:
        raise AgreementError(
            f"agreement is larger than {MAX_AGREEMENT_BYTES} bytes", location=Location(file=source)
        )
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
        for where, message in reference_problems(agreement, today or date.today())
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
