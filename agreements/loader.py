"""Reading agreement files: YAML in, a validated Agreement out, or every problem at once.

Problems carry the file, line and column of the offending node, found by
walking the composed YAML tree along the path pydantic or the cross-reference
checks report. Every refusal carries at least one located problem, so that
``broker agreements validate`` prints ``FILE:LINE:COLUMN: message`` for each.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails

from agreements.models import Agreement
from agreements.references import PathPart, reference_problems, suggest
from agreements.terms import FIELD_PATTERN, ID_PATTERN, QUALIFIED_FIELD_PATTERN
from broker.errors import AgreementError, Location, Problem

MAX_AGREEMENT_BYTES = 1024 * 1024
MAX_NESTING = 32
# How many values aliases ("*name") may repeat in all. A real agreement repeats a
# lawful basis or two; a "billion laughs" bomb repeats millions.
MAX_ALIAS_REPEATS = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _AgreementLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text.

    PyYAML turns ``2026-02-30`` into a ValueError with no location; as text, pydantic
    reports the bad date at its line like any other wrong value.
    """


_BOOL_TAG = "tag:yaml.org,2002:bool"
# YAML 1.1 reads on/off/yes/no/y/n as booleans, so a policy test's `on:` key or a
# code list such as [yes, no] would silently change meaning; as in YAML 1.2, only
# true and false are booleans here.
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_AgreementLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TIMESTAMP_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _AgreementLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, (_BOOL_TAG, _BOOL_12))


def load_agreement(
    path: Path, *, today: date | None = None, verify_approvals: bool = True
) -> Agreement:
    """Read and validate one agreement file; raises AgreementError listing every problem.

    ``today`` (default: the system date) decides whether the expiry date is in the past.
    ``verify_approvals=False`` lets a DPO test, check or compare an edited draft whose
    old approvals no longer match; nothing that enforces an agreement may use it.
    """
    here = Location(file=str(path))
    try:
        size = path.stat().st_size
    except OSError:
        raise _refused("agreement file could not be read; check the path", here) from None
    if size > MAX_AGREEMENT_BYTES:
        raise _refused(_too_large("agreement file"), here)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise _refused(
            "agreement file is not readable UTF-8 text; save it as UTF-8", here
        ) from None
    return parse_agreement(text, source=str(path), today=today, verify_approvals=verify_approvals)


def parse_agreement(
    text: str,
    *,
    source: str = "<agreement>",
    today: date | None = None,
    verify_approvals: bool = True,
) -> Agreement:
    """Validate agreement YAML held in memory; ``source`` names it in problems."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        # Only a caller holding a str can get here (a file or a JSON body cannot carry one).
        message = "agreement text holds an unpaired surrogate; save it as UTF-8"
        raise _refused(message, Location(file=source)) from None
    if size > MAX_AGREEMENT_BYTES:
        raise _refused(_too_large("agreement"), Location(file=source))
    try:
        # Depth is checked on the event stream first: composing a deeply nested
        # document recurses once per level and would exhaust the stack.
        too_deep = _event_nesting_problem(text, source)
        if too_deep is not None:
            raise _rejected([too_deep], source)
        node = yaml.compose(text, Loader=_AgreementLoader)
    except yaml.YAMLError as exc:
        raise _yaml_refusal(exc, source) from None
    if node is None:
        raise _refused(
            "agreement file is empty; write the agreement's id, parties, purposes and datasets",
            Location(file=source, line=1, column=1),
        )
    structural = list(_structural_problems(node, source))
    if structural:
        raise _rejected(structural, source)
    # Aliases are shared, never copied, when constructed and validated, so a bomb
    # costs nothing further; it is reported alongside the other problems.
    problems = list(_alias_problems(node, source))
    document = _construct(node, source)
    try:
        agreement = Agreement.model_validate(document)
    except PydanticValidationError as exc:
        errors = exc.errors()
        problems += [
            Problem(
                code="agreement_invalid",
                message=_pydantic_message(err),
                location=_locate(node, err["loc"], source, key=err["type"] == "extra_forbidden"),
            )
            for err in errors
            if not _follows_from_others(err, errors)
        ]
        raise _rejected(problems, source) from None
    problems += [
        Problem("agreement_invalid", f"{_dotted(where)}: {message}", _locate(node, where, source))
        for where, message in reference_problems(
            agreement, today or date.today(), verify_approvals=verify_approvals
        )
    ]
    problems += [
        Problem("agreement_invalid", f"{_dotted(where)}: {message}", _locate(node, where, source))
        for where, message in _limit_problems(agreement)
    ]
    if problems:
        raise _rejected(problems, source)
    return agreement


def _limit_problems(agreement: Agreement) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """A lookup budget may name only the agreement's own purposes."""
    if agreement.limits is None:
        return
    known = [p.id for p in agreement.purposes]
    for purpose in agreement.limits.lookup_budget.purposes:
        if purpose not in known:
            yield (
                ("limits", "lookup_budget", "purposes", purpose),
                f"'{purpose[:64]}' is not a purpose of this agreement{suggest(purpose, known)}",
            )


def _follows_from_others(err: ErrorDetails, errors: Sequence[ErrorDetails]) -> bool:
    """A list "too short" only because its invalid items were dropped: they are the news."""
    loc = err["loc"]
    return err["type"] == "too_short" and any(
        other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in errors
    )


def _too_large(what: str) -> str:
    return (
        f"{what} is larger than {MAX_AGREEMENT_BYTES} bytes; an agreement is far smaller, "
        "so check that this is the right file"
    )


def _refused(message: str, location: Location) -> AgreementError:
    return AgreementError(
        message, location=location, problems=(Problem("agreement_invalid", message, location),)
    )


def _rejected(problems: Sequence[Problem], source: str) -> AgreementError:
    first = problems[0]
    noun = "problem" if len(problems) == 1 else "problems"
    return AgreementError(
        f"agreement has {len(problems)} {noun}; first: {first.message}",
        location=first.location if first.location.file else Location(file=source),
        problems=tuple(problems),
    )


def _at(mark: Any, source: str) -> Location:
    return Location(file=source, line=mark.line + 1, column=mark.column + 1)


# What an unclosed construct is called, by the parser's context for it.
_OPENERS = {
    "while parsing a flow sequence": "'[' list",
    "while parsing a flow mapping": "'{' mapping",
    "while scanning a quoted scalar": "quoted text",
}


def _yaml_refusal(exc: yaml.YAMLError, source: str) -> AgreementError:
    problem = str(getattr(exc, "problem", None) or "it could not be parsed")
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    opener = _OPENERS.get(str(getattr(exc, "context", "")))
    if opener is not None and context_mark is not None:
        # Where the parser gave up is often a line or more past the real mistake.
        found = f" at line {problem_mark.line + 1}" if problem_mark is not None else ""
        return _refused(
            f"agreement is not valid YAML: the {opener} that starts here is never closed "
            f"({problem}{found}); close it",
            _at(context_mark, source),
        )
    hint = "; indent with spaces, not tabs" if "'\\t'" in problem else ""
    location = _at(problem_mark, source) if problem_mark is not None else Location(file=source)
    return _refused(f"agreement is not valid YAML: {problem}{hint}", location)


def _construct(node: yaml.Node, source: str) -> Any:
    loader = _AgreementLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_refusal(exc, source) from None
    except (ValueError, TypeError):
        # Only an explicit tag ("!!int", "!!timestamp") on a value that does not fit it.
        raise _refused(
            "agreement has a value that does not fit its explicit '!!' tag; remove the tag",
            Location(file=source),
        ) from None
    finally:
        loader.dispose()


def _dotted(path: Iterable[PathPart]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _nesting_problem(location: Location) -> Problem:
    return Problem(
        "agreement_invalid",
        f"nesting deeper than {MAX_NESTING} levels; an agreement needs far fewer, "
        "so check the brackets and indentation",
        location,
    )


def _event_nesting_problem(text: str, source: str) -> Problem | None:
    """The first node nested too deeply, found without building the tree."""
    depth = 0
    for event in yaml.parse(text, Loader=_AgreementLoader):
        if isinstance(event, yaml.NodeEvent) and depth > MAX_NESTING:
            return _nesting_problem(_at(event.start_mark, source))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _structural_problems(
    node: yaml.Node, source: str, depth: int = 0, reached: dict[int, int] | None = None
) -> Iterable[Problem]:
    """Absurd nesting, duplicate and merge keys, which safe_load would silently accept.

    An alias makes one node reachable along many paths ("billion laughs"), so a node
    is walked again only when reached deeper than before: linear time, not exponential.
    """
    reached = {} if reached is None else reached
    if reached.get(id(node), -1) >= depth:
        return
    reached[id(node)] = depth
    if depth > MAX_NESTING:
        yield _nesting_problem(_at(node.start_mark, source))
        return
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                # Merging copies keys, so merges of merges grow exponentially.
                yield Problem(
                    "agreement_invalid",
                    "YAML merge keys ('<<') are not allowed in an agreement; write the keys out",
                    _at(key.start_mark, source),
                )
            elif isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    yield Problem(
                        "agreement_invalid",
                        f"key '{key.value}' appears twice; keep one of them",
                        _at(key.start_mark, source),
                    )
                seen.add(key.value)
            yield from _structural_problems(value, source, depth + 1, reached)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _structural_problems(item, source, depth + 1, reached)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _alias_problems(root: yaml.Node, source: str) -> Iterable[Problem]:
    """A collection whose aliases bring the repeated values past the limit ("billion laughs").

    An alias is the very node it names, so a node met a second time is a repeat, and
    repeats its whole subtree. Recursion is bounded: nesting was checked first.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 1 + sum(size(child) for child in _children(node))
        return sizes[id(node)]

    seen: set[int] = set()
    repeated = [0]

    def walk(node: yaml.Node) -> yaml.Node | None:
        seen.add(id(node))
        for child in _children(node):
            if id(child) in seen:
                repeated[0] += size(child)
                if repeated[0] > MAX_ALIAS_REPEATS:
                    return node
            elif (found := walk(child)) is not None:
                return found
        return None

    bomb = walk(root)
    if bomb is not None:
        yield Problem(
            "agreement_invalid",
            f"aliases ('*name') repeat more than {MAX_ALIAS_REPEATS} values by here, "
            "which only an alias bomb needs; write the agreement out without them",
            _at(bomb.start_mark, source),
        )


# What each pattern in the model asks for, in words a DPO can act on.
_PATTERN_TEXT = {
    ID_PATTERN: "an id of lower-case letters, digits and hyphens, such as 'ed-attendances'",
    FIELD_PATTERN: "a field name of lower-case letters, digits and underscores, "
    "such as 'injury_type'",
    QUALIFIED_FIELD_PATTERN: "a field named as 'dataset.field', "
    "such as 'ed-attendances.injury_type'",
}


_PLAIN = {
    "tuple_type": "should be a list, written [a, b] or as lines starting '- '",
    "list_type": "should be a list, written [a, b] or as lines starting '- '",
    "dict_type": "should be a mapping of keys to values, written as 'key: value' lines",
    "model_type": "should be a mapping of keys to values, written as 'key: value' lines",
    "model_attributes_type": "should be a mapping of keys to values, written as 'key: value' lines",
}


def _pydantic_message(err: ErrorDetails) -> str:
    """Pydantic's wording where it names the allowed values; plainer words where it does not."""
    kind = err["type"]
    context: dict[str, Any] = dict(err.get("ctx") or {})
    pattern = str(context.get("pattern"))
    detail = err["msg"]
    if kind in _PLAIN:
        detail = _PLAIN[kind]
    elif kind == "extra_forbidden":
        detail = f"Extra inputs are not permitted; {_unknown_key_hint(err['loc'])}"
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        detail += suggest(err.get("input"), choices)
    elif kind == "string_pattern_mismatch" and pattern in _PATTERN_TEXT:
        detail = f"should be {_PATTERN_TEXT[pattern]}"
    elif kind == "string_pattern_mismatch" and "@" in pattern:
        detail = "should be an email address, such as 'dpo@example.org'"
    elif kind == "too_short" and context.get("min_length") == 1:
        detail = "must not be empty; list at least one"
        if err["loc"][-1:] == ("lawful_basis",):
            detail = (
                "the purpose has no lawful basis; give each party that supplies or "
                "receives data for it an article_6 basis"
            )
    elif kind.startswith("date"):
        detail += "; write dates as YYYY-MM-DD, such as 2027-03-31"
    elif kind == "missing":
        detail += "; add it"
    return f"{_dotted(err['loc'])}: {detail}"


def _unknown_key_hint(loc: Sequence[PathPart]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "remove it"
    allowed = list(model.model_fields)
    suggestion = suggest(loc[-1], allowed)
    if suggestion:
        return suggestion.removeprefix("; ")
    return f"remove it, or use one of: {', '.join(allowed)}"


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        remaining = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(remaining) == 1:
            return remaining[0]
    return annotation


def _model_at(path: Sequence[PathPart]) -> type[BaseModel] | None:
    """The model whose keys are allowed at ``path`` in the document, if there is one."""
    current: Any = Agreement
    for part in path:
        current = _without_none(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is tuple:
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _without_none(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _locate(node: yaml.Node, path: Sequence[Any], source: str, *, key: bool = False) -> Location:
    """Line and column of the deepest node along ``path`` that exists.

    With ``key``, the last step stops at the key itself: an unknown key is the mistake,
    not the value under it, which may start lines later.
    """
    current = node
    for index, part in enumerate(path):
        child: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            last = key and index == len(path) - 1
            child = next(
                (k if last else v for k, v in current.value if getattr(k, "value", None) == part),
                None,
            )
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            child = current.value[part] if 0 <= part < len(current.value) else None
        if child is None:
            break
        current = child
    return _at(current.start_mark, source)
