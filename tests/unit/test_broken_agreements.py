"""The broken-agreement corpus: each file fails with its message, at its line and column.

Every file in tests/agreements/broken/ is the valid ``_base.yaml`` with one fault,
and says in its first lines what the loader must report and where::

    # expect: <part of the problem's message>
    # at: <line>:<column>
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from agreements.loader import MAX_AGREEMENT_BYTES, load_agreement
from broker.errors import AgreementError, Problem

BROKEN = Path(__file__).resolve().parents[1] / "agreements" / "broken"
BASE = BROKEN / "_base.yaml"
TODAY = date(2026, 11, 26)
BROKER = Path(sys.executable).parent / "broker"
CLI_LINE = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")


@dataclass(frozen=True)
class Expected:
    """What a broken file says the loader must report."""

    message: str
    line: int
    column: int


def _expected(path: Path) -> Expected:
    header = dict(
        re.findall(r"^# (expect|at): (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    )
    assert set(header) == {"expect", "at"}, f"{path.name} lacks '# expect:' or '# at:'"
    line, column = header["at"].split(":")
    return Expected(header["expect"], int(line), int(column))


CASES = sorted(path for path in BROKEN.glob("*.yaml") if path != BASE)


def _rejected(path: Path) -> AgreementError:
    with pytest.raises(AgreementError) as caught:
        load_agreement(path, today=TODAY)
    return caught.value


def _problems(error: AgreementError) -> list[str]:
    return [f"{p.location.line}:{p.location.column}: {p.message}" for p in error.problems]


def test_base_agreement_loads() -> None:
    agreement = load_agreement(BASE, today=TODAY)
    assert agreement.status == "draft"
    assert agreement.approvals == ()
    assert agreement.effective_from <= TODAY < agreement.expires_on


def test_corpus_covers_at_least_25_faults() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_broken_agreement_fails_with_message_at_location(path: Path) -> None:
    expected = _expected(path)
    error = _rejected(path)
    assert error.code == "agreement_invalid"
    assert error.problems, "a refusal must carry at least one located problem"
    matching: list[Problem] = [p for p in error.problems if expected.message in p.message]
    assert matching, f"no problem says {expected.message!r}: {_problems(error)}"
    located = [
        p
        for p in matching
        if (p.location.line, p.location.column) == (expected.line, expected.column)
    ]
    assert located, f"not at {expected.line}:{expected.column}: {_problems(error)}"
    assert located[0].location.file == str(path)
    assert all(p.location.file == str(path) for p in error.problems)


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_broken_agreement_location_is_inside_the_file(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines() or [""]
    for problem in _rejected(path).problems:
        assert problem.location.line is not None
        assert problem.location.column is not None
        assert 1 <= problem.location.line <= len(lines)
        assert 1 <= problem.location.column <= len(lines[problem.location.line - 1]) + 1


def test_file_over_one_mebibyte_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    # Not YAML at all past the base: only a parse would find out, and none must happen.
    path.write_text(
        BASE.read_text(encoding="utf-8") + "[" * (MAX_AGREEMENT_BYTES + 1), encoding="utf-8"
    )
    error = _rejected(path)
    assert "larger than 1048576 bytes" in error.message
    assert [p.location.file for p in error.problems] == [str(path)]
    assert not any("YAML" in p.message or "nesting" in p.message for p in error.problems)


def test_alias_bomb_is_refused_quickly() -> None:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            load_agreement(BROKEN / "alias-bomb.yaml", today=TODAY)
        except BaseException as exc:  # handed back to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "an alias bomb took more than 5 s to refuse"
    assert len(outcome) == 1
    assert isinstance(outcome[0], AgreementError)


def test_nesting_far_past_the_stack_is_refused_without_recursion(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("notes: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    error = _rejected(path)
    assert any("nesting deeper than" in p.message for p in error.problems)
    assert (error.problems[0].location.line, error.problems[0].location.column) == (1, 40)


CLI_CASES = [
    "unknown-field-in-release",
    "yaml-tab-indentation",
    "empty",
    "duplicate-yaml-key",
    "identifier-typo",
    "unknown-key-relases",
    "yaml-unclosed-bracket",
]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_prints_file_line_column_and_message(name: str, tmp_path: Path) -> None:
    source = BROKEN / f"{name}.yaml"
    shutil.copy(source, tmp_path / source.name)
    expected = _expected(source)
    done = subprocess.run(
        [str(BROKER), "agreements", "validate", source.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "internal error" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines
    parsed = [CLI_LINE.match(line) for line in lines]
    assert all(parsed), f"not every line is FILE:LINE:COLUMN: message: {lines}"
    assert {match["file"] for match in parsed if match} == {source.name}
    assert any(
        match
        and expected.message in match["message"]
        and (int(match["line"]), int(match["column"])) == (expected.line, expected.column)
        for match in parsed
    ), lines


def test_cli_accepts_the_base_and_rejects_a_broken_file_in_one_run(tmp_path: Path) -> None:
    shutil.copy(BASE, tmp_path / "base.yaml")
    shutil.copy(BROKEN / "review-after-expiry.yaml", tmp_path / "late.yaml")
    done = subprocess.run(
        [str(BROKER), "agreements", "validate", "base.yaml", "late.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "base.yaml: valid (broken-base version 1)" in done.stdout
    assert re.search(r"^late\.yaml:\d+:\d+: review_by: dates must be in order", done.stderr, re.M)


def test_cli_prints_line_100_as_a_number(tmp_path: Path) -> None:
    shutil.copy(BROKEN / "alias-bomb.yaml", tmp_path / "bomb.yaml")
    done = subprocess.run(
        [str(BROKER), "agreements", "validate", "bomb.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "bomb.yaml:100:1: lol8: Extra inputs are not permitted" in done.stderr
