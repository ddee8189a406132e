"""Sample a server with py-spy and sum the samples by function and by package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# A frame of ``py-spy record --format raw --function``: "name (path:first line)".
_FRAME = re.compile(r"^(?P<name>.*) \((?P<path>[^()]*)\)$")


class ProfilerError(RuntimeError):
    """Failure to find or run py-spy, or a profile without samples."""


def find_py_spy() -> str:
    beside_python = Path(sys.executable).parent / "py-spy"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfilerError(
            "py-spy is not installed; install it with `.venv/bin/pip install py-spy`"
        )
    return found


def record(pid: int, duration_s: int, output: Path, rate_hz: int = 200) -> None:
    """Write ``duration_s`` seconds of collapsed stacks of process ``pid`` to ``output``.

    py-spy pauses the process for each sample, which slows the server a little but
    keeps each stack consistent (with ``--nonblocking`` most stacks came out cut short).
    Samples of an idle thread (waiting in epoll) are left out, so the shares
    are shares of the time the server spent running Python or C code.
    """
    command = [
        find_py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration_s),
        "--rate",
        str(rate_hz),
        "--format",
        "raw",
        "--function",
        "--output",
        str(output),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not output.exists():
        raise ProfilerError(
            f"py-spy record failed with status {completed.returncode}: {completed.stderr}"
        )


def package_of(frame: str) -> str:
    """Return the top-level package or module of a frame.

    A frame reads like "Session.execute (sqlalchemy/orm/session.py:2488)". py-spy
    prints paths relative to the ``sys.path`` entry they were found in, so the first
    path component names the package, for the standard library too.
    """
    found = _FRAME.match(frame)
    if found is None:
        return "unknown"
    path = found["path"].rsplit(":", 1)[0]
    return path.split("/", 1)[0].removesuffix(".py")


@dataclass
class ProfileSummary:
    samples: int
    # Samples whose innermost frame is the function (or is in the package).
    self_by_function: Counter[str]
    self_by_package: Counter[str]
    # Samples with the function anywhere on the stack, counted once per sample.
    inclusive_by_function: Counter[str]

    def top(self, counter: Counter[str], count: int) -> list[tuple[str, int, float]]:
        return [(name, n, 100 * n / self.samples) for name, n in counter.most_common(count)]


def _read_stacks(collapsed: Path) -> list[tuple[list[str], int]]:
    """Return (frames from outermost to innermost, sample count) for each non-idle stack."""
    stacks = []
    for line in collapsed.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        # An idle sample has an empty stack.
        if stack_text and count_text.isdigit():
            stacks.append((stack_text.split(";"), int(count_text)))
    return stacks


def share_by_rules(
    collapsed: Path, rules: Sequence[tuple[str, str]]
) -> list[tuple[str, int, float]]:
    """Assign each sample to the first rule whose text occurs in one of its frames.

    ``rules`` contains (group name, text) pairs; a rule with empty text matches every
    sample. Return (group name, samples, percentage of all samples) per group, in
    the order the groups first appear in ``rules``.
    """
    groups: Counter[str] = Counter({name: 0 for name, _ in rules})
    total = 0
    for frames, count in _read_stacks(collapsed):
        total += count
        for name, text in rules:
            if any(text in frame for frame in frames):
                groups[name] += count
                break
    if total == 0:
        raise ProfilerError(f"no busy samples in {collapsed}; profile the server under load")
    return [(name, samples, 100 * samples / total) for name, samples in groups.items()]


def summarize(collapsed: Path) -> ProfileSummary:
    """Sum the collapsed stacks that ``record`` wrote."""
    self_by_function: Counter[str] = Counter()
    self_by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in _read_stacks(collapsed):
        total += count
        self_by_function[frames[-1]] += count
        self_by_package[package_of(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        raise ProfilerError(f"no busy samples in {collapsed}; profile the server under load")
    return ProfileSummary(total, self_by_function, self_by_package, inclusive)


def format_summary(title: str, summary: ProfileSummary, count: int = 30) -> str:
    """Render the summary as markdown tables of shares of all samples.

    The inclusive table is longer because its first rows are the frames every
    request passes through (the event loop and the middleware stack).
    """
    lines = [f"### {title}", "", f"{summary.samples} samples.", ""]
    sections = (
        ("Self time by package", summary.self_by_package, count),
        ("Self time by function", summary.self_by_function, count),
        ("Inclusive time by function", summary.inclusive_by_function, 2 * count),
    )
    for heading, counter, rows in sections:
        lines += [f"#### {heading}", "", "| Share | Samples | Frame |", "|---:|---:|---|"]
        for name, samples, share in summary.top(counter, rows):
            lines.append(f"| {share:.1f}% | {samples} | `{name}` |")
        lines.append("")
    return "\n".join(lines)
