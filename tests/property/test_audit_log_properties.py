"""Properties of the Merkle audit log over random logs and random tampering.

Untampered logs always verify; any tampering that changes what the log holds is
refused; every entry has an inclusion proof against a signed checkpoint; and a
fork of the log cannot prove itself consistent with a checkpoint of the original.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import checkpoint as notes
from audit.entries import canonical_entry, seal_entry
from audit.events import AuditEvent, LoggedEntry
from audit.log import LogSigner, checkpoint_now
from audit.merkle import InMemoryTree, verify_consistency, verify_inclusion
from audit.tree import consistency_proof_at, inclusion_proof_at, nodes_for_append, root_at
from broker.errors import AuditIntegrityError
from tests.audit_fakes import ORIGIN, MemoryAudit, at, fill, reseal, signer, verify

EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Written = tuple[MemoryAudit, LogSigner]
ACTORS = ("operator", "school", "ed", "police", "social-care")
ACTIONS = (
    "ingest",
    "link",
    "lookup",
    "key_operation",
    "credential_issued",
    "credential_revoked",
    "agreement_change",
)

_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
_detail_values = st.one_of(
    st.integers(-1000, 1000),
    st.booleans(),
    st.none(),
    _words,
    st.text(max_size=8),
    st.lists(_words, max_size=3),
)
details = st.dictionaries(_words, _detail_values, max_size=4)

events = st.builds(
    AuditEvent,
    actor=st.sampled_from(ACTORS),
    action=st.sampled_from(ACTIONS),
    outcome=st.sampled_from(("permitted", "refused")),
    reason_code=st.none() | _words,
    agreement_id=st.none() | st.just("sv-early-identification"),
    agreement_version=st.none() | st.integers(1, 5),
    purpose=st.none() | _words,
    dataset_id=st.none() | _words,
    request_id=st.none() | _words,
    detail=details,
)


@st.composite
def logs(draw: st.DrawFn, min_size: int = 1, max_size: int = 24) -> Written:
    """A log written through ``audit.log.append``, with checkpoints by count and by time."""
    items = draw(st.lists(events, min_size=min_size, max_size=max_size))
    gaps = draw(st.lists(st.integers(0, 90), min_size=len(items), max_size=len(items)))
    log_signer = signer(
        every_entries=draw(st.integers(1, 8)), every_seconds=draw(st.sampled_from([30, 60, 3600]))
    )
    times = [float(sum(gaps[: n + 1])) for n in range(len(items))]
    audit = MemoryAudit()
    fill(audit, items, log_signer=log_signer, seconds=times)
    return audit, log_signer


def _written(entries: list[LoggedEntry]) -> list[tuple[bytes, str]]:
    """What each entry says, byte for byte, and its stored leaf hash.

    Not ``==`` on the entries: ``{"n": 1} == {"n": True}`` although they are written apart.
    """
    return [(canonical_entry(e.seq, e.at, e.event), e.leaf_hash) for e in entries]


def _fails(
    audit: MemoryAudit, log_signer: LogSigner, entries: list[LoggedEntry] | None = None
) -> bool:
    try:
        verify(audit, log_signer, entries=entries)
    except AuditIntegrityError:
        return True
    return False


# -- tampering ---------------------------------------------------------------------


@st.composite
def tamperings(draw: st.DrawFn, entries: list[LoggedEntry]) -> tuple[str, list[LoggedEntry]]:
    """One tampering of the entries as storage would return them (by position)."""
    size = len(entries)
    kind = draw(st.sampled_from(("change", "rehash", "delete", "reorder", "truncate", "forge")))
    result = list(entries)
    index = draw(st.integers(0, size - 1))
    if kind in {"change", "rehash"}:
        target = result[index]
        field = draw(st.sampled_from(("actor", "action", "detail", "at", "request_id", "leaf")))
        if field == "leaf":
            changed = dataclasses.replace(
                target, leaf_hash=draw(st.binary(min_size=32, max_size=32)).hex()
            )
        elif field == "at":
            changed = dataclasses.replace(target, at=at(draw(st.integers(-(10**6), 10**6))))
        else:
            value: Any = draw(
                {
                    "actor": st.sampled_from(ACTORS),
                    "action": st.sampled_from(ACTIONS),
                    "detail": details,
                    "request_id": st.none() | _words,
                }[field]
            )
            changed = dataclasses.replace(
                target, event=dataclasses.replace(target.event, **{field: value})
            )
        if kind == "rehash" and field != "leaf":
            changed = seal_entry(changed.seq, changed.at, changed.event)
        result[index] = changed
    elif kind == "delete":
        del result[index]
    elif kind == "reorder":
        result = draw(st.permutations(result))
        if draw(st.booleans()):  # renumber and rehash, as a careful attacker would
            result = [reseal(e, seq=n + 1) for n, e in enumerate(result)]
    elif kind == "truncate":
        result = result[: draw(st.integers(0, size - 1))]
    else:  # a forged entry with a correct leaf hash, inserted anywhere
        position = draw(st.integers(0, size))
        forged = seal_entry(position + 1, at(draw(st.integers(0, 10**5))), draw(events))
        later = result[position:]
        if draw(st.booleans()):  # renumber and rehash what follows
            later = [reseal(e, seq=e.seq + 1) for e in later]
        result = [*result[:position], forged, *later]
    return kind, result


@EXAMPLES
@given(logs())
def test_untampered_logs_always_verify(written: Written) -> None:
    audit, log_signer = written
    verified = verify(audit, log_signer)
    leaves = [bytes.fromhex(e.leaf_hash) for e in audit.iter_all()]
    assert verified.size == len(leaves) == audit.head_size
    assert verified.root_hash == InMemoryTree(leaves).root().hex() == audit.head_root
    assert verified.checkpoints == len(audit.checkpoints())
    assert audit.checkpoints()[0].size == 1


@EXAMPLES
@given(st.data(), logs())
def test_any_tampering_that_changes_the_log_is_refused(
    data: st.DataObject, written: Written
) -> None:
    audit, log_signer = written
    original = list(audit.iter_all())
    kind, tampered = data.draw(tamperings(original), label="tampering")
    # The tampered entries are what storage serves, in that order.
    assert _fails(audit, log_signer, tampered) == (_written(tampered) != _written(original)), kind


def _rewrite_everything(audit: MemoryAudit, entries: list[LoggedEntry]) -> None:
    """Entries, nodes and head made consistent again: all that is possible without the key."""
    audit.entries = entries
    audit.nodes.nodes.clear()
    for size, entry in enumerate(entries):
        leaf = [bytes.fromhex(entry.leaf_hash)]
        audit.nodes.put_nodes(nodes_for_append(audit.nodes, size, leaf))
    audit.set_head(len(entries), root_at(audit.nodes, len(entries)).hex())


@EXAMPLES
@given(st.data(), logs())
def test_a_consistent_rewrite_is_refused_exactly_when_a_checkpoint_covers_it(
    data: st.DataObject, written: Written
) -> None:
    audit, log_signer = written
    original = list(audit.iter_all())
    _, tampered = data.draw(tamperings(original), label="tampering")
    # Make the tampered log self-consistent: positions, leaf hashes, nodes and head.
    rebuilt = [seal_entry(n + 1, e.at, e.event) for n, e in enumerate(tampered)]
    _rewrite_everything(audit, rebuilt)
    signed = [c.size for c in audit.checkpoints()]
    beyond = max(signed) > len(rebuilt)
    rewritten_under = any(_written(rebuilt[:size]) != _written(original[:size]) for size in signed)
    assert _fails(audit, log_signer) == (beyond or rewritten_under)


# -- proofs ------------------------------------------------------------------------


@EXAMPLES
@given(logs())
def test_every_entry_has_an_inclusion_proof_against_a_signed_checkpoint(written: Written) -> None:
    audit, log_signer = written
    for entry in audit.iter_all():
        # As AuditTrail.inclusion_proof: the first checkpoint covering the entry.
        stored = audit.checkpoint_covering(entry.seq)
        if stored is None:
            stored = checkpoint_now(audit, log_signer, at=at(10**6))
        root = notes.verify(stored.note, ORIGIN, log_signer.public_key).root_hash
        assert stored.size >= entry.seq
        proof = inclusion_proof_at(audit.nodes, entry.seq - 1, stored.size)
        leaf = bytes.fromhex(entry.leaf_hash)
        verify_inclusion(leaf, entry.seq - 1, stored.size, proof, root)
        # ... and it proves only that entry.
        other = seal_entry(entry.seq, entry.at, dataclasses.replace(entry.event, actor="forged"))
        try:
            verify_inclusion(
                bytes.fromhex(other.leaf_hash), entry.seq - 1, stored.size, proof, root
            )
        except AuditIntegrityError:
            pass
        else:
            raise AssertionError(f"a forged entry {entry.seq} was proven included")


@EXAMPLES
@given(st.data(), logs(min_size=2))
def test_a_fork_cannot_prove_itself_consistent_with_an_earlier_checkpoint(
    data: st.DataObject, written: Written
) -> None:
    audit, log_signer = written
    original = list(audit.iter_all())
    old = data.draw(st.sampled_from(audit.checkpoints()), label="old checkpoint")
    old_root = notes.verify(old.note, ORIGIN, log_signer.public_key).root_hash
    # The fork keeps a prefix shorter than the checkpoint, then writes other entries.
    prefix = data.draw(st.integers(0, old.size - 1), label="shared prefix")
    extra = data.draw(st.lists(events, min_size=old.size - prefix, max_size=old.size - prefix + 8))
    fork = MemoryAudit()
    for entry in original[:prefix]:
        fork.append(entry)
        fork.nodes.put_nodes(
            nodes_for_append(fork.nodes, entry.seq - 1, [bytes.fromhex(entry.leaf_hash)])
        )
        fork.set_head(entry.seq, root_at(fork.nodes, entry.seq).hex())
    forked = [dataclasses.replace(e, detail={**e.detail, "FORK": n}) for n, e in enumerate(extra)]
    fill(fork, forked, log_signer=None, seconds=[float(prefix + n) for n in range(len(forked))])
    assert fork.head_size >= old.size
    new_root = bytes.fromhex(fork.head_root)
    proof = consistency_proof_at(fork.nodes, old.size, fork.head_size)
    try:
        verify_consistency(old.size, fork.head_size, old_root, new_root, proof)
    except AuditIntegrityError:
        pass
    else:
        raise AssertionError(f"a fork after {prefix} entries proved consistent with {old.size}")
    # The original itself does prove consistent with its own checkpoint.
    honest = consistency_proof_at(audit.nodes, old.size, audit.head_size)
    verify_consistency(old.size, audit.head_size, old_root, bytes.fromhex(audit.head_root), honest)
