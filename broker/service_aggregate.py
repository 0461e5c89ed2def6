"""Aggregates: counts by area, age band, sex, week or month, with small numbers withheld."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agreements.decision import Deny, Permit, ReleaseRequest, decide_under
from agreements.models import Agreement
from audit.events import AuditEvent
from broker.aggregate import (
    REDACT_AT_OR_BELOW,
    ROUNDING_BASE,
    AggregateQuery,
    Observation,
    Plan,
    check_permitted,
    empty_table,
    fits,
    observe,
    plan,
    tabulate,
)
from broker.errors import AccordError, Refused, ValidationError
from broker.interfaces import RecordRow, UnitOfWork
from broker.keystore import DATA, KeySlot, WorkingKey
from broker.sealing import associated_data, unseal
from broker.service_core import warning_codes, with_changes
from broker.service_limits import LimitUseCases
from broker.suppression import PublishedTable, protect

PAGE_SIZE = 2_000


@dataclass(frozen=True)
class AggregateResult:
    """A protected table of counts and what it was made under.

    ``table`` is rendered with ``as_records`` or ``as_csv_rows`` only: the reason a
    cell is withheld stays inside the broker.
    """

    agreement_id: str
    agreement_version: int
    purpose: str
    query: Plan
    table: PublishedTable
    minimum_cell_size: int
    rounding_base: int
    redact_at_or_below: int
    audit_entry: int
    warnings: tuple[str, ...] = field(default=())


@dataclass
class _Reading:
    """What reading the records found, beyond the observations themselves."""

    minimum_cell_size: int
    left_out: int = 0
    shredded: int = 0


class AggregateUseCases(LimitUseCases):
    """A recipient's aggregate tables."""

    def aggregate(
        self,
        *,
        agency: str,
        agreement_id: str,
        purpose: str,
        query: AggregateQuery,
        request_id: str | None = None,
    ) -> AggregateResult:
        """Count the agreement's records as the query asks, and publish them protected.

        Decided like every release (deny by default); then every dimension must be
        released in its form or a finer one. Records count only where the version
        they were received under permits what the table reads of them. Small cells
        and their complements are withheld, the rest rounded; the audit entry
        records the query's names and how many cells were published and withheld.
        """
        today = self._today()
        registry = self.registry
        versions = registry.versions(agreement_id)
        agreement = registry.get(agreement_id, today)
        base = AuditEvent(
            actor=agency,
            action="aggregate",
            outcome="permitted",
            agreement_id=agreement.id,
            agreement_version=agreement.version,
            purpose=purpose,
            request_id=request_id,
        )
        try:
            planned = plan(query)
        except ValidationError as exc:
            self._refuse(base, exc.code, {"measure": {"dataset": query.dataset}})
            raise
        described = planned.describe()
        request = ReleaseRequest(
            agency=agency, purpose=purpose, output="aggregate", on=today, fields=planned.fields()
        )
        with self.instruments.stage("decide"):
            decision = decide_under(versions, request)
        if isinstance(decision, Deny):
            self._refuse(base, decision.code, described)
            raise Refused(decision.reason, code=decision.code)
        try:
            check_permitted(
                planned,
                decision.fields,
                registry.version(agreement.id, decision.agreement_version),
            )
        except AccordError as exc:
            self._refuse(base, exc.code, described)
            raise
        try:
            return self._publish(versions, request, decision, planned, base)
        except ValidationError as exc:
            # Only the size of the table is refused this late; nothing was written.
            self._refuse(base, exc.code, described)
            raise

    def _publish(
        self,
        versions: Sequence[Agreement],
        request: ReleaseRequest,
        decision: Permit,
        planned: Plan,
        base: AuditEvent,
    ) -> AggregateResult:
        agreement = versions[0]
        with self._units() as uow:
            with self.instruments.stage("release"):
                reading = _Reading(decision.minimum_cell_size)
                observations = list(
                    self._observe(
                        uow,
                        versions=versions,
                        request=request,
                        decision=decision,
                        planned=planned,
                        reading=reading,
                    )
                )
                table = tabulate(planned, observations)
                published = (
                    empty_table(planned)
                    if table is None
                    else protect(
                        table,
                        minimum_cell_size=reading.minimum_cell_size,
                        rounding_base=ROUNDING_BASE,
                        redact_at_or_below=REDACT_AT_OR_BELOW,
                    )
                )
            withheld = sum(1 for c in published.cells.values() if c.value is None)
            with self.instruments.stage("audit"):
                entry = self._audit(
                    uow,
                    with_changes(
                        base,
                        detail={
                            **planned.describe(),
                            "released": [
                                {"field": f"{f.dataset}.{f.field}", "form": f.form}
                                for f in decision.fields
                            ],
                            # How many, never which, nor any value of a withheld cell.
                            "cells": {
                                "published": len(published.cells) - withheld,
                                "withheld": withheld,
                            },
                            "minimum_cell_size": reading.minimum_cell_size,
                            "warnings": warning_codes(decision.warnings),
                            **({"left_out_records": reading.left_out} if reading.left_out else {}),
                            **({"shredded_records": reading.shredded} if reading.shredded else {}),
                        },
                    ),
                )
                uow.commit()
        self.instruments.released(agreement=agreement.id, purpose=request.purpose)
        return AggregateResult(
            agreement_id=agreement.id,
            agreement_version=decision.agreement_version,
            purpose=request.purpose,
            query=planned,
            table=published,
            minimum_cell_size=reading.minimum_cell_size,
            rounding_base=ROUNDING_BASE,
            redact_at_or_below=REDACT_AT_OR_BELOW,
            audit_entry=entry.seq,
            warnings=decision.warnings,
        )

    def _observe(
        self,
        uow: UnitOfWork,
        *,
        versions: Sequence[Agreement],
        request: ReleaseRequest,
        decision: Permit,
        planned: Plan,
        reading: _Reading,
    ) -> Iterator[Observation]:
        """Each stored record the table may count, unsealed and labelled."""
        agreement = versions[0]
        # Records stay governed by the version they were received under: that version
        # (and any later one) can narrow what the live version permits, never widen it.
        governing: dict[int, Permit | None] = {decision.agreement_version: decision}
        data_slot = KeySlot(DATA, agreement.id)
        data_keys: dict[int, WorkingKey | None] = {}
        for dataset_id in planned.datasets():
            for row in _records(uow, agreement.id, dataset_id):
                if row.agreement_version not in governing:
                    found = decide_under(versions, request, received_under=row.agreement_version)
                    governing[row.agreement_version] = found if isinstance(found, Permit) else None
                permit = governing[row.agreement_version]
                if permit is None or not fits(planned, dataset_id, permit.fields):
                    reading.left_out += 1
                    continue
                if row.key_version not in data_keys:
                    data_keys[row.key_version] = self._keystore.version(
                        uow.keys, data_slot, row.key_version
                    )
                data_key = data_keys[row.key_version]
                if data_key is None:
                    # Its data key was destroyed: the payload can never be read again.
                    reading.shredded += 1
                    continue
                # The strictest cell size of any version whose records are counted applies.
                reading.minimum_cell_size = max(reading.minimum_cell_size, permit.minimum_cell_size)
                stored: dict[str, Any] = json.loads(
                    unseal(data_key.key, row.payload, associated_data(agreement.id, row.id))
                )
                yield observe(
                    planned,
                    dataset_id,
                    row.subject_id,
                    stored,
                    permit.fields,
                    received_at=row.received_at,
                    record_id=row.id,
                    on=request.on,
                )


def _records(uow: UnitOfWork, agreement_id: str, dataset_id: str) -> Iterator[RecordRow]:
    """Every stored record of one dataset, a page at a time."""
    after: str | None = None
    while True:
        page = uow.dataset_records.page(agreement_id, dataset_id, after=after, limit=PAGE_SIZE)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        after = page[-1].source_ref
