"""Counting of responses in process, per (minute, API key), until the next flush."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from connex.usage.histogram import bucket_index


class UsageKey(NamedTuple):
    """Minutes since the Unix epoch, the API key, and the key's organization (None for admin keys)."""

    minute: int
    api_key_id: str
    organization_id: str | None


@dataclass(slots=True)
class UsageCounts:
    """Requests by status class and latency histogram; 429 responses count in 4xx too."""

    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    rate_limited: int = 0
    # Latency bucket index (connex.usage.histogram) -> requests.
    latency: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, seconds: float) -> None:
        self.requests += 1
        status_class = status // 100
        if status_class == 2:
            self.status_2xx += 1
        elif status_class == 4:
            self.status_4xx += 1
            if status == 429:
                self.rate_limited += 1
        elif status_class == 5:
            self.status_5xx += 1
        index = bucket_index(seconds * 1_000_000)
        self.latency[index] = self.latency.get(index, 0) + 1

    def merge(self, other: UsageCounts) -> None:
        self.requests += other.requests
        self.status_2xx += other.status_2xx
        self.status_4xx += other.status_4xx
        self.status_5xx += other.status_5xx
        self.rate_limited += other.rate_limited
        for index, count in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + count


UsageBatch = dict[UsageKey, UsageCounts]


class UsageMeter:
    """In-process counts of finished requests. ``record`` never awaits, so it adds no round trip."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: UsageBatch = {}

    def record(
        self,
        api_key_id: str,
        organization_id: str | None,
        status: int,
        seconds: float,
        started_at: float | None = None,
    ) -> None:
        """Count one response. ``started_at`` (Unix time) picks the minute; default now."""
        moment = self._clock() if started_at is None else started_at
        key = UsageKey(int(moment // 60), api_key_id, organization_id)
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = UsageCounts()
        counts.add(status, seconds)

    def drain(self) -> UsageBatch:
        """Return the counts since the last drain and start over."""
        drained, self._pending = self._pending, {}
        return drained

    def restore(self, batch: UsageBatch) -> None:
        """Add back a drained batch that could not be stored, so the next flush retries it."""
        for key, counts in batch.items():
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = counts
            else:
                pending.merge(counts)
