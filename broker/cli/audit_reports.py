"""``broker audit search`` and ``broker audit report ...``: the operator's view of the trail.

The operator sees every agreement's entries. Every search and report is itself
audited as an ``audit_search`` by ``operator``. Identifiers given as options stay
visible in the shell history and process list; ``--identifiers-file`` (a JSON object)
keeps them out of both. Output is JSON (or CSV, or a FHIR Bundle) on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from broker.csv_safe import to_csv_text
from broker.errors import ValidationError
from broker.lookup_patterns import LookupPattern, PatternThresholds

if TYPE_CHECKING:
    from broker.bootstrap import Runtime

Since = Annotated[str | None, typer.Option(help="From this ISO date or time (inclusive)")]
Until = Annotated[
    str | None, typer.Option(help="Up to this ISO time (exclusive); a bare date includes it")
]
Format = Annotated[str, typer.Option("--format", help="json, csv or fhir")]
GivenName = Annotated[str | None, typer.Option(help="Identifier: given name")]
FamilyName = Annotated[str | None, typer.Option(help="Identifier: family name")]
DateOfBirth = Annotated[str | None, typer.Option(help="Identifier: date of birth, YYYY-MM-DD")]
Postcode = Annotated[str | None, typer.Option(help="Identifier: postcode")]
NhsNumber = Annotated[str | None, typer.Option(help="Identifier: NHS number")]
Upn = Annotated[str | None, typer.Option(help="Identifier: unique pupil number")]
IdentifiersFile = Annotated[
    Path | None,
    typer.Option(help="JSON file of identifiers (kept out of shell history and ps)"),
]
SubjectIds = Annotated[
    list[str] | None, typer.Option("--subject-id", help="A broker subject id (repeatable)")
]


def register(audit_app: typer.Typer) -> None:
    """Add ``search`` and the ``report`` sub-commands to the ``audit`` sub-app."""
    report_app = typer.Typer(
        help="IG reports over the audit log (the operator sees every agreement).",
        no_args_is_help=True,
    )
    report_app.command("subject")(report_subject)
    report_app.command("recipient")(report_recipient)
    report_app.command("refusals")(report_refusals)
    report_app.command("volume")(report_volume)
    report_app.command("patterns")(report_patterns)
    audit_app.command("search")(search)
    audit_app.add_typer(report_app, name="report")


def _runtime() -> Runtime:
    from broker.bootstrap import build_runtime
    from broker.config import load_settings

    return build_runtime(load_settings())


def _identifiers(path: Path | None, **given: str | None) -> dict[str, str] | None:
    """The identifiers from the options and the file; None when none were given."""
    found = {name: value for name, value in given.items() if value is not None}
    if path is not None:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            raise ValidationError(
                f"identifiers file {path} could not be read as JSON", code="file_unreadable"
            ) from None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise ValidationError(
                f"identifiers file {path} must hold one JSON object of strings",
                code="file_unreadable",
            )
        found.update(loaded)
    return found or None


def _write(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def search(
    agency: Annotated[str | None, typer.Option(help="Entries made by this agency")] = None,
    agreement: Annotated[str | None, typer.Option(help="Agreement id")] = None,
    purpose: Annotated[str | None, typer.Option(help="Purpose id")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. lookup, ingest, audit_search")] = None,
    outcome: Annotated[str | None, typer.Option(help="permitted or refused")] = None,
    reason_code: Annotated[str | None, typer.Option(help="A refusal's reason code")] = None,
    subject_id: SubjectIds = None,
    since: Since = None,
    until: Until = None,
    after: Annotated[int, typer.Option(help="Entries after this position")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries (1 to 1000)")] = 100,
    given_name: GivenName = None,
    family_name: FamilyName = None,
    date_of_birth: DateOfBirth = None,
    postcode: Postcode = None,
    nhs_number: NhsNumber = None,
    upn: Upn = None,
    identifiers_file: IdentifiersFile = None,
    output: Format = "json",
) -> None:
    """Search the audit log; with identifiers, only entries about that young person."""
    from audit.export import entry_dict, to_csv, to_fhir_bundle
    from audit.queries import AuditQuery

    if output not in ("json", "csv", "fhir"):
        raise ValidationError("--format must be json, csv or fhir", code="format_unknown")
    identifiers = _identifiers(
        identifiers_file,
        given_name=given_name,
        family_name=family_name,
        date_of_birth=date_of_birth,
        postcode=postcode,
        nhs_number=nhs_number,
        upn=upn,
    )
    query = AuditQuery(
        agency=agency,
        agreement_id=agreement,
        purpose=purpose,
        action=action,
        outcome=outcome,
        reason_code=reason_code,
        subject_ids=None if subject_id is None else tuple(subject_id),
        since=since,
        until=until,
        after=after,
        limit=limit,
    )
    runtime = _runtime()
    try:
        result = runtime.broker.audit_search.search(query, viewer=None, identifiers=identifiers)
        origin = runtime.broker.audit.origin
    finally:
        runtime.engine.dispose()
    if output == "csv":
        sys.stdout.write(to_csv(result.entries))
    elif output == "fhir":
        _write(to_fhir_bundle(result.entries, origin))
    else:
        _write(
            {
                "entries": [entry_dict(e) for e in result.entries],
                "next_after": result.next_after,
                "subjects_found": result.subjects_found,
            }
        )


def report_subject(
    subject_id: SubjectIds = None,
    since: Since = None,
    until: Until = None,
    given_name: GivenName = None,
    family_name: FamilyName = None,
    date_of_birth: DateOfBirth = None,
    postcode: Postcode = None,
    nhs_number: NhsNumber = None,
    upn: Upn = None,
    identifiers_file: IdentifiersFile = None,
) -> None:
    """Every release about one young person: when, to whom, under what, which fields."""
    identifiers = _identifiers(
        identifiers_file,
        given_name=given_name,
        family_name=family_name,
        date_of_birth=date_of_birth,
        postcode=postcode,
        nhs_number=nhs_number,
        upn=upn,
    )
    runtime = _runtime()
    try:
        releases = runtime.broker.audit_search.subject_report(
            viewer=None, identifiers=identifiers, subject_ids=subject_id, since=since, until=until
        )
    finally:
        runtime.engine.dispose()
    _write({"releases": [r.as_dict() for r in releases]})


def report_recipient(
    agency: Annotated[str, typer.Argument(help="The recipient agency")],
    since: Since = None,
    until: Until = None,
) -> None:
    """Everything one recipient looked up and received in a period."""
    runtime = _runtime()
    try:
        report = runtime.broker.audit_search.recipient_report(
            agency, viewer=None, since=since, until=until
        )
    finally:
        runtime.engine.dispose()
    _write(report.as_dict())


def report_refusals(since: Since = None, until: Until = None) -> None:
    """Refusals counted by reason code, agency and agreement, most frequent first."""
    runtime = _runtime()
    try:
        counts = runtime.broker.audit_search.refusals(viewer=None, since=since, until=until)
    finally:
        runtime.engine.dispose()
    _write({"refusals": [c.__dict__ for c in counts]})


def report_volume(
    agency: Annotated[str | None, typer.Option(help="Only this recipient")] = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Lookups per recipient per day; flags spikes and days with over 20 subjects."""
    runtime = _runtime()
    try:
        days = runtime.broker.audit_search.volume(
            viewer=None, agency=agency, since=since, until=until
        )
    finally:
        runtime.engine.dispose()
    _write(
        {"days": [{**d.__dict__, "day": d.day.isoformat(), "flags": list(d.flags)} for d in days]}
    )


_PATTERNS = PatternThresholds()


def _codes(pattern: LookupPattern) -> str:
    return ";".join(f.code for f in pattern.flags)


PATTERN_COLUMNS = ("agency", "purpose", "lookups", "misses", "peak_subjects_per_hour", "flags")


def report_patterns(
    agency: Annotated[str | None, typer.Option(help="Only this recipient")] = None,
    since: Since = None,
    until: Until = None,
    miss_ratio: Annotated[
        float, typer.Option(help="Flag a sweep at or above this share of lookups missing")
    ] = _PATTERNS.miss_ratio,
    min_lookups: Annotated[
        int, typer.Option(help="Judge misses only from this many lookups")
    ] = _PATTERNS.min_lookups,
    subjects_per_hour: Annotated[
        int, typer.Option(help="Flag more distinct subjects than this within any hour")
    ] = _PATTERNS.subjects_per_hour,
    output: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Unusual lookups per recipient and purpose: many misses, many subjects an hour."""
    if output not in ("json", "csv"):
        raise ValidationError("--format must be json or csv", code="format_unknown")
    thresholds = PatternThresholds(miss_ratio, min_lookups, subjects_per_hour)
    runtime = _runtime()
    try:
        found = runtime.broker.audit_search.patterns(
            viewer=None, agency=agency, since=since, until=until, thresholds=thresholds
        )
    finally:
        runtime.engine.dispose()
    if output == "csv":
        rows = [
            (p.agency, p.purpose, p.lookups, p.misses, p.peak_subjects_per_hour, _codes(p))
            for p in found
        ]
        sys.stdout.write(to_csv_text([PATTERN_COLUMNS, *rows]))
        return
    _write({"patterns": [p.as_dict() for p in found], "thresholds": thresholds.__dict__})
