"""The linkage engine inside the broker: encodings on arrival, the possible-match queue, quality.

Design (the simplest honest one, issue 5):

* Every record ingested with clear identifiers is encoded (``RecordEncoder``,
  keyed tokens and Bloom bits under the agreement's linkage key) and stored with
  its tokens indexed, in the batch's own transaction.
* Subjects are still assigned by the deterministic keyed match keys
  (``broker.linkage``): that path is unchanged, so a record joins a subject only
  on a shared decisive key. The engine then compares each new record with its
  stored candidates (the records sharing a block key of one of the blocking
  passes of ``broker.link.blocking``) and scores the pairs with the *prior model*
  (``fit_patterns`` over no pairs: ``EMSettings``' m and u priors, thresholds
  from the configuration). A pair the engine scores possible or match whose two
  records sit in different subjects is queued for its two holders: the engine
  never merges on its own, because a false merge of two children is the harm
  precision guards against. Both holders saying ``same`` merges the subjects.
* Quality is estimated on demand by linking the agreement's stored encodings
  as one batch (``link_records``: blocking, EM fit from the stored candidate
  pairs, clustering with the chaining guard).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from audit.events import AuditEvent
from broker.errors import NotFound
from broker.ids import new_id
from broker.interfaces import UnitOfWork
from broker.keys import LinkageKey
from broker.link.blocking import BLOCKING_PASSES, BlockIndex
from broker.link.compare import make_comparer
from broker.link.config import DEFAULT_CONFIG, LinkageConfig
from broker.link.encode import RecordEncoder
from broker.link.engine import link_records
from broker.link.model import Model, fit_patterns
from broker.link.types import Band, EncodedRecord
from broker.possible_matches import OPEN, SAME, QueuedPair, decide, view_for
from broker.service_core import BrokerCore

#: The model used on arrival until a fitted one is persisted: EM's priors, unfitted.
PRIOR_MODEL: Model = fit_patterns({}, DEFAULT_CONFIG)


@dataclass(frozen=True, slots=True)
class ArrivedRecord:
    """A record just stored: the broker's record id, its holder, subject and identifiers."""

    record_id: str
    agency: str
    subject_id: str
    identifiers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class LinkageQuality:
    """Estimated precision and recall, pairs per band and the open queue's length."""

    agreement_id: str
    records: int
    precision: float
    recall: float
    pairs_per_band: Mapping[str, int]
    queue: Mapping[str, int]


def block_keys(record: EncodedRecord) -> list[str]:
    """The record's block key for each blocking pass it has every form of.

    A key hashes the pass's name with its forms' keyed tokens taken together (as
    ``BlockIndex`` groups them), so two records share a key exactly when they
    share that pass's block; it holds no identifier, only a hash of keyed tokens.
    """
    keys = []
    for name, forms in BLOCKING_PASSES.items():
        parts = [record.tokens.get(form) for form in forms]
        if all(parts):
            joined = "\x1f".join([name, *(p for p in parts if p)])
            keys.append(hashlib.sha256(joined.encode("utf-8")).hexdigest())
    return keys


def encode_arrivals(
    linkage_key: bytes, arrived: Sequence[ArrivedRecord], config: LinkageConfig = DEFAULT_CONFIG
) -> list[EncodedRecord]:
    """Each arrived record's encodings, ``ref`` its record id and ``source`` its holder."""
    encoder = RecordEncoder(linkage_key, config.encoder_cascade())
    return [encoder.encode(a.record_id, a.agency, a.identifiers) for a in arrived]


def queue_on_arrival(
    uow: UnitOfWork,
    agreement_id: str,
    encoded: Sequence[EncodedRecord],
    *,
    key_version: int,
    subjects: Mapping[str, str],
    at: str,
    config: LinkageConfig = DEFAULT_CONFIG,
    model: Model = PRIOR_MODEL,
) -> int:
    """Store a batch's encodings and queue its possible matches; returns how many were queued.

    Candidates are stored records sharing a block key (``block_keys``) with the
    batch, narrowed by the engine's blocking caps (``BlockIndex``); the batch's
    own records are candidates of one another, so a batch links as one batch.
    """
    store = uow.link_store
    blocks = {e.ref: block_keys(e) for e in encoded}
    stored_ids = store.candidates(agreement_id, {k for keys in blocks.values() for k in keys})
    stored = store.encodings(agreement_id, stored_ids)
    store.add_encodings(agreement_id, key_version, encoded, blocks)
    known = stored + list(encoded)
    subject_of = {**store.subjects_of(r.ref for r in stored), **subjects}
    index = BlockIndex()
    for position, record in enumerate(known):
        index.add(position, record)
    compare = make_comparer(config.encoder_cascade())
    first_new = len(stored)
    queued: list[QueuedPair] = []
    for position in range(first_new, len(known)):
        record = known[position]
        for other in sorted(index.candidates(record)):
            # Each pair once: a new record with stored ones and earlier new ones.
            if other >= position:
                continue
            left, right = sorted((known[other], record), key=lambda r: r.ref)
            if subject_of.get(left.ref) == subject_of.get(right.ref):
                continue
            levels, rule = compare(left, right)
            _, probability = model.score(levels, rule)
            if model.band(probability) is Band.NON_MATCH:
                continue
            queued.append(
                QueuedPair(
                    id=new_id("pm"),
                    agreement_id=agreement_id,
                    left_record_id=left.ref,
                    right_record_id=right.ref,
                    left_agency=left.source,
                    right_agency=right.source,
                    levels=levels,
                    probability=probability,
                    created_at=at,
                )
            )
    store.enqueue(queued)
    return len(queued)


def link_arrivals(
    uow: UnitOfWork,
    agreement_id: str,
    linkage: LinkageKey | None,
    arrived: Sequence[ArrivedRecord],
    *,
    at: str,
) -> int:
    """Encode a stored batch and queue its possible matches; 0 without a key (at source)."""
    if linkage is None or not arrived:
        return 0
    return queue_on_arrival(
        uow,
        agreement_id,
        encode_arrivals(linkage.key, arrived),
        key_version=linkage.version,
        subjects={a.record_id: a.subject_id for a in arrived},
        at=at,
    )


class LinkageUseCases(BrokerCore):
    """The possible-match queue and linkage quality, as the routes call them."""

    def possible_matches(
        self, *, agency: str | None, agreement_id: str, state: str | None = OPEN
    ) -> list[dict[str, object]]:
        """The pairs ``agency`` holds a side of (None: every pair, no record references)."""
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            pairs = uow.link_store.queued(agreement.id, agency)
            if state is not None:
                pairs = [p for p in pairs if p.state == state]
            refs = uow.link_store.source_refs(
                r for p in pairs for r in (p.left_record_id, p.right_record_id)
            )
        return [view_for(p, agency, refs) for p in pairs]

    def resolve_possible_match(
        self,
        *,
        agency: str,
        agreement_id: str,
        pair_id: str,
        decision: str,
        reason: str,
        request_id: str | None = None,
    ) -> dict[str, object]:
        """Record one holder's decision; both saying same merges the two subjects. Audited."""
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            pair = uow.link_store.pair(agreement.id, pair_id)
            if pair is None or not pair.held_by(agency):
                raise NotFound("no such possible match for your agency; list the queue")
            now = self._now()
            decided = decide(pair, agency, decision, now)
            uow.link_store.save_decision(decided)
            merged = False
            if decided.state == SAME:
                uow.audit.lock_head()
                subjects = uow.link_store.subjects_of(
                    (decided.left_record_id, decided.right_record_id)
                )
                keep, drop = sorted(
                    (subjects[decided.left_record_id], subjects[decided.right_record_id])
                )
                if keep != drop:
                    uow.link_store.merge_subjects(agreement.id, keep=keep, drop=drop)
                    merged = True
            self._audit(
                uow,
                AuditEvent(
                    actor=agency,
                    action="link",
                    outcome="permitted",
                    agreement_id=agreement.id,
                    agreement_version=agreement.version,
                    request_id=request_id,
                    # The reason is the holder's free text: kept out of the log, by length only.
                    detail={
                        "operation": "possible_match_decision",
                        "pair_id": pair.id,
                        "decision": decision,
                        "state": decided.state,
                        "merged": merged,
                        "reason_length": len(reason),
                    },
                ),
            )
            uow.commit()
        return {"pair_id": decided.id, "state": decided.state, "merged": merged}

    def linkage_quality(self, *, agreement_id: str) -> LinkageQuality:
        """Link the stored encodings as one batch and estimate its quality; the queue's counts."""
        agreement = self.registry.get(agreement_id, self._today())
        with self._units() as uow:
            encoded = uow.link_store.all_encodings(agreement.id)
            queue = uow.link_store.queue_counts(agreement.id)
        result = link_records(encoded) if len(encoded) > 1 else None
        bands = {b.value: 0 for b in Band}
        precision = recall = 1.0
        if result is not None:
            bands.update({b.value: n for b, n in result.quality.pairs_per_band.items()})
            precision, recall = result.quality.precision, result.quality.recall
        return LinkageQuality(
            agreement_id=agreement.id,
            records=len(encoded),
            precision=precision,
            recall=recall,
            pairs_per_band=bands,
            queue=queue,
        )


__all__ = [
    "PRIOR_MODEL",
    "ArrivedRecord",
    "LinkageQuality",
    "LinkageUseCases",
    "block_keys",
    "encode_arrivals",
    "link_arrivals",
    "queue_on_arrival",
]
