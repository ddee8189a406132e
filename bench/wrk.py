"""Run wrk in its own process and parse the report it prints with ``--latency``."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_THREAD_LATENCY = re.compile(
    r"^\s+Latency\s+([\d.]+)(us|ms|s|m)\s+([\d.]+)(us|ms|s|m)\s+([\d.]+)(us|ms|s|m)", re.MULTILINE
)
_REQUESTS = re.compile(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m),", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class WrkError(RuntimeError):
    """Failure of wrk, or a wrk report without the expected figures."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    # Latencies in milliseconds, at wrk's print precision (two decimals of its unit).
    mean_ms: float
    stdev_ms: float
    max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed; install it with `apt-get install -y wrk`")
    return path


def wrk_version(wrk: str) -> str:
    # wrk -v prints its version line followed by the usage text.
    completed = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_report(text: str, connections: int) -> WrkResult:
    """Parse the report of ``wrk --latency``, raising WrkError if a figure is missing."""
    percentiles = {
        int(level): _to_ms(value, unit) for level, value, unit in _PERCENTILE.findall(text)
    }
    thread_latency = _THREAD_LATENCY.search(text)
    requests = _REQUESTS.search(text)
    rate = _RATE.search(text)
    if len(percentiles) != 4 or thread_latency is None or requests is None or rate is None:
        raise WrkError(f"the wrk report is missing figures (was --latency given?):\n{text}")

    non_2xx = _NON_2XX.search(text)
    socket_errors = _SOCKET_ERRORS.search(text)
    error_counts = (
        (0, 0, 0, 0) if socket_errors is None else tuple(map(int, socket_errors.groups()))
    )
    mean, mean_unit, stdev, stdev_unit, maximum, max_unit = thread_latency.groups()
    return WrkResult(
        connections=connections,
        duration_s=_to_ms(requests.group(2), requests.group(3)) / 1000,
        requests=int(requests.group(1)),
        requests_per_s=float(rate.group(1)),
        mean_ms=_to_ms(mean, mean_unit),
        stdev_ms=_to_ms(stdev, stdev_unit),
        max_ms=_to_ms(maximum, max_unit),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=0 if non_2xx is None else int(non_2xx.group(1)),
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), error_counts, strict=True)),
    )


def write_header_script(directory: Path, headers: dict[str, str]) -> Path:
    """Write a wrk Lua script that sends ``headers`` and return its path.

    Headers go in a script rather than on the command line so that an API key
    does not appear in the process list. The file is readable by its owner only.
    """
    lines = []
    for name, value in headers.items():
        if '"' in name + value or "\\" in name + value or "\n" in name + value:
            raise ValueError(f"header {name!r} has a character the Lua string cannot hold")
        lines.append(f'wrk.headers["{name}"] = "{value}"\n')
    path = directory / "headers.lua"
    path.touch(mode=0o600)
    path.write_text("".join(lines))
    return path


def run_wrk(
    wrk: str,
    url: str,
    *,
    connections: int,
    duration_s: int,
    script: Path,
    cpu: int | None,
    timeout_s: int = 10,
) -> tuple[WrkResult, str]:
    """Run one closed-loop wrk load with one thread and return the parsed and raw report.

    Each connection sends its next request only after the previous response, so
    the latencies are those of a closed loop (wrk does not correct for
    coordinated omission). Requests slower than ``timeout_s`` count as timeouts
    and are missing from the percentiles.
    """
    command = [
        wrk,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration_s}s",
        "--timeout",
        f"{timeout_s}s",
        "--latency",
        "--script",
        str(script),
        url,
    ]
    if cpu is not None:
        command = ["taskset", "--cpu-list", str(cpu), *command]
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration_s + timeout_s + 30
    )
    if completed.returncode != 0:
        raise WrkError(f"wrk exited with status {completed.returncode}: {completed.stderr.strip()}")
    return parse_report(completed.stdout, connections), completed.stdout
