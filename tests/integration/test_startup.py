"""Start-up against a database that does not answer: the server waits, within a bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from broker.config import Settings
from broker.errors import StorageError
from broker.startup import build_runtime_with_retry, wait_for_database
from tests.conftest import POSTGRES_URL, require_postgres

CLOSED = "postgresql://postgres@127.0.0.1:1/x"


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_an_unreachable_database_is_retried_with_exponential_backoff_then_refused() -> None:
    fake = FakeTime()
    with pytest.raises(StorageError) as raised:
        wait_for_database(CLOSED, sleep=fake.sleep, monotonic=fake.monotonic)
    assert fake.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 6.5]
    assert sum(fake.slept) == 30.0
    message = raised.value.one_line()
    assert "\n" not in message
    assert message.startswith("the database did not answer after 8 attempts in 30 s")
    assert raised.value.code == "storage_failed"


def test_the_wait_is_bounded_in_real_time() -> None:
    started = time.monotonic()
    with pytest.raises(StorageError, match="did not answer"):
        wait_for_database(CLOSED, max_wait_seconds=0.3, first_delay_seconds=0.05)
    assert time.monotonic() - started < 5


def test_the_server_start_up_gives_up_on_an_unreachable_database(tmp_path: Path) -> None:
    settings = Settings(database_url=CLOSED, key_file=tmp_path / "broker.key")
    with pytest.raises(StorageError, match="did not answer"):
        build_runtime_with_retry(settings, max_wait_seconds=0.2, first_delay_seconds=0.05)


def test_sqlite_needs_no_wait(tmp_path: Path) -> None:
    assert wait_for_database(f"sqlite:///{tmp_path / 'accord.db'}", sleep=_never) == 1


@pytest.mark.postgres
def test_a_database_that_answers_is_used_at_once() -> None:
    require_postgres()
    assert wait_for_database(POSTGRES_URL, sleep=_never) == 1


@pytest.mark.postgres
def test_a_server_that_refuses_is_not_waited_for() -> None:
    require_postgres()
    missing = make_url(POSTGRES_URL).set(database="accord_no_such_database")
    with pytest.raises(StorageError) as raised:
        wait_for_database(missing.render_as_string(hide_password=False), sleep=_never)
    assert raised.value.one_line() == (
        "the database server refused the connection (does not exist); check BROKER_DATABASE_URL"
    )


def _never(_seconds: float) -> None:
    raise AssertionError("waited for a database that needed no wait")
