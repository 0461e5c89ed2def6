"""End to end: an agency tokenises its extract at source and a partner's lookup finds it."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import httpx

from adapters.base import select_declared
from adapters.csv import iter_batches, read_extract
from adapters.tokenise import batch_body, read_tokenised
from agreements.models import Dataset
from broker.keys import load_linkage_key_file
from tests.auth_helpers import server_agency_headers
from tests.functional.conftest import BROKER, Server, run_broker
from tests.helpers import AGREEMENT, EXAMPLE_FILE, example_agreement, idempotent

ED = "ed-attendances"
LOOKUP_IDENTIFIERS = ("given_name", "family_name", "date_of_birth", "postcode")


def _adapter(*args: str, server: Server, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``broker adapter ...``; the sub-app run alone until it is registered in ``broker``."""
    registered = run_broker("adapter", "--help", env=server.env, cwd=cwd).returncode == 0
    command = [BROKER, "adapter"] if registered else [sys.executable, "-m", "broker.cli.adapter"]
    return subprocess.run(
        [*command, *args],
        env=server.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _api_key(server: Server, agency: str, cwd: Path) -> dict[str, str]:
    return server_agency_headers(server.base_url, server.env, cwd, agency)


def _post(
    client: httpx.Client, dataset: str, body: dict[str, object], headers: dict[str, str]
) -> dict[str, object]:
    response = client.post(
        f"/v1/agreements/{AGREEMENT}/datasets/{dataset}/batches",
        json=body,
        headers=idempotent(headers),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_tokenised_at_source_over_real_http(server: Server, tmp_path: Path) -> None:
    extracts = tmp_path / "extracts"
    made = run_broker("synth", "--out", str(extracts), "--seed", "3", env=server.env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    # The operator exports the linkage key; the file is private and never overwritten.
    key_file = tmp_path / "ed.linkage.json"
    exported = _adapter(
        "export-key", AGREEMENT, "--out", str(key_file), server=server, cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = _adapter("export-key", AGREEMENT, "--out", str(key_file), server=server, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "broker: error: linkage key file already exists; it is never overwritten"
    ]

    # The emergency department tokenises in its own building: no database, no network.
    tokens_csv = tmp_path / "ed-tokens.csv"
    tokenised = _adapter(
        "tokenise",
        "--agreement",
        str(EXAMPLE_FILE),
        "--dataset",
        ED,
        "--key",
        str(key_file),
        str(extracts / "ed.csv"),
        str(tokens_csv),
        server=server,
        cwd=tmp_path,
    )
    assert tokenised.returncode == 0, tokenised.stderr
    assert tokenised.stdout.startswith("tokenised ")
    linkage = load_linkage_key_file(key_file, agreement_id=AGREEMENT)
    records = read_tokenised(tokens_csv)
    assert records
    declared = {"record_id", "tokens", *(spec.name for spec in _dataset(ED).fields)}
    assert all(set(r) <= declared for r in records)

    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        # Social care sends its extract in clear first; the ED's tokens must link to it.
        csc_rows = select_declared(
            read_extract(extracts / "social-care.csv").rows, _dataset("csc-involvement")
        )
        social_care = _api_key(server, "social-care", tmp_path)
        for batch in iter_batches(csc_rows, 250):
            _post(client, "csc-involvement", {"records": batch}, social_care)
        ed = _api_key(server, "ed", tmp_path)
        linked = 0
        for batch in iter_batches(records, 250):
            body = _post(client, ED, batch_body(batch, linkage), ed)
            assert body["tokenised_at_source"] is True
            linked += int(str(body["linked"]))
        assert linked > 0

        # Social care looks a young person up by the identifiers the ED never sent.
        sent = {str(r["record_id"]) for r in records}
        found = 0
        tried = 0
        for row in read_extract(extracts / "ed.csv").rows:
            if row["record_id"] not in sent or tried == 20:
                continue
            identifiers = {k: row[k] for k in LOOKUP_IDENTIFIERS if k in row}
            if len(identifiers) < len(LOOKUP_IDENTIFIERS):
                continue
            response = client.post(
                f"/v1/agreements/{AGREEMENT}/lookups",
                json={"purpose": "safeguarding-triage", "identifiers": identifiers},
                headers=social_care,
            )
            if response.status_code == 422:  # a postcode the ED mistyped: not a usable lookup
                continue
            assert response.status_code == 200, response.text
            tried += 1
            holdings = [h for h in response.json()["holdings"] if h["agency"] == "ed"]
            refs = {r["reference"] for h in holdings for r in h["records"]}
            if row["record_id"] in refs:
                found += 1
        assert tried == 20
        assert found >= 15, f"only {found} of {tried} at-source records were found"

    # The ED's identifiers never reached the broker, not even its log.
    log = server.log.read_text().lower()
    for row in read_extract(extracts / "ed.csv").rows[:50]:
        for name in ("given_name", "family_name", "postcode", "nhs_number"):
            value = row.get(name, "").strip().lower()
            if len(value) >= 3:
                assert value not in log
    verified = run_broker("audit", "verify", env=server.env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr


def _dataset(dataset_id: str) -> Dataset:
    dataset = example_agreement().dataset(dataset_id)
    assert dataset is not None
    return dataset
