"""``broker link`` as a DPO runs it: clusters, pairs, the report, and every bad input refused."""

from __future__ import annotations

import csv
import itertools
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.keys import LinkageKey, write_linkage_key_file
from tests.functional.conftest import broker_env, run_broker

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "link"
AGENCIES = ("school", "police", "social-care", "ed")


def _env(tmp_path: Path) -> dict[str, str]:
    return broker_env(f"sqlite:///{tmp_path / 'accord.db'}", tmp_path)


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small moderate synthetic town, written once by ``broker synth``."""
    folder = tmp_path_factory.mktemp("town")
    result = run_broker(
        "synth", "--people", "120", "--seed", "5", "--profile", "moderate",
        "--out", str(folder), env=_env(folder), cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return folder


def _key_file(folder: Path, name: str = "link.key") -> Path:
    path = folder / name
    write_linkage_key_file(
        LinkageKey("link-test", 1, secrets.token_bytes(32)), path, at=datetime.now(UTC)
    )
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _link(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = run_broker("link", *args, env=_env(tmp_path), cwd=tmp_path, timeout=300)
    return result.returncode, result.stdout, result.stderr


def _inputs(town: Path) -> list[str]:
    return [str(town / f"{agency}.csv") for agency in AGENCIES]


def test_clusters_cover_every_record_once_and_pairs_agree_with_them(
    town: Path, tmp_path: Path
) -> None:
    out, pairs, report = tmp_path / "c.csv", tmp_path / "p.csv", tmp_path / "r.json"
    code, stdout, stderr = _link(
        tmp_path, *_inputs(town), "--out", str(out), "--pairs", str(pairs),
        "--report", str(report),
    )  # fmt: skip
    assert code == 0, stderr
    expected = [
        f"{agency}:{row['record_id']}"
        for agency in AGENCIES
        for row in _rows(town / f"{agency}.csv")
    ]
    clusters = _rows(out)
    assert list(clusters[0]) == ["record_id", "cluster_id"]
    assert [row["record_id"] for row in clusters] == expected  # each once, in input order
    label = {row["record_id"]: row["cluster_id"] for row in clusters}
    assert all(value.startswith("c_") for value in label.values())
    assert len(set(label.values())) < len(label)  # the four agencies hold the same people

    scored = _rows(pairs)
    assert scored, "a moderate town has matches"
    assert list(scored[0]) == ["left_record_id", "right_record_id", "score", "band", "rule"]
    for pair in scored:
        assert pair["left_record_id"] < pair["right_record_id"]
        assert pair["band"] in {"match", "possible"}
        float(pair["score"])
        if pair["band"] == "match":
            assert label[pair["left_record_id"]] == label[pair["right_record_id"]]
    # Every record sharing a cluster is joined to it by at least one match pair.
    matched = {
        p[side]
        for p in scored
        if p["band"] == "match"
        for side in ("left_record_id", "right_record_id")
    }
    sizes: dict[str, int] = {}
    for value in label.values():
        sizes[value] = sizes.get(value, 0) + 1
    assert {ref for ref, value in label.items() if sizes[value] > 1} == matched

    # Against the town's truth: the clusters are the engine's, so precision comes first.
    truth = {f"{r['agency']}:{r['record_id']}": r["person_id"] for r in _rows(town / "truth.csv")}
    assert set(truth) == set(label)
    same_person = same_cluster = both = 0
    for a, b in itertools.combinations(sorted(label), 2):
        person, cluster = truth[a] == truth[b], label[a] == label[b]
        same_person += person
        same_cluster += cluster
        both += person and cluster
    assert both / same_cluster >= 0.99  # pairwise precision
    assert both / same_person >= 0.9  # pairwise recall

    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["records"] == len(expected)
    assert data["clusters"] == len(set(label.values()))
    assert data["key"] == "random"
    assert sum(data["pairs"].values()) == data["comparisons"]
    assert data["pairs"]["match"] == sum(p["band"] == "match" for p in scored)
    assert data["pairs"]["possible"] == sum(p["band"] == "possible" for p in scored)
    assert 0.0 <= data["quality"]["estimated_precision"] <= 1.0
    assert 0.0 <= data["quality"]["estimated_recall"] <= 1.0
    for entry, agency in zip(data["files"], AGENCIES, strict=True):
        read = len(_rows(town / f"{agency}.csv"))
        assert entry["source"] == agency
        assert entry["read"] == read
        assert entry["linked"] + entry["alone"] + entry["rejected"] == read
        assert entry["linked"] == sum(1 for r in matched if r.startswith(agency + ":"))
    assert "estimated precision" in stdout
    assert "A fresh random key was used" in stdout
    # No identifier reaches any output: dates of birth, NHS numbers, UPNs, postcodes, addresses.
    written = "\n".join(
        (stdout, stderr, *(p.read_text(encoding="utf-8") for p in (out, pairs, report)))
    )
    values = {
        row[column]
        for agency in AGENCIES
        for row in _rows(town / f"{agency}.csv")
        for column in ("date_of_birth", "nhs_number", "upn", "postcode", "address_line")
        if len(row[column]) >= 6
    }
    assert len(values) > 100
    assert [value for value in values if value in written] == []


def test_the_same_key_gives_the_same_output(town: Path, tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    outputs = []
    for run in ("first", "again"):
        out, pairs = tmp_path / f"{run}.csv", tmp_path / f"{run}-pairs.csv"
        code, _, stderr = _link(
            tmp_path, *_inputs(town), "--out", str(out), "--pairs", str(pairs), "--key", str(key)
        )
        assert code == 0, stderr
        outputs.append((out.read_bytes(), pairs.read_bytes()))
    assert outputs[0] == outputs[1]
    # Encoding and comparing in two processes changes nothing.
    out, pairs = tmp_path / "two.csv", tmp_path / "two-pairs.csv"
    code, _, stderr = _link(
        tmp_path, *_inputs(town), "--out", str(out), "--pairs", str(pairs), "--key", str(key),
        "--workers", "2",
    )  # fmt: skip
    assert code == 0, stderr
    assert (out.read_bytes(), pairs.read_bytes()) == outputs[0]
    # The files in another order: the same clusters and pairs, rows in the new input order.
    out, pairs = tmp_path / "reversed.csv", tmp_path / "reversed-pairs.csv"
    code, _, stderr = _link(
        tmp_path, *reversed(_inputs(town)), "--out", str(out), "--pairs", str(pairs),
        "--key", str(key),
    )  # fmt: skip
    assert code == 0, stderr
    assert pairs.read_bytes() == outputs[0][1]
    assert sorted(_rows(out), key=lambda r: r["record_id"]) == sorted(
        _rows(tmp_path / "first.csv"), key=lambda r: r["record_id"]
    )


def test_one_file_is_deduplicated_and_a_row_without_identifiers_is_reported(
    tmp_path: Path,
) -> None:
    out, report = tmp_path / "c.csv", tmp_path / "r.json"
    code, _, stderr = _link(
        tmp_path, str(CORPUS / "no-usable-identifier.csv"), "--out", str(out),
        "--report", str(report),
    )  # fmt: skip
    assert code == 0, stderr
    label = {row["record_id"]: row["cluster_id"] for row in _rows(out)}
    assert list(label) == [f"no-usable-identifier:{n}" for n in (1, 2, 3)]
    assert label["no-usable-identifier:1"] == label["no-usable-identifier:3"]
    assert label["no-usable-identifier:2"] not in {
        label["no-usable-identifier:1"], label["no-usable-identifier:3"]
    }  # fmt: skip
    (entry,) = json.loads(report.read_text(encoding="utf-8"))["files"]
    assert (entry["read"], entry["linked"], entry["alone"], entry["rejected"]) == (3, 2, 0, 1)
    assert entry["rejected_lines"] == [3]
    assert entry["data_quality"]["no_usable_identifier"] == 1


def test_data_quality_counts(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    code, _, stderr = _link(
        tmp_path, str(CORPUS / "data-quality.csv"), str(CORPUS / "byte-order-mark.csv"),
        "--out", str(tmp_path / "c.csv"), "--report", str(report),
    )  # fmt: skip
    assert code == 0, stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    quality = data["files"][0]["data_quality"]
    assert quality["postcode_not_uk"] == 2
    assert quality["nhs_number_check_failed"] == 1
    assert quality["no_usable_identifier"] == 0
    assert data["files"][1]["read"] == 2  # the BOM file reads its header and both rows
    assert data["data_quality"]["postcode_not_uk"] == 2


BAD_INPUTS = [
    ("no-record-id.csv", (), "no-record-id.csv:1)", "no record_id column"),
    ("duplicate-record-id.csv", (), "duplicate-record-id.csv:4)", "line 2"),
    ("latin-1.csv", (), "latin-1.csv:3)", "not UTF-8"),
    ("ragged-row.csv", (), "ragged-row.csv:3)", "5 cells but the header has 4"),
    ("empty.csv", (), "empty.csv:1)", "the file is empty"),
    ("no-such-file.csv", (), "no-such-file.csv)", "does not exist"),
    ("data-quality.csv", ("--config", "unknown-field.yaml"), "unknown-field.yaml:4", "unknown"),
    ("data-quality.csv", ("--config", "no-strength.yaml"), "no-strength.yaml:5", "strength"),
    (
        "data-quality.csv",
        ("--config", "thresholds-out-of-order.yaml"),
        "thresholds-out-of-order.yaml:1",
        "match_at must be above possible_at",
    ),
]


@pytest.mark.parametrize(("name", "extra", "where", "what"), BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_1(
    tmp_path: Path, name: str, extra: tuple[str, ...], where: str, what: str
) -> None:
    args = [str(CORPUS / name), "--out", str(tmp_path / "c.csv")]
    if extra:
        args += [extra[0], str(CORPUS / extra[1])]
    code, stdout, stderr = _link(tmp_path, *args)
    assert code == 1
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("broker: error: ")
    assert where in stderr
    assert what in stderr
    assert "Traceback" not in stderr + stdout
    assert not (tmp_path / "c.csv").exists()


def test_outputs_that_cannot_be_written(tmp_path: Path) -> None:
    source = str(CORPUS / "data-quality.csv")
    for args, what in (
        (["--out", str(tmp_path / "missing" / "c.csv")], "folder of this output does not exist"),
        (["--out", str(tmp_path)], "this output is a folder"),
        (["--out", str(tmp_path / "c.csv"), "--report", str(tmp_path / "no" / "r.json")],
         "folder of this output does not exist"),
        (["--out", source], "would overwrite an input file"),
        (["--out", str(tmp_path / "c.csv"), "--pairs", str(tmp_path / "c.csv")],
         "two outputs share one path"),
    ):  # fmt: skip
        code, _, stderr = _link(tmp_path, source, *args)
        assert code == 1, args
        assert stderr.count("\n") == 1, stderr
        assert what in stderr, stderr
    assert not (tmp_path / "c.csv").exists()  # checked before any work, so nothing half-written


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key = _key_file(tmp_path)
    os.chmod(key, 0o644)
    code, _, stderr = _link(
        tmp_path, str(CORPUS / "data-quality.csv"), "--out", str(tmp_path / "c.csv"),
        "--key", str(key),
    )  # fmt: skip
    assert code == 1
    assert "readable by other users" in stderr
    assert stderr.count("\n") == 1
    assert not (tmp_path / "c.csv").exists()


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    copy = other / "data-quality.csv"
    copy.write_bytes((CORPUS / "data-quality.csv").read_bytes())
    code, _, stderr = _link(
        tmp_path, str(CORPUS / "data-quality.csv"), str(copy), "--out", str(tmp_path / "c.csv")
    )
    assert code == 1
    assert "share this name" in stderr


def test_a_file_of_no_records_links_nothing_and_completes(tmp_path: Path) -> None:
    out, report = tmp_path / "c.csv", tmp_path / "r.json"
    code, _, stderr = _link(
        tmp_path, str(CORPUS / "header-only.csv"), "--out", str(out), "--report", str(report)
    )
    assert code == 0, stderr
    assert out.read_bytes() == b"record_id,cluster_id\r\n"
    data = json.loads(report.read_text(encoding="utf-8"))
    assert (data["records"], data["clusters"], data["comparisons"]) == (0, 0, 0)
