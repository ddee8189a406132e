"""The retry schedule: when the next attempt of a failed delivery is due."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from datetime import UTC, datetime


def max_attempts(schedule: Sequence[float]) -> int:
    """Return the number of attempts in one round: the first try plus one per delay."""
    return 1 + len(schedule)


def retry_delay(
    schedule: Sequence[float],
    attempts_made: int,
    *,
    jitter: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Return the seconds to wait before the next attempt, or None when none is left.

    ``attempts_made`` counts the attempts of this round, the failed one included. The
    scheduled delay is multiplied by a random factor in [1 - jitter, 1 + jitter]. A
    ``Retry-After`` value can lengthen the wait, never shorten it, and is capped at the
    longest delay of the schedule.
    """
    if attempts_made < 1:
        raise ValueError(f"attempts_made must be at least 1, got {attempts_made}")
    if attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    factor = 1 + (rng or random).uniform(-jitter, jitter)
    delay = base * factor
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a ``Retry-After`` header requests, or None if it is absent or invalid.

    The header is either a number of seconds or an HTTP date (RFC 9110, section 10.2.3).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())
