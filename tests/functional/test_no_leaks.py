"""The whole demo at DEBUG: no identifier, key, token or payload in its logs or error bodies.

What runs: ``broker demo --no-serve`` in a subprocess, with ``BROKER_LOG_LEVEL=DEBUG``.
The demo does not configure logging itself, so a small driver (``DRIVER`` below)
does what ``broker serve`` does with that setting, ``install_json_logging`` at the
configured level, before handing over to the ``broker`` command's own ``main``.
Every logger in the process then writes JSON lines to stderr at DEBUG: the
broker's API (it runs in the same process), its access log, the scenario's
HTTP client, httpcore, alembic. The driver also records every HTTP exchange
the scenario makes (status, path, the Authorization header it sent, and the
response body), so the test sees exactly what the demo's agencies received.

What is searched, and where (the haystacks):

* **logs**: the process's stderr and stdout (the printed summary and
  checkpoint) and any ``*.log`` file left in the run's folder;
* **error bodies**: every response with status 400 or above;
* **other bodies**: every 2xx response that is not a release or an issued token;
* **release bodies**: 200 answers to lookups, aggregates and notifications,
  the only responses in which the agreement lets data leave;
* **issued tokens**: answers of the token endpoint and people's sign-in
  (``/oauth/token``, ``/v1/sessions``), where an access token is handed over.

The needles, read back from what the demo really used:

* identifiers of every person in the generated extracts, and of the demo's own
  refused record: given and family names (as typed, each normalised part, and
  the whole name), dates of birth in ISO, day-first and month-first forms with
  ``/``, ``-`` and ``.`` and as eight digits, postcodes as typed, canonical and
  without the space, NHS numbers bare and grouped 3-3-4, UPNs, and the address
  line (which the adapter must never send). Searched in **every** haystack,
  release bodies included: the example agreement releases no identifier field
  (asserted below, so a change to the agreement cannot make this pass silently);
* secrets: the master key, the key-wrapping key derived from it, and every
  working key unwrapped from the demo's database (data, pseudonym, linkage,
  log-signing and access-token keys), each as hex and as standard and URL-safe
  base64 with and without padding; every match token in the database as hex
  and base64; whatever the scenario proved itself with at the token endpoint
  or sign-in (client assertions, passwords); the body of any private key file
  the run left (with ``--no-serve`` the agencies' private keys stay in the
  demo's memory, so a leak of one is caught only through files). Searched
  everywhere;
* the bearer credentials (access tokens) the scenario sent: searched
  everywhere except the answers that issued them;
* distinctive payload values: dates and free text the extracts hold (record
  fields that are not identifiers). Searched in logs, error bodies and other
  bodies; a field released to nobody (``allocated_team``, for instance) is
  searched in release bodies too. Codes from the agreement's own value lists,
  booleans and small numbers are not distinctive: they are the agreement's
  vocabulary, which its error messages may quote, or figures that occur in
  timings and counts, so a hit would prove nothing;
* the providers' record references and the recipients' pseudonyms: searched in
  logs (a recipient legitimately sees both in its own answers);
* ``Traceback`` and SQL text: everywhere.

Identifier and payload values match only as whole words (no letter or digit
either side), case-folded; secrets and tokens match anywhere. Short names are
searched too, so a few names that are also ordinary words in the broker's own
fixed text would collide ("Accord demo", "Will assume"): those words are
listed in ``FIXED_TEXT_WORDS`` and, for them only, a hit counts when the name
is in the person's full name or is a JSON string of its own. Dates are not
unique to a person: a date held in a field released to nobody is searched in
release bodies only when no released field in the extracts holds the same date.

``test_the_search_finds_what_is_planted`` proves the search can fail: it plants
values in a copy of the real captured output and expects each one reported.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agreements.loader import load_agreement
from broker.keys import load_key_file
from broker.keystore import KeySlot, wrapping_context
from broker.normalise import name_parts, normalise_postcode
from broker.scenario import AGREEMENT_FILE, DATASETS, PERMITTED
from tests.functional.conftest import free_port

IDENTIFIER_FIELDS = (
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address_line",
    "nhs_number",
    "upn",
)
# The identifiers of the record the demo sends in its refused batch (broker/scenario.py).
DEMO_REFUSED_RECORD = {
    "given_name": "Demo",
    "family_name": "Example",
    "date_of_birth": "2010-05-04",
    "postcode": "NS1 1AA",
}
# Ordinary words in the broker's and its libraries' fixed text that are also names.
FIXED_TEXT_WORDS = frozenset({"demo", "will"})
SQL_TEXT = re.compile(
    r"\b(SELECT\s[^\n]{0,200}?\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+TABLE|ALTER\s+TABLE|sqlite3\.\w+Error|psycopg\.\w*Error|sqlalchemy\.exc)\b",
    re.IGNORECASE,
)
RELEASE_PATHS = ("/lookups", "/aggregates", "/notifications")
# Where callers obtain access tokens: agency systems (OAuth) and people (sign-in).
ISSUING_PATHS = ("/oauth/token", "/v1/sessions")
REPOSITORY = Path(__file__).resolve().parents[2]

DRIVER = """
import json, os, sys
from urllib.parse import parse_qs
import httpx
from broker.config import load_settings
from broker.log_format import install_json_logging

# What `broker serve` does with BROKER_LOG_LEVEL; the demo leaves logging unconfigured.
install_json_logging(load_settings().log_level)
_capture = open(os.environ["NO_LEAK_CAPTURE"], "a", encoding="utf-8")


SECRET_FIELDS = ("client_assertion", "password", "secret", "refresh_token")


def _sent_secrets(request):
    # What a caller proves itself with at the token endpoint or sign-in: never to be echoed.
    if not request.url.path.endswith(("/token", "/sessions")):
        return []
    text = request.content.decode("utf-8", "replace")
    try:
        fields = json.loads(text)
    except ValueError:
        fields = {k: v[0] for k, v in parse_qs(text).items()}
    if not isinstance(fields, dict):
        return []
    return [str(fields[k]) for k in SECRET_FIELDS if fields.get(k)]


_send = httpx.Client.send


def _recording_send(self, request, **kwargs):
    # Patched on the class, so every client records: the scenario's and httpx.post's own.
    response = _send(self, request, **kwargs)
    response.read()
    _capture.write(json.dumps({
        "method": request.method,
        "path": request.url.path,
        "authorization": request.headers.get("authorization"),
        "sent_secrets": _sent_secrets(request),
        "status": response.status_code,
        "body": response.text,
    }) + "\\n")
    _capture.flush()
    return response


httpx.Client.send = _recording_send
from broker.cli.main import main

sys.argv = ["broker", *sys.argv[1:]]
main()
"""


@dataclass(frozen=True)
class Needle:
    """One value that must not appear: what it is (never printed), and how to match it."""

    label: str
    text: str
    whole_word: bool = True
    fold_case: bool = True


@dataclass
class Haystack:
    """Captured text by where it came from."""

    logs: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    others: dict[str, str] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)
    issued: dict[str, str] = field(default_factory=dict)

    def everything(self) -> dict[str, str]:
        """Every captured text, by name."""
        return {**self.logs, **self.errors, **self.others, **self.releases, **self.issued}


def _is_word_char(char: str) -> bool:
    return char.isalnum()


def find(needles: Iterable[Needle], texts: dict[str, str]) -> list[tuple[str, str]]:
    """Every (needle label, haystack name) where a needle occurs; labels never hold values."""
    hits: list[tuple[str, str]] = []
    folded = {name: text.casefold() for name, text in texts.items()}
    for needle in needles:
        sought = needle.text.casefold() if needle.fold_case else needle.text
        if not sought:
            continue
        for name, text in texts.items():
            haystack = folded[name] if needle.fold_case else text
            if _occurs(sought, haystack, whole_word=needle.whole_word):
                hits.append((needle.label, name))
    return hits


def _occurs(sought: str, haystack: str, *, whole_word: bool) -> bool:
    start = haystack.find(sought)
    while start >= 0:
        end = start + len(sought)
        if not whole_word:
            return True
        before = haystack[start - 1] if start > 0 else " "
        after = haystack[end] if end < len(haystack) else " "
        if not _is_word_char(before) and not _is_word_char(after):
            return True
        start = haystack.find(sought, start + 1)
    return False


def _date_forms(value: date) -> list[str]:
    d, m, y = f"{value.day:02d}", f"{value.month:02d}", f"{value.year:04d}"
    forms = [f"{y}-{m}-{d}", f"{y}{m}{d}"]
    for sep in "/-.":
        forms += [f"{d}{sep}{m}{sep}{y}", f"{m}{sep}{d}{sep}{y}"]
    return forms


def _parse_iso(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def identifier_needles(row: dict[str, str], who: str) -> Iterator[Needle]:
    """Every form of one record's identifiers (the label says which field, never the value)."""
    yield from _name_needles(row, who)
    yield from _other_identifier_needles(row, who)


def _name_needles(row: dict[str, str], who: str) -> Iterator[Needle]:
    given, family = row.get("given_name", "").strip(), row.get("family_name", "").strip()
    for fieldname, raw in (("given_name", given), ("family_name", family)):
        if not raw:
            continue
        parts = name_parts(raw)
        joined = "".join(parts)
        if joined in FIXED_TEXT_WORDS:
            # Alone it is also a word of the fixed text; as a JSON string of its own it is data.
            yield Needle(f"{who} {fieldname} quoted", f'"{raw}"')
            yield Needle(f"{who} {fieldname} normalised quoted", f'"{joined}"')
            continue
        yield Needle(f"{who} {fieldname}", raw)
        yield Needle(f"{who} {fieldname} normalised", joined)
        for part in parts:
            if len(part) >= 3 and part not in FIXED_TEXT_WORDS:
                yield Needle(f"{who} {fieldname} part", part)
    if given and family:
        yield Needle(f"{who} full name", f"{given} {family}")
        yield Needle(f"{who} full name", f"{family} {given}")
        yield Needle(f"{who} full name", f"{family}, {given}")


def _other_identifier_needles(row: dict[str, str], who: str) -> Iterator[Needle]:
    born = row.get("date_of_birth", "").strip()
    if born:
        yield Needle(f"{who} date_of_birth", born)
        parsed = _parse_iso(born)
        for form in _date_forms(parsed) if parsed else []:
            yield Needle(f"{who} date_of_birth form", form)
    postcode = row.get("postcode", "").strip()
    if postcode:
        yield Needle(f"{who} postcode", postcode)
        canonical = normalise_postcode(postcode)
        yield Needle(f"{who} postcode canonical", canonical)
        yield Needle(f"{who} postcode compact", canonical.replace(" ", ""))
    nhs = re.sub(r"\D", "", row.get("nhs_number", ""))
    if nhs:
        yield Needle(f"{who} nhs_number", nhs)
        if len(nhs) == 10:
            for sep in (" ", "-"):
                yield Needle(f"{who} nhs_number grouped", sep.join((nhs[:3], nhs[3:6], nhs[6:])))
    for fieldname in ("upn", "address_line"):
        value = row.get(fieldname, "").strip()
        if value:
            yield Needle(f"{who} {fieldname}", value)


def secret_needles(label: str, key: bytes) -> Iterator[Needle]:
    """A key's bytes as hex and as base64 (standard and URL-safe, padded and not)."""
    yield Needle(f"{label} hex", key.hex(), whole_word=False)
    for encoded in (base64.b64encode(key), base64.urlsafe_b64encode(key)):
        text = encoded.decode("ascii")
        yield Needle(f"{label} base64", text, whole_word=False, fold_case=False)
        yield Needle(f"{label} base64", text.rstrip("="), whole_word=False, fold_case=False)


def _distinctive(value: str) -> bool:
    """Dates and free text; not codes, booleans or numbers (see the module docstring)."""
    if _parse_iso(value) is not None:
        return True
    return len(value) >= 6 and " " in value.strip()


def read_rows(extracts: Path) -> dict[str, list[dict[str, str]]]:
    """Each agency's extract rows, as the demo generated them."""
    rows: dict[str, list[dict[str, str]]] = {}
    for agency in DATASETS:
        with (extracts / f"{agency}.csv").open(encoding="utf-8", newline="") as handle:
            rows[agency] = list(csv.DictReader(handle))
    return rows


@dataclass
class DemoRun:
    """What one demo run printed, logged and received, and where its files are."""

    completed: subprocess.CompletedProcess[str]
    folder: Path
    exchanges: list[dict[str, object]]

    @property
    def extracts(self) -> Path:
        """The generated extracts."""
        return self.folder / "var" / "demo" / "extracts"

    @property
    def database(self) -> Path:
        """The demo's SQLite database."""
        return self.folder / "var" / "demo" / "accord.db"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``broker demo --no-serve`` at DEBUG, every exchange recorded."""
    folder = tmp_path_factory.mktemp("no-leaks")
    (folder / "driver.py").write_text(DRIVER, encoding="utf-8")
    capture = folder / "exchanges.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update(
        PYTHONPATH=str(REPOSITORY),  # the code under test, whatever the virtualenv points at
        BROKER_KEY_FILE=str(folder / "broker.key"),
        BROKER_LOG_LEVEL="DEBUG",
        NO_LEAK_CAPTURE=str(capture),
    )
    completed = subprocess.run(
        [sys.executable, "driver.py", "demo", "--no-serve", "--port", str(free_port())],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    exchanges = [json.loads(line) for line in capture.read_text(encoding="utf-8").splitlines()]
    return DemoRun(completed, folder, exchanges)


def haystack_of(run: DemoRun) -> Haystack:
    """The run's captured text, sorted into the four haystacks."""
    stack = Haystack(logs={"stdout": run.completed.stdout, "stderr": run.completed.stderr})
    for log_file in sorted(run.folder.rglob("*.log")):
        stack.logs[str(log_file.relative_to(run.folder))] = log_file.read_text(errors="replace")
    for index, exchange in enumerate(run.exchanges):
        status, path = int(str(exchange["status"])), str(exchange["path"])
        name = f"response {index} ({exchange['method']} {path} {status})"
        body = str(exchange["body"])
        if status >= 400:
            stack.errors[name] = body
        elif status == 200 and path.endswith(RELEASE_PATHS):
            stack.releases[name] = body
        elif path.endswith(ISSUING_PATHS):
            stack.issued[name] = body
        else:
            stack.others[name] = body
    return stack


def secrets_of(run: DemoRun) -> list[Needle]:
    """The master key, the wrapping key, every working key, every token, every credential."""
    ring = load_key_file(run.folder / "broker.key")
    needles = [*secret_needles("master key", ring.master_key)]
    needles += secret_needles("key-wrapping key", ring.legacy_key("key-wrapping"))
    with sqlite3.connect(run.database) as connection:
        stored = connection.execute(
            "SELECT kind, agreement_id, recipient, version, wrapped FROM wrapped_key"
        ).fetchall()
        tokens = [row[0] for row in connection.execute("SELECT DISTINCT token FROM match_token")]
    for kind, agreement_id, recipient, version, wrapped in stored:
        slot = KeySlot(kind, agreement_id, recipient)
        key = ring.unwrap(wrapped, wrapping_context(slot, version))
        needles += secret_needles(f"working key {slot.name} v{version}", key)
    for token in tokens:
        needles.append(Needle("match token hex", token, whole_word=False))
        raw = bytes.fromhex(token)
        needles += [n for n in secret_needles("match token", raw) if "base64" in n.label]
    for credential in {str(e["authorization"]) for e in run.exchanges if e["authorization"]}:
        secret = credential.removeprefix("Bearer ").strip()
        needles.append(Needle("bearer credential", secret, whole_word=False, fold_case=False))
    sent = {str(v) for e in run.exchanges for v in _as_list(e.get("sent_secrets"))}
    needles += [
        Needle("a secret sent to sign in", v, whole_word=False, fold_case=False) for v in sent
    ]
    needles += private_key_needles(run.folder)
    return needles


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def private_key_needles(folder: Path) -> Iterator[Needle]:
    """The base64 lines of any private key the run left in a file (PEM, or PEM inside JSON)."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix == ".csv" or path.stat().st_size > 64 * 1024:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "PRIVATE KEY-----" not in text:
            continue
        # PEM written inside a JSON string has its line breaks escaped.
        for line in re.findall(r"[A-Za-z0-9+/=]{40,}", text.replace("\\n", "\n")):
            yield Needle(f"private key in {path.name}", line, whole_word=False, fold_case=False)


@pytest.mark.e2e
def test_the_demo_ran_at_debug_and_was_captured(demo_run: DemoRun) -> None:
    completed = demo_run.completed
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "audit verified" in completed.stdout
    levels = [json.loads(line)["level"] for line in completed.stderr.splitlines() if line]
    assert "DEBUG" in levels
    loggers = {json.loads(line)["logger"] for line in completed.stderr.splitlines() if line}
    assert "broker.access" in loggers
    statuses = [int(str(e["status"])) for e in demo_run.exchanges]
    # The scenario's refusals (401, 403, 422) and its releases were all recorded.
    assert {200, 201, 401, 403, 422} <= set(statuses)
    # Every lookup the demo's summary counts was recorded with its answer.
    summary = re.search(r"lookups answered\D*(\d+) of (\d+)", completed.stdout)
    assert summary is not None
    answered = [
        e
        for e in demo_run.exchanges
        if str(e["path"]).endswith("/lookups") and int(str(e["status"])) == 200
    ]
    assert int(summary[2]) > 0
    assert len(answered) >= int(summary[2])
    # Every token request and sign-in was seen with what it proved itself with.
    issuing = [e for e in demo_run.exchanges if str(e["path"]).endswith(ISSUING_PATHS)]
    assert issuing
    assert all(_as_list(e["sent_secrets"]) for e in issuing)


@pytest.mark.e2e
def test_the_agreement_releases_no_identifier(demo_run: DemoRun) -> None:
    # Identifiers are searched in release bodies too; that is right only while no
    # release in the demo's agreement carries an identifier field.
    released = _released_fields()
    assert released, "the scenario's releases were not read"
    assert not released & set(IDENTIFIER_FIELDS)
    # Every identifier a demo dataset declares is among those searched for.
    agreement = load_agreement(AGREEMENT_FILE)
    for dataset_id in DATASETS.values():
        dataset = agreement.dataset(dataset_id)
        assert dataset is not None
        assert set(dataset.identifiers) <= set(IDENTIFIER_FIELDS)
    assert {"given_name", "nhs_number", "upn"} <= set(read_rows(demo_run.extracts)["school"][0])


@dataclass
class Needles:
    """What must not appear, grouped by where each group is searched."""

    identifiers: list[Needle]
    secrets: list[Needle]
    credentials: list[Needle]
    payload: list[Needle]
    unreleased: list[Needle]
    log_only: list[Needle]


def _released_fields() -> set[str]:
    return {name for grants in PERMITTED.values() for names in grants.values() for name in names}


def needles_of(run: DemoRun) -> Needles:
    """Every needle, read back from the run's extracts, key file, database and answers."""
    rows = read_rows(run.extracts)
    identifiers = list(identifier_needles(DEMO_REFUSED_RECORD, "demo refused record"))
    payload: list[Needle] = []
    unreleased: list[Needle] = []
    log_only: list[Needle] = []
    released = _released_fields()
    for agency, agency_rows in rows.items():
        for index, row in enumerate(agency_rows):
            who = f"{agency}.csv line {index + 2}"
            identifiers += identifier_needles(row, who)
            log_only.append(Needle(f"{who} record_id", row["record_id"]))
            for name, value in row.items():
                if name in IDENTIFIER_FIELDS or name == "record_id" or not value:
                    continue
                if _distinctive(value):
                    needle = Needle(f"{who} payload {name}", value.strip())
                    payload.append(needle)
                    if name not in released:
                        unreleased.append(needle)
    # The same date may be another person's released value; only a value of its own counts.
    released_values = {
        row[name].strip().casefold()
        for agency_rows in rows.values()
        for row in agency_rows
        for name in released
        if row.get(name)
    }
    unreleased = [n for n in unreleased if n.text.casefold() not in released_values]
    for exchange in run.exchanges:
        if int(str(exchange["status"])) == 200 and str(exchange["path"]).endswith("/lookups"):
            pseudonym = json.loads(str(exchange["body"])).get("pseudonym")
            if pseudonym:
                log_only.append(Needle("a recipient's pseudonym", pseudonym, whole_word=False))
    secrets = secrets_of(run)
    credentials = [n for n in secrets if n.label == "bearer credential"]
    keys = [n for n in secrets if n.label != "bearer credential"]
    return Needles(identifiers, keys, credentials, payload, unreleased, log_only)


def leaks(needles: Needles, stack: Haystack) -> list[str]:
    """Every leak in the captured text, as 'what (where)'; never the value itself."""
    everything = stack.everything()
    found: list[tuple[str, str]] = []
    found += find(needles.identifiers, everything)
    found += find(needles.secrets, everything)
    # An access token is issued in one answer; anywhere else it is a leak.
    found += find(
        needles.credentials, {**stack.logs, **stack.errors, **stack.others, **stack.releases}
    )
    found += find(needles.payload, {**stack.logs, **stack.errors, **stack.others})
    found += find(needles.unreleased, stack.releases)
    found += find(needles.log_only, stack.logs)
    for name, text in everything.items():
        if "Traceback" in text:
            found.append(("a stack trace", name))
        if SQL_TEXT.search(text):
            found.append(("SQL text", name))
    return sorted({f"{label} ({where})" for label, where in found})


@pytest.mark.e2e
def test_nothing_identifying_or_secret_reaches_logs_or_bodies(demo_run: DemoRun) -> None:
    assert demo_run.completed.returncode == 0, demo_run.completed.stderr[-2000:]
    needles = needles_of(demo_run)
    # Enough was read back for the search to mean something.
    assert len(needles.identifiers) > 3000
    assert len(needles.secrets) > 100
    # At least the four agencies' credentials and the IG lead's.
    assert len(needles.credentials) >= len(DATASETS) + 1
    assert needles.payload
    assert needles.unreleased
    found = leaks(needles, haystack_of(demo_run))
    assert not found, "\n".join(["leaked:", *found])


def test_find_matches_values_as_whole_words_and_secrets_anywhere() -> None:
    texts = {"log": '{"message": "lookup for NS1 8PF by xNS18PFx", "key": "zzABCDzz"}'}
    assert find([Needle("postcode", "ns1 8pf")], texts) == [("postcode", "log")]
    assert find([Needle("postcode compact", "NS18PF")], texts) == []  # inside a longer word
    assert find([Needle("key", "ABCD", whole_word=False, fold_case=False)], texts) == [
        ("key", "log")
    ]
    assert find([Needle("key", "abcd", whole_word=False, fold_case=False)], texts) == []


@pytest.mark.e2e
def test_the_search_finds_what_is_planted(demo_run: DemoRun) -> None:
    """The real captured output with values planted in it: each is reported, by label only."""
    needles = needles_of(demo_run)
    rows = read_rows(demo_run.extracts)
    index, person = next(
        (i, row)
        for i, row in enumerate(rows["social-care"])
        if row["postcode"] and row["nhs_number"] and row["allocated_team"]
    )
    who = f"social-care.csv line {index + 2}"
    born = date.fromisoformat(person["date_of_birth"])
    compact = normalise_postcode(person["postcode"]).replace(" ", "")
    master = base64.b64encode(load_key_file(demo_run.folder / "broker.key").master_key).decode()
    with sqlite3.connect(demo_run.database) as connection:
        (token,) = connection.execute("SELECT token FROM match_token LIMIT 1").fetchone()
    nhs = person["nhs_number"]
    stack = haystack_of(demo_run)
    planted = {
        "stderr": json.dumps({"message": f"checking {compact} born {born:%d/%m/%Y}"}),
        "an error body": json.dumps(
            {"error": {"message": f"no match for {nhs[:3]} {nhs[3:6]} {nhs[6:]}"}}
        ),
        "a release body": json.dumps({"fields": {"team": person["allocated_team"], "k": master}}),
        "another body": json.dumps({"token": token, "name": person["family_name"]}),
        "stdout": "\n".join(
            (person["record_id"], "Traceback (most recent call last):", "SELECT id FROM record")
        ),
    }
    stack.logs["stderr"] += "\n" + planted["stderr"]
    stack.logs["stdout"] += "\n" + planted["stdout"]
    stack.errors["an error body"] = planted["an error body"]
    stack.releases["a release body"] = planted["a release body"]
    stack.others["another body"] = planted["another body"]

    found = leaks(needles, stack)

    expected = {
        f"{who} postcode compact (stderr)",
        f"{who} date_of_birth form (stderr)",
        f"{who} nhs_number grouped (an error body)",
        f"{who} payload allocated_team (a release body)",
        "master key base64 (a release body)",
        "match token hex (another body)",
        f"{who} family_name (another body)",
        f"{who} record_id (stdout)",
        "a stack trace (stdout)",
        "SQL text (stdout)",
    }
    assert expected <= set(found), sorted(expected - set(found))
    assert all(where in planted for where in (f.rsplit("(", 1)[1].rstrip(")") for f in found))
    # The report names what leaked and where, never the value.
    assert not [f for f in found if compact.casefold() in f.casefold() or master in f]


def test_a_private_key_left_in_a_file_is_searched_for(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "police.json").write_text(json.dumps({"private_key": key.decode()}))
    needles = list(private_key_needles(tmp_path))
    assert [n.label for n in needles] == ["private key in police.json"]
    assert find(needles, {"stderr": f"signing with {key.decode()}"}) == [
        ("private key in police.json", "stderr")
    ]
