"""Log-spaced latency buckets that merge across minutes, keys and processes.

Bucket ``i`` contains the latencies in the interval (GAMMA ** (i - 1), GAMMA ** i]
microseconds. ``bucket_value`` is 2 * GAMMA ** i / (GAMMA + 1), which differs by at
most RELATIVE_ACCURACY from both ends of that interval. A percentile read from merged
buckets is therefore within 2 % of the same percentile of the raw latencies. Bucket
counts add up, so histograms of any minutes and processes merge exactly. One hour (3.6e9 microseconds) falls in
bucket 551.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

RELATIVE_ACCURACY = 0.02
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)


def bucket_index(microseconds: float) -> int:
    """Return the bucket of a latency; latencies under 1 microsecond go to bucket 0."""
    if microseconds <= 1.0:
        return 0
    return math.ceil(math.log(microseconds) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """Return the latency in microseconds that represents bucket ``index``."""
    return 2 * GAMMA**index / (GAMMA + 1)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[index] = merged.get(index, 0) + count
    return merged


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """Return the nearest-rank percentile in microseconds, or None for an empty histogram.

    ``fraction`` is from 0 to 1, for example 0.95 for p95.
    """
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_value(index)
    raise AssertionError("unreachable: the ranks add up to the total")
