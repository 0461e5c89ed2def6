"""The corpus of known-nasty inputs (tests/corpus) against a running broker, its parsers and CLI.

Every JSON body is posted to every endpoint that takes a body, as a role that
may call it; every CSV goes to the extract reader and the tokeniser; every
YAML file to the agreement parser, to ``broker agreements validate`` and to
``POST /v1/agreements/validate``. Each must be refused with a clear 4xx and a
stable code (or, for the parsers, an Accord error with a code), never a 5xx;
nothing may be stored; and the marker planted in every hostile value must never
come back in a response or reach the server's log.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from adapters.csv import read_extract
from adapters.tokenise import tokenise_extract
from agreements.loader import load_agreement, parse_agreement
from broker.errors import AccordError
from broker.keys import LinkageKey
from tests.functional.conftest import BROKER
from tests.fuzz.conftest import LiveServer, corpus_dir
from tests.helpers import AGREEMENT, example_agreement

MARKER = "ZZHOSTILEZZ"
CORPUS = corpus_dir()
JSON_FILES = sorted((CORPUS / "json").glob("*.json"))
CSV_FILES = sorted((CORPUS / "csv").glob("*.csv"))
YAML_FILES = sorted((CORPUS / "yaml").glob("*.yaml"))

# The guard's answer to a body, wherever it is sent (it runs before any route).
GUARD = {
    "huge-integer.json": (422, "json_number_out_of_range"),
    "integer-2-pow-63.json": (422, "json_number_out_of_range"),
    "negative-integer-beyond-64-bits.json": (422, "json_number_out_of_range"),
    "float-overflow.json": (422, "json_number_out_of_range"),
    "nan.json": (400, "json_constant_invalid"),
    "infinity.json": (400, "json_constant_invalid"),
    "negative-infinity.json": (400, "json_constant_invalid"),
    "deep-nesting.json": (422, "json_too_deep"),
    "nesting-33.json": (422, "json_too_deep"),
    "byte-order-mark.json": (400, "json_encoding_invalid"),
    "utf-16.json": (400, "json_encoding_invalid"),
    "invalid-utf-8.json": (400, "json_encoding_invalid"),
    "overlong-utf-8.json": (400, "json_encoding_invalid"),
    "nul-escape.json": (422, "json_string_invalid"),
    "nul-raw-byte.json": (400, "malformed_json"),
    "lone-surrogate.json": (422, "json_string_invalid"),
    "duplicate-keys.json": (400, "json_duplicate_key"),
    "duplicate-keys-in-record.json": (400, "json_duplicate_key"),
    "long-line.json": (422, "json_string_too_long"),
    "long-key.json": (422, "json_string_too_long"),
    "truncated.json": (400, "malformed_json"),
    "trailing-garbage.json": (400, "malformed_json"),
}
# Valid JSON whose hostility is in a name: the batch is refused by the identifier checks.
IN_A_NAME = {
    "rtl-override-name.json",
    "zero-width-name.json",
    "confusable-and-bidi-name.json",
}
BATCHES = f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/batches"
# (path, role) for every operation that takes a JSON body; real ids so routes are reached.
BODY_ENDPOINTS = (
    (BATCHES, "system:school"),
    (f"/v1/agreements/{AGREEMENT}/datasets/school-attendance/rekey", "system:school"),
    (f"/v1/agreements/{AGREEMENT}/lookups", "system:social-care"),
    (f"/v1/agreements/{AGREEMENT}/aggregates", "system:social-care"),
    (f"/v1/agreements/{AGREEMENT}/subscriptions", "system:social-care"),
    (f"/v1/agreements/{AGREEMENT}/notifications/acknowledgements", "system:social-care"),
    ("/v1/agreements/validate", "dpo:police"),
    ("/v1/agreements/drafts", "dpo:police"),
    (f"/v1/agreements/{AGREEMENT}/versions/1/approvals", "dpo:police"),
    ("/v1/audit/checkpoints/1/cosignatures", "system:social-care"),
    ("/v1/audit/search", "ig_lead:social-care"),
    ("/v1/audit/reports/subject", "ig_lead:social-care"),
    ("/v1/sessions", "none"),
)
# What the extract reader and the tokeniser refuse a whole file with.
CSV_REFUSALS = {"invalid_input", "extract_invalid"}
# Routes whose bodies carry long text (YAML, notes): a long string is theirs to judge.
TEXT_ROUTES = ("/v1/agreements/validate", "/v1/agreements/drafts", "/cosignatures")


def _post(server: LiveServer, path: str, role: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Idempotency-Key": "corpus-" + path[-24:]}
    if role != "none":
        headers.update(server.fresh_roles()[role])
    return httpx.post(server.base_url + path, content=body, headers=headers, timeout=60)


def _refused(response: httpx.Response) -> dict[str, object]:
    assert 400 <= response.status_code < 500, response.text[:300]
    error = response.json()["error"]
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert MARKER not in response.text
    assert MARKER.lower() not in response.text
    return dict(error)


def test_json_corpus_over_http(live_sqlite: LiveServer) -> None:
    assert {f.name for f in JSON_FILES} == set(GUARD) | IN_A_NAME
    before = live_sqlite.counts()
    seen: dict[tuple[int, str], int] = {}
    for file in JSON_FILES:
        body = file.read_bytes()
        for path, role in BODY_ENDPOINTS:
            response = _post(live_sqlite, path, role, body)
            error = _refused(response)
            key = (response.status_code, str(error["code"]))
            seen[key] = seen.get(key, 0) + 1
            if file.name in GUARD:
                status, code = GUARD[file.name]
                if code == "json_string_too_long" and path.endswith(TEXT_ROUTES):
                    # The route, not the guard, refuses it: a batch is not a document.
                    assert response.status_code in {400, 401, 403, 404, 409, 422}, file.name
                    continue
                assert (response.status_code, error["code"]) == (status, code), (file.name, path)
            elif path == BATCHES:
                assert (response.status_code, error["code"]) == (422, "batch_invalid"), file.name
    print(f"\ncorpus: {len(JSON_FILES)} JSON bodies x {len(BODY_ENDPOINTS)} endpoints: {seen}")
    assert live_sqlite.counts() == before
    log = live_sqlite.log.read_text()
    assert MARKER not in log
    assert MARKER.lower() not in log
    assert not live_sqlite.unexpected_errors()


@pytest.mark.parametrize("file", CSV_FILES, ids=[f.name for f in CSV_FILES])
def test_csv_corpus_through_the_adapters(file: Path, tmp_path: Path) -> None:
    """The reader parses the file or refuses it with a code; the tokeniser never fails otherwise."""
    refusals: list[AccordError] = []
    try:
        read_extract(file)
    except AccordError as refused:
        refusals.append(refused)
    key = LinkageKey(AGREEMENT, 1, b"k" * 32)
    try:
        tokenised = tokenise_extract(
            example_agreement(), "school-attendance", key, file, tmp_path / "out.csv"
        )
    except AccordError as refused:
        refusals.append(refused)
    # The reader and the tokeniser agree: both refuse a file, or both take it.
    assert len(refusals) in {0, 2}
    for refused in refusals:
        assert refused.code in CSV_REFUSALS, refused.code
        assert MARKER not in refused.one_line()
    if refusals:
        assert not (tmp_path / "out.csv").exists()
        return
    for problem in (*tokenised.rejected, *tokenised.unusable):
        assert MARKER not in problem.describe()
        assert problem.code


def _yaml_text(file: Path) -> str | None:
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parse_yaml(file: Path) -> None:
    text = _yaml_text(file)
    if text is None:  # not UTF-8: only the file loader can be handed it
        load_agreement(file)
    else:
        parse_agreement(text, source=file.name)


@pytest.mark.parametrize("file", YAML_FILES, ids=[f.name for f in YAML_FILES])
def test_yaml_corpus_through_the_parser(file: Path) -> None:
    with pytest.raises(AccordError) as raised:
        _parse_yaml(file)
    assert raised.value.code == "agreement_invalid"
    assert MARKER not in raised.value.one_line()


def test_yaml_corpus_over_the_cli_and_http(live_sqlite: LiveServer) -> None:
    done = subprocess.run(
        [BROKER, "agreements", "validate", *map(str, YAML_FILES)],
        env=live_sqlite.env,
        cwd=live_sqlite.cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "internal error" not in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert MARKER not in done.stderr + done.stdout
    for file in YAML_FILES:
        assert file.name in done.stderr, file.name
    before = live_sqlite.counts()
    for file in YAML_FILES:
        text = file.read_bytes().decode("utf-8", errors="replace")
        for path in ("/v1/agreements/validate", "/v1/agreements/drafts"):
            body = json.dumps({"document": text}).encode()
            response = _post(live_sqlite, path, "dpo:police", body)
            error = _refused(response)
            assert response.status_code == 422, (file.name, path, error["code"])
    assert live_sqlite.counts() == before
    assert not live_sqlite.unexpected_errors()
