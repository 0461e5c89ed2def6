"""Server processes for the HTTP figures, and the CPU each side of a measurement used.

``broker serve`` runs exactly as an operator runs it (its JSON log lines go to
a file); the baseline is ``bench.http_constant`` under uvicorn. Several
workers are several processes, each on its own port: the load generator
spreads its clients over them as a load balancer would, without the cost of a
proxy in between. CPU time is read from ``/proc`` (Linux), so a figure can say
whether the workers, PostgreSQL or the load generator was the busy one, and
how busy the machine was with other work.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

_TICK = os.sysconf("SC_CLK_TCK")
_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broker_command() -> list[str]:
    """The ``broker`` console script installed beside this interpreter."""
    script = Path(sys.executable).with_name("broker")
    if not script.exists():
        raise RuntimeError(f"no broker command at {script}; install the package first")
    return [str(script)]


@dataclass
class Servers:
    """Running server processes, one base URL each."""

    processes: list[subprocess.Popen[bytes]]
    urls: list[str]

    @property
    def pids(self) -> list[int]:
        """The processes' ids."""
        return [p.pid for p in self.processes]


def _wait_ready(servers: Servers, path: str, logs: Sequence[Path]) -> None:
    deadline = time.monotonic() + 90
    for process, url in zip(servers.processes, servers.urls, strict=True):
        while True:
            try:
                if httpx.get(url + path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tails = "\n".join(log.read_text()[-1500:] for log in logs if log.exists())
                raise RuntimeError(f"a server did not start:\n{tails}")
            time.sleep(0.1)


@contextmanager
def _running(
    commands: Sequence[list[str]], env: Mapping[str, str], logs: Sequence[Path], ready: str
) -> Iterator[Servers]:
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for command, log in zip(commands, logs, strict=True):
            port = _free_port()
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [*command, "--port", str(port)],
                        env=dict(env),
                        cwd=_ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        servers = Servers(processes, urls)
        _wait_ready(servers, ready, logs)
        yield servers
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def brokers(
    count: int, *, database_url: str, key_file: Path, agreements_dir: Path, folder: Path
) -> Iterator[Servers]:
    """``count`` ``broker serve`` processes on one database, each on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update(
        BROKER_DATABASE_URL=database_url,
        BROKER_KEY_FILE=str(key_file),
        BROKER_AGREEMENTS_DIR=str(agreements_dir),
    )
    logs = [folder / f"broker-{index + 1}.log" for index in range(count)]
    with _running([[*broker_command(), "serve"]] * count, env, logs, "/ready") as servers:
        yield servers


@contextmanager
def constants(count: int, *, folder: Path) -> Iterator[Servers]:
    """``count`` uvicorn processes serving ``bench.http_constant``, each on a free port."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.http_constant:create_app",
        "--host",
        "127.0.0.1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    logs = [folder / f"constant-{index + 1}.log" for index in range(count)]
    with _running([command] * count, env, logs, "/health") as servers:
        yield servers


# -- CPU --------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of one process so far (0 if it has gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (all users)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in first[:8]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / _TICK


@dataclass(frozen=True)
class CpuUse:
    """Cores each side kept busy on average over a measurement."""

    servers: float
    database: float | None
    load: float
    machine: float


class CpuMeter:
    """Reads CPU time before and after a measurement; see ``CpuUse``.

    ``database_pids`` is called at both ends (the PostgreSQL backends serving
    the servers' pooled connections); a backend that comes and goes between
    the two reads is not counted.
    """

    def __init__(
        self, server_pids: Sequence[int], database_pids: Callable[[], Sequence[int]] | None = None
    ) -> None:
        self._servers = list(server_pids)
        self._database_pids = database_pids
        self._start: tuple[float, dict[int, float], float, float, float] | None = None

    def _database(self) -> dict[int, float]:
        if self._database_pids is None:
            return {}
        return {pid: process_cpu_seconds(pid) for pid in self._database_pids()}

    def start(self) -> None:
        """Take the first reading."""
        self._start = (
            sum(process_cpu_seconds(p) for p in self._servers),
            self._database(),
            time.process_time(),
            machine_busy_seconds(),
            time.perf_counter(),
        )

    def stop(self) -> CpuUse:
        """Take the second reading; the averages in between."""
        if self._start is None:
            raise RuntimeError("CpuMeter.stop before start")
        servers, database, load, machine, started = self._start
        wall = max(time.perf_counter() - started, 1e-9)
        now = self._database()
        used = sum(seconds - database.get(pid, 0.0) for pid, seconds in now.items())
        return CpuUse(
            servers=(sum(process_cpu_seconds(p) for p in self._servers) - servers) / wall,
            database=used / wall if self._database_pids is not None else None,
            load=(time.process_time() - load) / wall,
            machine=(machine_busy_seconds() - machine) / wall,
        )
