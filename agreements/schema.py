"""The published JSON Schema of agreement files, for editor completion and other tools.

The schema is generated from the model, and a copy is kept in the repository
(``agreements/agreement.schema.json``) so that editors can point at a file;
a test keeps the copy equal to what the model generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agreements.models import Agreement

SCHEMA_FILE = Path(__file__).resolve().parent / "agreement.schema.json"
SCHEMA_ID = "https://accord.example.org/schemas/agreement.schema.json"


def agreement_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) an agreement file must satisfy structurally.

    Cross-references (unknown parties, fields, lawful bases) are checked by
    ``broker agreements validate``, not by the schema.
    """
    schema = Agreement.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def schema_text() -> str:
    """The schema as stable, indented JSON text."""
    return json.dumps(agreement_schema(), indent=2, sort_keys=True) + "\n"
