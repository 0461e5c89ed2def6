"""The published JSON Schema: kept in step with the model, and true of every example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

import agreements
from agreements.schema import SCHEMA_FILE, agreement_schema, schema_text

EXAMPLES = sorted((Path(agreements.__file__).resolve().parent / "examples").glob("*.yaml"))


def _as_json(path: Path) -> Any:
    # YAML dates become date objects; JSON (and editors) see ISO strings.
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))


def test_the_published_file_is_what_the_model_generates() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "regenerate with: broker agreements schema --out agreements/agreement.schema.json"
    )


def test_the_schema_is_itself_valid() -> None:
    Draft202012Validator.check_schema(agreement_schema())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_satisfies_the_schema(path: Path) -> None:
    validator = Draft202012Validator(agreement_schema(), format_checker=FormatChecker())
    assert list(validator.iter_errors(_as_json(path))) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(relases=[]), "relases"),
        (lambda d: d.update(version="one"), "one"),
        (lambda d: d["parties"][0].update(roles="provider"), "provider"),
        (lambda d: d["releases"][0]["fields"][0].update(form="exact"), "exact"),
    ],
)
def test_the_schema_catches_what_an_editor_should_flag(change: Any, where: str) -> None:
    document = _as_json(EXAMPLES[0])
    change(document)
    errors = list(Draft202012Validator(agreement_schema()).iter_errors(document))
    assert errors
    assert any(where in error.message for error in errors)
