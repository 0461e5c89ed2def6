"""The optional ``limits`` section of an agreement: defaults, validation, approvals."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agreements.approval import canonical_form
from agreements.approval_file import replace_approvals
from agreements.loader import load_agreement, parse_agreement
from agreements.models import DEFAULT_LOOKUPS_PER_DAY, DEFAULT_RATES, Limits, RateLimit
from broker.errors import AgreementError

EXAMPLES = Path(__file__).resolve().parents[2] / "agreements" / "examples"
BASE = Path(__file__).resolve().parents[1] / "agreements" / "broken" / "_base.yaml"
TODAY = date(2026, 11, 26)


def _with_limits(block: str) -> str:
    """The test base agreement (which has no limits) with ``block`` appended, unsigned."""
    text = replace_approvals(BASE.read_text(encoding="utf-8"), ())
    assert "\nlimits:" not in text
    return text + "\n" + block


def _problems(text: str) -> list[str]:
    with pytest.raises(AgreementError) as caught:
        parse_agreement(text, source="limits.yaml", today=TODAY, verify_approvals=False)
    return [p.message for p in caught.value.problems]


def test_absent_limits_mean_the_defaults() -> None:
    agreement = parse_agreement(
        replace_approvals(BASE.read_text(encoding="utf-8"), ()),
        today=TODAY,
        verify_approvals=False,
    )
    assert agreement.limits is None
    limits = agreement.effective_limits
    for kind, default in DEFAULT_RATES.items():
        assert limits.rate(kind) == default
    assert limits.lookups_per_day(agreement.purposes[0].id) == DEFAULT_LOOKUPS_PER_DAY
    # Agreements approved before limits existed keep verifying: no "limits" in what was signed.
    assert b'"limits"' not in canonical_form(agreement)


def test_limits_are_read_and_signed() -> None:
    base = parse_agreement(
        replace_approvals(BASE.read_text(encoding="utf-8"), ()), today=TODAY, verify_approvals=False
    )
    purpose = base.purposes[0].id
    agreement = parse_agreement(
        _with_limits(
            "limits:\n"
            "  rates:\n"
            "    lookup: {per_minute: 30, burst: 5}\n"
            "  lookup_budget:\n"
            "    per_day: 100\n"
            f"    purposes: {{{purpose}: 7}}\n"
        ),
        today=TODAY,
        verify_approvals=False,
    )
    limits = agreement.effective_limits
    assert limits.rate("lookup") == RateLimit(per_minute=30, burst=5)
    assert limits.rate("ingest") == DEFAULT_RATES["ingest"]
    assert limits.lookups_per_day(purpose) == 7
    assert limits.lookups_per_day("another-purpose") == 100
    # Changing a limit changes what the DPOs signed.
    assert b'"limits"' in canonical_form(agreement)
    assert canonical_form(agreement) != canonical_form(base)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("limits:\n  rates:\n    lookup: {per_minute: -5, burst: 5}\n", "per_minute"),
        ("limits:\n  rates:\n    lookup: {per_minute: 5, burst: 0}\n", "burst"),
        ("limits:\n  rates:\n    lookups: {per_minute: 5, burst: 5}\n", "lookups"),
        ("limits:\n  rates:\n    lookup: {per_minute: 5}\n", "burst"),
        ("limits:\n  lookup_budget: {per_day: 0}\n", "per_day"),
        ("limits:\n  lookup_budget: {purposes: {no-such-purpose: 5}}\n", "no-such-purpose"),
        ("limits:\n  rate: {}\n", "rate"),
    ],
    ids=[
        "negative",
        "zero-burst",
        "unknown-kind",
        "missing-burst",
        "zero-budget",
        "purpose",
        "key",
    ],
)
def test_nonsense_limits_are_refused(block: str, expected: str) -> None:
    problems = _problems(_with_limits(block))
    assert len(problems) == 1, problems
    assert problems[0].startswith("limits."), problems
    assert expected in problems[0]


def test_zero_budget_for_one_purpose_is_refused() -> None:
    base = parse_agreement(
        replace_approvals(BASE.read_text(encoding="utf-8"), ()), today=TODAY, verify_approvals=False
    )
    purpose = base.purposes[0].id
    problems = _problems(
        _with_limits(f"limits:\n  lookup_budget: {{purposes: {{{purpose}: 0}}}}\n")
    )
    assert problems == [
        f"limits.lookup_budget.purposes.{purpose}: Input should be greater than or equal to 1"
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_sets_limits_and_keeps_its_approvals(path: Path) -> None:
    agreement = load_agreement(path, today=TODAY)  # approvals verified
    assert agreement.limits is not None
    assert agreement.limits.rates, "an example shows at least one rate"
    assert isinstance(agreement.effective_limits, Limits)
