"""Start and stop single-process uvicorn servers for the benchmarks, on 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

HOST = "127.0.0.1"
REPOSITORY = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """Failure of a benchmark server to start or to become ready."""


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time the server process has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise ServerError(f"no VmRSS for the {self.name} server (pid {self.pid})")

    def log_tail(self, lines: int = 30) -> str:
        self.log_file.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_uvicorn(
    name: str,
    factory: str,
    env: dict[str, str],
    log_dir: Path,
    cpu: int | None,
) -> Server:
    """Start ``uvicorn --factory <factory>`` as one worker process, optionally pinned to ``cpu``.

    Both benchmark servers get the same uvicorn options. The access log is off,
    as ``connex serve`` runs it, so that no server writes a line per request.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if cpu is not None:
        command = ["taskset", "--cpu-list", str(cpu), *command]
    log_path = log_dir / f"{name}-server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=REPOSITORY, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    return Server(name, port, process, log_path, log_file)


def wait_ready(server: Server, path: str = "/healthz", timeout_s: float = 60.0) -> None:
    """Poll ``path`` until it returns 200. Raise ServerError if the server exits or times out."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise ServerError(
                    f"the {server.name} server exited with status {server.process.returncode}"
                    f" during start-up; log tail:\n{server.log_tail()}"
                )
            try:
                if client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise ServerError(
        f"the {server.name} server was not ready within {timeout_s:.0f} s;"
        f" log tail:\n{server.log_tail()}"
    )


def stop(server: Server, timeout_s: float = 15.0) -> int | None:
    """Stop the server with SIGINT, as Ctrl-C would, and SIGKILL it if it does not exit."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    server.log_file.close()
    return server.process.returncode
