"""Shared by the notification tests: the sharps agreement's settings, records, a receiver."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from broker.config import Settings, load_settings
from broker.notify_ports import PostOutcome
from tests.conftest import EXAMPLES

SHARPS = "ed-sharps-notification"
DATASET = "ed-sharps-attendances"
SAFEGUARDING = "safeguarding-notification"
VIOLENCE = "violence-reduction"


def notify_settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings with the sharps notification agreement and the main example (lookup only)."""
    folder = tmp_path / "agreements"
    folder.mkdir()
    for name in ("sv-early-identification.yaml", f"{SHARPS}.yaml"):
        shutil.copy(EXAMPLES / name, folder)
    return load_settings(
        database_url=database_url,
        key_file=tmp_path / "keys" / "broker.key",
        agreements_dir=folder,
    )


def sharps_record(
    ref: str,
    *,
    given: str,
    family: str,
    born: str,
    injury: str = "stab_wound",
    postcode: str = "NS1 4AB",
    **extra: Any,
) -> dict[str, Any]:
    """A valid ed-sharps-attendances record."""
    record: dict[str, Any] = {
        "record_id": ref,
        "given_name": given,
        "family_name": family,
        "date_of_birth": born,
        "sex": "M",
        "postcode": postcode,
        "attendance_date": "2026-11-25",
        "injury_type": injury,
        "admitted": True,
        "safeguarding_referral_made": False,
    }
    record.update(extra)
    return record


# Aged 17, 22 and 27 on the tests' fixed day (2026-11-26).
YOUNG = sharps_record("ED-1", given="Kai", family="Marsh", born="2009-05-01")
ADULT = sharps_record(
    "ED-2", given="Rosa", family="Tindall", born="2004-02-10", injury="incised_wound"
)
OLDER = sharps_record("ED-3", given="Owen", family="Pryce", born="1999-01-01")

UNDER_25_STABBED = {
    "dataset": DATASET,
    "all_of": [
        {"field": "date_of_birth", "age_under": 25},
        {"field": "injury_type", "in": ["stab_wound", "incised_wound"]},
    ],
}
STAB_WOUNDS = {"dataset": DATASET, "all_of": [{"field": "injury_type", "equals": "stab_wound"}]}


class ScriptedSender:
    """A WebhookSender that answers from a script (default 200) and remembers every post."""

    def __init__(self, *answers: int | str) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> PostOutcome:
        self.posts.append((url, body, dict(headers)))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, str):
            return PostOutcome(None, answer, 3)
        return PostOutcome(answer, None, 3)


class RunningClock:
    """Real time, but starting from a fixed moment inside the example agreements' lives."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._began = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._began)


@dataclass
class Received:
    """One request the receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that fails each notification's first ``failures`` pushes."""

    failures: int
    requests: list[Received] = field(default_factory=list)
    processed: dict[str, float] = field(default_factory=dict)  # by idempotency id
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            message_id = headers.get("webhook-id", "")
            seen = sum(1 for r in self.requests if r.headers.get("webhook-id") == message_id)
            status = 500 if seen < self.failures else 200
            now = time.monotonic()
            if status == 200 and message_id not in self.processed:
                # The recipient's side of exactly once: act on each id once only.
                self.processed[message_id] = now
            self.requests.append(Received(path, headers, body, now, status))
            return status

    def accepted(self) -> dict[str, int]:
        """How many 2xx answers each id got."""
        counts: dict[str, int] = {}
        for request in self.requests:
            if request.status == 200:
                key = request.headers["webhook-id"]
                counts[key] = counts.get(key, 0) + 1
        return counts


@contextmanager
def running_receiver(failures: int) -> Iterator[Receiver]:
    """Serve a Receiver on a free port in a thread until the block ends."""
    receiver = Receiver(failures=failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.answer(self.path, headers, body)
            payload = json.dumps({"ok": status == 200}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
