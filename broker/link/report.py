"""The report of a ``broker link`` run: estimated quality, bands, per-file and data-quality counts.

Everything here is a count or an estimate, never a value from a record: the
report can be shared with people who may not see the data. Rows not linked
for want of a usable identifier are named by file and line only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from broker.link.encode import NOTES
from broker.link.types import Band

#: The note the encoder gives a row it cannot link: no NHS number, UPN or name with birth date.
NO_USABLE_IDENTIFIER = "no_usable_identifier"
#: Lines of rejected rows listed per file in the JSON report; the count is always whole.
REJECTED_LINES_SHOWN = 1000

_NOTE_LABELS = {
    "nhs_number_check_failed": "NHS numbers failing the check digit (dropped)",
    "upn_check_failed": "UPNs failing the check letter (dropped)",
    "postcode_not_uk": "postcodes not in UK form (used as text)",
    "date_of_birth_invalid": "dates of birth not readable (dropped)",
    "given_name_invalid": "given names not readable (dropped)",
    "family_name_invalid": "family names not readable (dropped)",
    "sex_invalid": "sex values not recognised (dropped)",
    NO_USABLE_IDENTIFIER: "rows with no usable identifier (not linked)",
}


@dataclass
class FileCounts:
    """One input file's counts: rows read, linked to another record, left alone, rejected."""

    file: str
    source: str
    read: int = 0
    linked: int = 0
    alone: int = 0
    rejected: int = 0
    notes: Counter[str] = field(default_factory=Counter)
    rejected_lines: list[int] = field(default_factory=list)

    def note(self, line: int, notes: Sequence[str]) -> None:
        """Count one row's data-quality notes; a row with no usable identifier is rejected."""
        self.notes.update(notes)
        if NO_USABLE_IDENTIFIER in notes:
            self.rejected += 1
            if len(self.rejected_lines) < REJECTED_LINES_SHOWN:
                self.rejected_lines.append(line)


@dataclass(frozen=True)
class LinkReport:
    """What a run found: the model's estimates, pairs per band, clusters and per-file counts.

    ``precision`` and ``recall`` are estimated by the model without labels (see
    ``broker.link.engine.QualityEstimate``): they trust its calibration and
    cannot see true matches that blocking never proposed.
    """

    files: Sequence[FileCounts]
    precision: float
    recall: float
    pairs_per_band: Mapping[Band, int]
    records: int
    clusters: int
    comparisons: int
    refused_links: int
    key: str  # "random" (this run only) or "file"
    workers: int = 1
    seconds: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the shape of ``--report``)."""
        return {
            "quality": {
                "estimated_precision": round(self.precision, 6),
                "estimated_recall": round(self.recall, 6),
                "note": "estimated by the model without labels; check a sample by hand",
            },
            "pairs": {band.value: self.pairs_per_band.get(band, 0) for band in Band},
            "records": self.records,
            "clusters": self.clusters,
            "comparisons": self.comparisons,
            "links_refused_by_chaining_guard": self.refused_links,
            "key": self.key,
            "workers": self.workers,
            "files": [
                {
                    "file": counts.file,
                    "source": counts.source,
                    "read": counts.read,
                    "linked": counts.linked,
                    "alone": counts.alone,
                    "rejected": counts.rejected,
                    "data_quality": {note: counts.notes.get(note, 0) for note in NOTES},
                    "rejected_lines": counts.rejected_lines,
                }
                for counts in self.files
            ],
            "data_quality": {note: sum(c.notes.get(note, 0) for c in self.files) for note in NOTES},
            "seconds": {step: round(s, 3) for step, s in self.seconds.items()},
        }

    def to_json(self) -> str:
        """The report as indented JSON text, ending with a newline."""
        return json.dumps(self.as_dict(), indent=2) + "\n"


def count_clusters(counts: FileCounts, refs: Sequence[str], clusters: Mapping[str, str]) -> None:
    """Set ``linked`` and ``alone`` for one file's linked refs from cluster sizes."""
    sizes = Counter(clusters.values())
    for ref in refs:
        if sizes[clusters[ref]] > 1:
            counts.linked += 1
        else:
            counts.alone += 1


def render(report: LinkReport, console: Console) -> None:
    """Print the report as rich tables: quality, files, data quality."""
    quality = Table(
        title="Linkage quality (estimated by the model, no labels)", title_justify="left"
    )
    quality.add_column("measure")
    quality.add_column("value", justify="right")
    quality.add_row("estimated precision", f"{report.precision:.4f}")
    quality.add_row("estimated recall", f"{report.recall:.4f}")
    for band in Band:
        quality.add_row(f"pairs: {band.value}", str(report.pairs_per_band.get(band, 0)))
    quality.add_row("links refused by the chaining guard", str(report.refused_links))
    quality.add_row("records", str(report.records))
    quality.add_row("clusters", str(report.clusters))
    quality.add_row("comparisons", str(report.comparisons))
    console.print(quality)

    files = Table(title="Records per file", title_justify="left")
    for column in ("file", "read", "linked", "alone", "rejected"):
        files.add_column(column, justify="left" if column == "file" else "right")
    for c in report.files:
        files.add_row(c.file, str(c.read), str(c.linked), str(c.alone), str(c.rejected))
    console.print(files)

    notes = Table(title="Data quality", title_justify="left")
    notes.add_column("finding")
    for c in report.files:
        notes.add_column(c.source, justify="right")
    for note in NOTES:
        notes.add_row(
            _NOTE_LABELS.get(note, note), *(str(c.notes.get(note, 0)) for c in report.files)
        )
    console.print(notes)
    if report.key == "random":
        console.print(
            "A fresh random key was used: clusters are stable within this run only; "
            "give --key to repeat a run exactly."
        )
