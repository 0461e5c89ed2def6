"""``broker agreements ...``: the DPO's tools for agreement files, and the operator's lifecycle.

File commands (validate, check, test, diff, schema, keygen, approve) need no
database. Lifecycle commands act on the broker's register as the operator.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from broker.errors import AgreementError, ValidationError

if TYPE_CHECKING:
    from agreements.models import Agreement
    from broker.bootstrap import Runtime

agreements_app = typer.Typer(
    help="Write, check, approve and manage agreements.", no_args_is_help=True
)
approver_app = typer.Typer(help="Keys that DPOs approve agreements with.", no_args_is_help=True)
agreements_app.add_typer(approver_app, name="approver-key")

# Piped output (files, CI logs) must not be cut at 80 columns, so tables get room there.
# emoji=False: rich would otherwise print "file.yaml:100:1" as "file.yaml💯1".
out = Console(
    soft_wrap=True, highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200
)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

FileArg = Annotated[Path, typer.Argument(help="Agreement YAML file", exists=False)]


def _load_for_review(path: Path, today: date | None = None) -> Agreement:
    """Load a draft to test, check or compare, even if its old approvals no longer match."""
    from agreements.approval import check_approvals
    from agreements.loader import load_agreement

    agreement = load_agreement(path, today=today, verify_approvals=False)
    stale = sum(v.problem is not None for v in check_approvals(agreement))
    if stale:
        err.print(
            f"note: {path}: {stale} approval(s) do not match this version and are ignored "
            "here; each party must approve the version again",
            markup=False,
        )
    return agreement


def _print_problems(exc: AgreementError) -> None:
    for problem in exc.problems or ():
        err.print(f"{problem.location.describe()}: {problem.message}", markup=False)
    if not exc.problems:
        err.print(exc.one_line(), markup=False)


@agreements_app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="Agreement YAML files")],
) -> None:
    """Check agreement files; prints every problem as FILE:LINE:COLUMN: message."""
    from agreements.loader import load_agreement

    failed = 0
    for path in files:
        try:
            agreement = load_agreement(path)
        except AgreementError as exc:
            failed += 1
            _print_problems(exc)
            continue
        out.print(f"{path}: valid ({agreement.id} version {agreement.version})", markup=False)
    if failed:
        raise typer.Exit(1)


@agreements_app.command("check")
def check(
    file: FileArg,
    on: Annotated[str | None, typer.Option(help="Judge as of this date (YYYY-MM-DD)")] = None,
) -> None:
    """The ICO data sharing code checklist: exit 1 if any error, warnings alone exit 0."""
    from agreements.checklist import check_agreement, summarise

    today = _date(on)
    agreement = _load_for_review(file, today)
    findings = check_agreement(agreement, today=today)
    for finding in findings:
        where = _dotted(finding.path)
        line = f"{finding.severity}: {finding.code}: {finding.message}"
        (err if finding.severity == "error" else out).print(
            f"{file}: {where}: {line}" if where else f"{file}: {line}", markup=False
        )
    errors, warnings = summarise(findings)
    out.print(f"{file}: {errors} error(s), {warnings} warning(s)", markup=False)
    if errors:
        raise typer.Exit(1)


@agreements_app.command("test")
def test(file: FileArg) -> None:
    """Run the agreement's policy tests; prints each with its decision and the deciding rule."""
    from agreements.decision import Deny
    from agreements.policytests import run_policy_tests

    agreement = _load_for_review(file)
    results = run_policy_tests(agreement)
    if not results:
        err.print(f"{file}: the agreement has no policy tests; add some under policy_tests")
        raise typer.Exit(1)
    table = Table("result", "test", "expected", "decision", "rule", "explanation")
    for result in results:
        table.add_row(
            "PASS" if result.passed else "FAIL",
            result.test.name,
            result.test.expect,
            "refuse" if isinstance(result.decision, Deny) else "permit",
            result.rule,
            result.explanation,
        )
    out.print(table)
    failed = sum(not r.passed for r in results)
    out.print(f"{len(results) - failed} of {len(results)} policy tests passed", markup=False)
    if failed:
        raise typer.Exit(1)


@agreements_app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The earlier version's file")],
    new: Annotated[Path, typer.Argument(help="The later version's file")],
) -> None:
    """What changed between two versions, in a DPO's words, each marked widening or narrowing."""
    from agreements.diff import describe_versions, diff_agreements

    before, after = _load_for_review(old), _load_for_review(new)
    changes = diff_agreements(before, after)
    out.print(describe_versions(before, after), markup=False)
    if not changes:
        out.print("no change to what the agreement says", markup=False)
    for change in changes:
        out.print(f"  [{change.effect}] {change.area}: {change.message}", markup=False)


@agreements_app.command("schema")
def schema(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file")] = None,
) -> None:
    """Print (or write) the JSON Schema of agreement files, for editor completion."""
    from agreements.schema import schema_text

    if out_file is None:
        out.print(schema_text(), markup=False, end="")
        return
    out_file.write_text(schema_text(), encoding="utf-8")
    out.print(f"wrote {out_file}", markup=False)


@agreements_app.command("keygen")
def keygen(
    out_file: Annotated[Path, typer.Option("--out", help="Where to keep the private key")],
) -> None:
    """Make a DPO's Ed25519 approval key (private file 0600); prints the public key to register."""
    from agreements.approval import generate_approver_key
    from broker.signing_keys import write_private_key

    pem, public = generate_approver_key()
    write_private_key(out_file, pem)
    out.print(f"private key written to {out_file}; keep it safe and never share it", markup=False)
    out.print(f"public key (give this to the broker operator to register): {public}", markup=False)


@agreements_app.command("approve")
def approve(
    file: FileArg,
    party: Annotated[str, typer.Option(help="The party you approve for")],
    key: Annotated[Path, typer.Option(help="Your private key from 'keygen'")],
    approver: Annotated[str, typer.Option(help="Your name")],
    role: Annotated[str, typer.Option(help="Your role, e.g. Data Protection Officer")],
    on: Annotated[str | None, typer.Option(help="Date of approval (default today)")] = None,
) -> None:
    """Sign this exact version for one party and write the approval into the file."""
    from agreements.approval import load_private_key, sign_approval, with_approval
    from agreements.approval_file import write_approvals
    from agreements.loader import load_agreement

    agreement = load_agreement(file)
    try:
        pem = key.read_bytes()
    except OSError:
        raise ValidationError(f"key file {key} could not be read", code="key_unreadable") from None
    approval = sign_approval(
        agreement, load_private_key(pem), party=party, approver=approver, role=role, on=_date(on)
    )
    signed = with_approval(agreement, approval)
    write_approvals(file, agreement, signed.approvals)
    waiting = [p.id for p in signed.parties if p.id not in {a.party for a in signed.approvals}]
    out.print(f"{file}: approved for {party}", markup=False)
    out.print(
        f"still awaiting: {', '.join(waiting)}" if waiting else "every party has approved",
        markup=False,
    )


# -- lifecycle on the broker's register (operator) ------------------------------


@agreements_app.command("list")
def list_versions() -> None:
    """Every agreement version the broker holds, with its status and approvals."""
    from broker.clock import SystemClock

    runtime = _runtime()
    try:
        today = SystemClock().now().date()
        registry = runtime.broker.registry
        table = Table(
            "agreement",
            "version",
            "status",
            "effective",
            "review by",
            "expires",
            "awaiting approval",
            "warnings",
        )
        for agreement_id in registry.ids():
            for summary in runtime.broker.agreements.summaries(agreement_id, today):
                a = summary.agreement
                approved = {x.party for x in a.approvals}
                table.add_row(
                    a.id,
                    str(a.version),
                    summary.effective_status,
                    a.effective_from.isoformat(),
                    a.review_by.isoformat() if a.review_by else "-",
                    a.expires_on.isoformat(),
                    ", ".join(p.id for p in a.parties if p.id not in approved) or "-",
                    "; ".join(summary.warnings) or "-",
                )
        out.print(table)
    finally:
        runtime.engine.dispose()


@agreements_app.command("activate")
def activate(
    agreement_id: Annotated[str, typer.Argument(help="Agreement id")],
    version: Annotated[int, typer.Argument(help="Version to put into force")],
) -> None:
    """Put an approved version into force from its effective date (audited, as operator)."""
    runtime = _runtime()
    try:
        runtime.broker.agreements.activate(agreement_id, version, actor="operator")
    finally:
        runtime.engine.dispose()
    out.print(f"{agreement_id} version {version} is active", markup=False)


@agreements_app.command("suspend")
def suspend(
    agreement_id: Annotated[str, typer.Argument(help="Agreement id")],
    reason: Annotated[str, typer.Option(help="Why sharing stops (recorded with the agreement)")],
) -> None:
    """Stop all sharing under an agreement at once (audited, as operator)."""
    runtime = _runtime()
    try:
        changed = runtime.broker.agreements.suspend(agreement_id, reason, actor="operator")
    finally:
        runtime.engine.dispose()
    out.print(f"{agreement_id}: {changed} version(s) suspended", markup=False)


@agreements_app.command("resume")
def resume(agreement_id: Annotated[str, typer.Argument(help="Agreement id")]) -> None:
    """Lift a suspension (audited, as operator)."""
    runtime = _runtime()
    try:
        changed = runtime.broker.agreements.resume(agreement_id, actor="operator")
    finally:
        runtime.engine.dispose()
    out.print(f"{agreement_id}: {changed} version(s) active again", markup=False)


@approver_app.command("add")
def approver_add(
    agency: Annotated[str, typer.Argument(help="Agency id")],
    public_key: Annotated[str, typer.Argument(help="Public key printed by 'keygen'")],
) -> None:
    """Trust a DPO's public key for approvals by this agency (audited)."""
    runtime = _runtime(install_agreements=False)
    try:
        runtime.broker.agreements.register_approver_key(agency, public_key, actor="operator")
    finally:
        runtime.engine.dispose()
    out.print(f"approver key registered for {agency}", markup=False)


@approver_app.command("revoke")
def approver_revoke(
    agency: Annotated[str, typer.Argument(help="Agency id")],
    public_key: Annotated[str, typer.Argument(help="The public key to stop trusting")],
) -> None:
    """Stop trusting a key for new approvals (existing approvals stay as recorded)."""
    runtime = _runtime(install_agreements=False)
    try:
        runtime.broker.agreements.revoke_approver_key(agency, public_key, actor="operator")
    finally:
        runtime.engine.dispose()
    out.print(f"approver key revoked for {agency}", markup=False)


def _runtime(*, install_agreements: bool = True) -> Runtime:
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    return build_runtime(load_settings(), install_agreements=install_agreements)


def _date(text: str | None) -> date:
    if text is None:
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"'{text[:20]}' is not a date (YYYY-MM-DD)") from None


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path)
    )
