"""Running the policy tests an agreement carries: the DPOs' intent, made executable.

Each test is a request and an expectation. The request is decided in
rehearsal mode (status and approvals ignored, dates applied), so a draft's
tests show what it will do once active.
"""

from __future__ import annotations

from dataclasses import dataclass

from agreements.decision import Decision, Deny, ReleaseRequest, decide
from agreements.models import Agreement
from agreements.terms import PolicyTest


@dataclass(frozen=True)
class PolicyTestResult:
    """One test's outcome: the decision, the rule that decided, and whether it held."""

    test: PolicyTest
    decision: Decision
    passed: bool
    explanation: str

    @property
    def rule(self) -> str:
        """The rule that decided: a release for a permit, a reason code for a refusal."""
        return self.decision.rule


def _request(agreement: Agreement, test: PolicyTest) -> ReleaseRequest:
    asked = test.request
    fields = None
    if asked.fields is not None:
        fields = tuple(tuple(name.split(".", 1)) for name in asked.fields)
    return ReleaseRequest(
        agency=asked.agency,
        purpose=asked.purpose,
        output=asked.output,
        on=asked.on or agreement.effective_from,
        fields=fields,  # type: ignore[arg-type]  # pairs by the pattern on QualifiedField
        role=asked.role,
    )


def _released(decision: Decision) -> list[str]:
    if isinstance(decision, Deny):
        return []
    return sorted(f"{f.dataset}.{f.field}" for f in decision.fields)


def run_policy_test(agreement: Agreement, test: PolicyTest) -> PolicyTestResult:
    """Decide one test's request and compare it with what the test expects."""
    decision = decide(agreement, _request(agreement, test), mode="rehearsal")
    if test.expect == "refuse":
        if not isinstance(decision, Deny):
            return PolicyTestResult(test, decision, False, "expected a refusal but it permits")
        if test.code is not None and decision.code != test.code:
            return PolicyTestResult(
                test, decision, False, f"refused with '{decision.code}', expected '{test.code}'"
            )
        return PolicyTestResult(test, decision, True, f"refused: {decision.reason}")
    if isinstance(decision, Deny):
        return PolicyTestResult(
            test, decision, False, f"expected a permit but refused: {decision.reason}"
        )
    released = _released(decision)
    if test.fields is not None and released != sorted(test.fields):
        extra = sorted(set(released) - set(test.fields))
        missing = sorted(set(test.fields) - set(released))
        return PolicyTestResult(
            test,
            decision,
            False,
            f"permits different fields: extra {extra or 'none'}, missing {missing or 'none'}",
        )
    return PolicyTestResult(test, decision, True, f"permits {len(released)} field(s)")


def run_policy_tests(agreement: Agreement) -> list[PolicyTestResult]:
    """Every policy test of the agreement, in file order."""
    return [run_policy_test(agreement, test) for test in agreement.policy_tests]
