"""Functional tests run the real ``broker`` command and a real uvicorn server in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES

BROKER = str(Path(sys.executable).with_name("broker"))


def free_port() -> int:
    """A TCP port nobody is listening on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broker_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment for a broker subprocess on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update(
        BROKER_DATABASE_URL=database_url,
        BROKER_KEY_FILE=str(tmp_path / "broker.key"),
        BROKER_AGREEMENTS_DIR=str(EXAMPLES),
    )
    return env


def run_broker(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the broker CLI and capture its output."""
    return subprocess.run(
        [BROKER, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    log: Path


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """``broker serve`` on a free port, against the test database."""
    env = broker_env(database_url, tmp_path)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [BROKER, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield Server(base_url, env, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
