"""Figures 5 and 6: the audit log's Merkle tree, read from stored nodes and rebuilt in full.

Figure 5 times ``audit.tree.inclusion_proof_at`` at random leaves of a tree of 1 M and
10 M leaves (100 k with ``--quick``) whose nodes sit in a SQLite file, one row per
complete perfect subtree; each proof is one ``SELECT`` of its O(log n) keys. The bare
side, alternating with it, is one primary-key ``SELECT`` of a single node: the least any
stored-node proof can cost. The table is built directly with ``executemany``, level by
level, not through ``nodes_for_append``, so the build is not part of any figure.

Figure 6 is ``StreamingTree.add`` over 1 M leaf hashes (how a full verification of the
log rebuilds its root) against bare ``hashlib.sha256`` over as many 32-byte inputs: the
tree does one interior hash per leaf, so the ratio is that hash plus the bookkeeping.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import count, repeat
from pathlib import Path

from audit.merkle import hash_children, verify_inclusion
from audit.tree import NodeKey, StreamingTree, inclusion_proof_at, root_at
from bench.workload import (
    SEED,
    Row,
    format_ms,
    format_rate,
    latency_ratio,
    percentile,
    rate,
    throughput_ratio,
)

PROOF_SIZES = (1_000_000, 10_000_000)
QUICK_PROOF_SIZES = (100_000,)
STREAM_LEAVES = 1_000_000
QUICK_STREAM_LEAVES = 100_000
PROOFS = 1_000
QUICK_PROOFS = 200
WARM_UP = 20
STREAM_REPEATS = 3
SCHEMA = (
    "CREATE TABLE node (level INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY(level, idx)) "
    "WITHOUT ROWID"
)
SELECT_ONE = "SELECT hash FROM node WHERE level = ? AND idx = ?"


class SqliteNodeStore:
    """A ``NodeStore`` over the bench's node table: one ``SELECT`` per ``get_nodes``."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def get_nodes(self, keys: Collection[NodeKey]) -> Mapping[NodeKey, bytes]:
        """Return the held hashes of ``keys``; missing keys are absent."""
        if not keys:
            return {}
        # OR of equalities: SQLite plans each as a primary-key search, whereas
        # "(level, idx) IN (VALUES ...)" scans the whole table.
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(keys))
        parameters = [part for key in keys for part in key]
        rows = self.connection.execute(
            f"SELECT level, idx, hash FROM node WHERE {where}",  # noqa: S608 (only placeholders)
            parameters,
        )
        return {(level, index): value for level, index, value in rows}

    def put_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """Insert ``(level, index, hash)`` rows and commit."""
        with self.connection:
            self.connection.executemany("INSERT INTO node VALUES (?, ?, ?)", nodes)


def leaf_hashes(size: int) -> list[bytes]:
    """``size`` deterministic leaf hashes (RFC 9162 leaf prefix over the index)."""
    sha256 = hashlib.sha256
    return [sha256(b"\x00" + position.to_bytes(8, "big")).digest() for position in range(size)]


def _levels(leaves: list[bytes]) -> Iterator[list[bytes]]:
    level = leaves
    while level:
        yield level
        # An odd last node has no sibling yet: it is not a complete subtree one level up.
        pairs = zip(level[::2], level[1::2], strict=False)
        level = [hash_children(left, right) for left, right in pairs]


def build_node_table(path: Path, leaves: list[bytes]) -> None:
    """Write every complete perfect subtree of ``leaves`` to a new SQLite file at ``path``."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = OFF")  # a throwaway file: no crash safety
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute(SCHEMA)
        with connection:
            for height, level in enumerate(_levels(leaves)):
                connection.executemany(
                    "INSERT INTO node VALUES (?, ?, ?)", zip(repeat(height), count(), level)
                )
    finally:
        connection.close()


def _describe(samples: Sequence[float]) -> str:
    return f"p50 {format_ms(percentile(samples, 0.5))}, p99 {format_ms(percentile(samples, 0.99))}"


def proof_row(folder: Path, size: int, proofs: int) -> Row:
    """Figure 5 at one size: p50/p99 of inclusion proofs against single-node SELECTs."""
    leaves = leaf_hashes(size)
    path = folder / f"audit-tree-{size}.sqlite"
    started = time.perf_counter()
    build_node_table(path, leaves)
    build_seconds = time.perf_counter() - started
    rng = random.Random(SEED + 5)
    indices = [rng.randrange(size) for _ in range(WARM_UP + proofs)]
    connection = sqlite3.connect(path)
    store = SqliteNodeStore(connection)
    proof_times: list[float] = []
    bare_times: list[float] = []
    try:
        root = root_at(store, size)
        for position, index in enumerate(indices):
            began = time.perf_counter()
            proof = inclusion_proof_at(store, index, size)
            middle = time.perf_counter()
            found = connection.execute(SELECT_ONE, (0, index)).fetchone()
            finished = time.perf_counter()
            if found is None or found[0] != leaves[index]:
                raise RuntimeError(f"leaf {index} is not in the node table")
            # Outside the timing: a figure for proofs that do not verify would mean nothing.
            verify_inclusion(leaves[index], index, size, proof, root)
            if position >= WARM_UP:
                proof_times.append(middle - began)
                bare_times.append(finished - middle)
    finally:
        connection.close()
        path.unlink()
    return Row(
        figure="5 audit proof",
        backend="SQLite (temp file)",
        broker=_describe(proof_times),
        bare=_describe(bare_times),
        ratio=latency_ratio(percentile(proof_times, 0.5), percentile(bare_times, 0.5)),
        notes=f"{size:,} leaves, {proofs:,} proofs (+{WARM_UP}), table built in "
        f"{build_seconds:.1f} s; bare: one node by primary key; target p99 < 5 ms",
    )


def stream_row(size: int) -> Row:
    """Figure 6: ``StreamingTree`` leaves per second against bare SHA-256, best of three."""
    leaves = leaf_hashes(size)
    sha256 = hashlib.sha256
    best_tree = best_bare = float("inf")
    # The sides take turns and keep their shortest run: both see the same machine, and
    # the shortest run is the one least disturbed by whatever else is running.
    for _ in range(STREAM_REPEATS):
        tree = StreamingTree()
        add = tree.add
        started = time.perf_counter()
        for leaf in leaves:
            add(leaf)
        tree.root()
        middle = time.perf_counter()
        for leaf in leaves:
            sha256(leaf).digest()
        finished = time.perf_counter()
        if tree.size != size:
            raise RuntimeError("the streaming tree did not take every leaf")
        best_tree, best_bare = min(best_tree, middle - started), min(best_bare, finished - middle)
    tree_rate, bare_rate = rate(size, best_tree), rate(size, best_bare)
    return Row(
        figure="6 audit stream",
        backend="CPU, 1 core",
        broker=format_rate(tree_rate),
        bare=format_rate(bare_rate),
        ratio=throughput_ratio(tree_rate, bare_rate),
        notes=f"{size:,} leaf hashes (a record is one leaf), best of {STREAM_REPEATS}; "
        "bare: sha256 of each 32-byte input",
    )


def run(folder: Path, quick: bool = False) -> list[Row]:
    """Figures 5 and 6; the node tables live in ``folder`` and are deleted after use."""
    sizes = QUICK_PROOF_SIZES if quick else PROOF_SIZES
    proofs = QUICK_PROOFS if quick else PROOFS
    rows = [proof_row(folder, size, proofs) for size in sizes]
    rows.append(stream_row(QUICK_STREAM_LEAVES if quick else STREAM_LEAVES))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run figures 5 and 6 alone: ``python -m bench.audit_tree [--quick]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.audit_tree")
    parser.add_argument("--quick", action="store_true", help="100,000 leaves only")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as temp:
        for row in run(Path(temp), quick=arguments.quick):
            print(" | ".join([row.figure, row.backend, row.broker, row.bare, row.ratio, row.notes]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
