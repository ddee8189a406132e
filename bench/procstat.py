"""CPU time of every process on the machine, from /proc, to show what else ran during a load."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _process_label(pid_dir: Path, database: str) -> str:
    """Name a process by its command, and a PostgreSQL backend also by its database.

    A backend label tells whether the backend serves ``database`` or another one.
    """
    stat = (pid_dir / "stat").read_text()
    command = stat[stat.index("(") + 1 : stat.rindex(")")]
    if command == "postgres":
        # A backend's process title reads
        # "postgres: [<cluster>:] <user> <database> <client> <state>",
        # where Debian adds the cluster, such as "15/main:".
        title = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if database in title.split()[1:]:
            return f"postgres ({database})"
        return "postgres (other)"
    return command


def snapshot(database: str) -> dict[int, tuple[str, int]]:
    """Return the label and the user plus system CPU ticks of each process."""
    processes = {}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            stat = (pid_dir / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            processes[int(pid_dir.name)] = (
                _process_label(pid_dir, database),
                int(fields[11]) + int(fields[12]),
            )
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # the process exited or is not readable
    return processes


def cpu_by_label(
    before: dict[int, tuple[str, int]],
    after: dict[int, tuple[str, int]],
    server_pids: dict[int, str],
) -> dict[str, float]:
    """Sum the CPU seconds used between two snapshots per label.

    A process in ``server_pids`` is labelled with the name given there. Processes
    that started and exited between the snapshots, such as wrk, are not counted.
    """
    used: Counter[str] = Counter()
    for pid, (label, ticks) in after.items():
        delta = ticks - before.get(pid, (label, 0))[1]
        if delta > 0:
            used[server_pids.get(pid, label)] += delta
    return {label: round(ticks / _TICKS_PER_S, 2) for label, ticks in used.most_common()}


def steal_seconds() -> float:
    """Return the CPU seconds the hypervisor has taken from this machine since boot.

    The time is summed over all CPUs.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    # "cpu user nice system idle iowait irq softirq steal ..."
    return int(fields[8]) / _TICKS_PER_S
