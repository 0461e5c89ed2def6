"""SQLAlchemy Core handles on the SQLModel tables, for the repositories' queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

from broker.db import tables


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


SUBJECT = _table(tables.Subject)
BATCH = _table(tables.Batch)
RECORD = _table(tables.StoredRecord)
TOKEN = _table(tables.MatchToken)
AUDIT = _table(tables.AuditEntry)
AUDIT_HEAD = _table(tables.AuditHead)
KEY_CHECK = _table(tables.KeyCheck)
NODE = _table(tables.MerkleNode)
CHECKPOINT = _table(tables.AuditCheckpoint)
COSIGNATURE = _table(tables.Cosignature)
WITNESS_KEY = _table(tables.WitnessKey)
AGREEMENT = _table(tables.AgreementDocument)
GENERATION = _table(tables.AgreementGeneration)
APPROVER_KEY = _table(tables.ApproverKey)
WRAPPED_KEY = _table(tables.WrappedKey)
JOB = _table(tables.Job)
JOB_RUN = _table(tables.JobRun)
SUBSCRIPTION = _table(tables.NotificationSubscription)
NOTIFICATION = _table(tables.Notification)
NOTIFICATION_ATTEMPT = _table(tables.NotificationAttempt)
RECORD_ENCODING = _table(tables.RecordEncoding)
LINK_BLOCK = _table(tables.LinkBlock)
POSSIBLE_MATCH = _table(tables.PossibleMatch)
