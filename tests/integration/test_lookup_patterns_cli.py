"""``broker audit report patterns``: the operator's view of unusual lookups, JSON or safe CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest
import typer
from typer.testing import CliRunner

from broker.bootstrap import Runtime
from broker.cli.audit_reports import PATTERN_COLUMNS, register
from broker.config import Settings
from tests.helpers import AGREEMENT


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("BROKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROKER_KEY_FILE", str(settings.key_file))
    monkeypatch.setenv("BROKER_AGREEMENTS_DIR", str(settings.agreements_dir))
    audit_app = typer.Typer()
    register(audit_app)
    return audit_app


def _sweep(runtime: Runtime, count: int) -> None:
    for n in range(count):
        result = runtime.broker.lookup(
            agency="police",
            agreement_id=AGREEMENT,
            purpose="violence-reduction",
            identifiers={
                "given_name": f"Guess{n}",
                "family_name": "Nobody",
                "date_of_birth": "2010-01-01",
                "postcode": "NS1 4AB",
            },
        )
        assert result.matched is False


def test_csv_and_json_reports_flag_a_sweep(runtime: Runtime, cli: typer.Typer) -> None:
    _sweep(runtime, 21)
    as_csv = CliRunner().invoke(cli, ["report", "patterns", "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.stdout, newline="")))
    assert rows == [
        list(PATTERN_COLUMNS),
        ["police", "violence-reduction", "21", "21", "0", "many_misses"],
    ]
    as_json = CliRunner().invoke(cli, ["report", "patterns", "--min-lookups", "22"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["thresholds"] == {"miss_ratio": 0.8, "min_lookups": 22, "subjects_per_hour": 30}
    assert report["patterns"] == [
        {
            "agency": "police",
            "purpose": "violence-reduction",
            "lookups": 21,
            "misses": 21,
            "peak_subjects_per_hour": 0,
            "flags": [],
        }
    ]


def test_nonsense_thresholds_are_refused_and_audited(runtime: Runtime, cli: typer.Typer) -> None:
    refused = CliRunner().invoke(cli, ["report", "patterns", "--miss-ratio", "0"])
    assert refused.exit_code != 0
    assert getattr(refused.exception, "code", None) == "threshold_invalid"
    last = runtime.broker.audit_page(actor="operator", after=0, limit=1000)[-1].event
    assert (last.action, last.outcome, last.reason_code) == (
        "audit_search",
        "refused",
        "threshold_invalid",
    )
    assert last.detail["kind"] == "patterns"
