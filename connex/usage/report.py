"""Reading usage: per-period buckets and totals for one API key or one organization."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, select

from connex.context import RequestContext
from connex.errors import FieldError, NotFound, ValidationFailed
from connex.models import ApiKey, UsageCount, UsageLatency
from connex.scopes import Scope
from connex.usage import histogram

# A report has at most this many buckets: a day of minutes, 60 days of hours, or
# about four years of days.
MAX_BUCKETS = 1440
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Granularity(enum.Enum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def minutes(self) -> int:
        return {"minute": 1, "hour": 60, "day": 1440}[self.value]


@dataclass(slots=True)
class UsageFigures:
    """Counts of one period, or of the whole report, with their latency histogram."""

    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    rate_limited: int = 0
    latency: dict[int, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        """Share of requests with status 4xx or 5xx; None without requests."""
        if self.requests == 0:
            return None
        return (self.status_4xx + self.status_5xx) / self.requests

    def latency_ms(self, fraction: float) -> float | None:
        value = histogram.percentile(self.latency, fraction)
        return None if value is None else round(value / 1000, 3)

    def add(self, other: UsageFigures) -> None:
        self.requests += other.requests
        self.status_2xx += other.status_2xx
        self.status_4xx += other.status_4xx
        self.status_5xx += other.status_5xx
        self.rate_limited += other.rate_limited
        self.latency = histogram.merge([self.latency, other.latency])


@dataclass(slots=True)
class UsageReport:
    granularity: Granularity
    start: datetime
    end: datetime
    api_key_id: str | None
    organization_id: str | None
    buckets: list[tuple[datetime, UsageFigures]]
    totals: UsageFigures


def to_minute(moment: datetime) -> int:
    """Return minutes since the Unix epoch, rounded down."""
    return int((moment - _EPOCH) // timedelta(minutes=1))


def from_minute(minute: int) -> datetime:
    return _EPOCH + timedelta(minutes=minute)


def _period_bounds(start: datetime, end: datetime, granularity: Granularity) -> tuple[int, int]:
    """Return the first minute and the minute after the last, aligned to the granularity."""
    if end <= start:
        raise ValidationFailed("Invalid usage range", errors=[FieldError("to", "must be later than from")])

    width = granularity.minutes
    end_minute = -(-(end - _EPOCH) // timedelta(minutes=1))
    first = to_minute(start) // width * width
    last = -(-end_minute // width) * width
    bucket_count = (last - first) // width
    if bucket_count > MAX_BUCKETS:
        message = (
            f"the range covers {bucket_count} {granularity.value} buckets, more than {MAX_BUCKETS}; "
            "narrow the range or choose a coarser granularity"
        )
        raise ValidationFailed("Invalid usage range", errors=[FieldError("to", message)])
    return first, last


async def read_usage(
    ctx: RequestContext,
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    api_key_id: str | None = None,
    organization_id: str | None = None,
) -> UsageReport:
    """Return the usage of one key, or of one organization's keys, in ``[start, end)``.

    Buckets cover every period of the granularity that overlaps the range, oldest first,
    including periods without requests. A partner key reads only its own organization.
    """
    ctx.principal.require(Scope.USAGE_READ)
    first, last = _period_bounds(start, end, granularity)

    async with ctx.db.sessions() as session:
        if api_key_id is not None:
            key = await session.get(ApiKey, api_key_id)
            if key is None:
                raise NotFound(f"No API key with id {api_key_id!r}")
            _check_key_access(ctx, key, organization_id)
            organization_id = key.organization_id
            counts_filter: ColumnElement[bool] = UsageCount.api_key_id == api_key_id
            latency_filter: ColumnElement[bool] = UsageLatency.api_key_id == api_key_id
        else:
            organization_id = ctx.principal.organization_for(organization_id)
            counts_filter = UsageCount.organization_id == organization_id
            latency_filter = UsageLatency.organization_id == organization_id

        periods = await _read_periods(session, counts_filter, latency_filter, first, last, granularity.minutes)

    buckets = []
    totals = UsageFigures()
    for period_start in range(first, last, granularity.minutes):
        figures = periods.get(period_start // granularity.minutes, UsageFigures())
        buckets.append((from_minute(period_start), figures))
        totals.add(figures)
    return UsageReport(
        granularity, from_minute(first), from_minute(last), api_key_id, organization_id, buckets, totals
    )


def _check_key_access(ctx: RequestContext, key: ApiKey, organization_id: str | None) -> None:
    if key.organization_id is None:
        ctx.principal.require(Scope.ADMIN)
    else:
        ctx.principal.check_organization(key.organization_id)
    if organization_id is not None and organization_id != key.organization_id:
        raise ValidationFailed(
            "The API key belongs to another organization",
            errors=[FieldError("organizationId", "does not match the API key's organization")],
        )


async def _read_periods(
    session: object,
    counts_filter: ColumnElement[bool],
    latency_filter: ColumnElement[bool],
    first: int,
    last: int,
    width: int,
) -> dict[int, UsageFigures]:
    """Sum the rows per period; periods are minute // width."""
    period = (UsageCount.minute // width).label("period")
    counts_query = (
        select(
            period,
            func.sum(UsageCount.requests),
            func.sum(UsageCount.status_2xx),
            func.sum(UsageCount.status_4xx),
            func.sum(UsageCount.status_5xx),
            func.sum(UsageCount.rate_limited),
        )
        .where(counts_filter, UsageCount.minute >= first, UsageCount.minute < last)
        .group_by(period)
    )
    latency_period = (UsageLatency.minute // width).label("period")
    latency_query = (
        select(latency_period, UsageLatency.bucket, func.sum(UsageLatency.count))
        .where(latency_filter, UsageLatency.minute >= first, UsageLatency.minute < last)
        .group_by(latency_period, UsageLatency.bucket)
    )

    periods: dict[int, UsageFigures] = {}
    for row in await session.execute(counts_query):  # type: ignore[attr-defined]
        periods[int(row[0])] = UsageFigures(*(int(value) for value in row[1:]))
    for period_index, bucket, count in await session.execute(latency_query):  # type: ignore[attr-defined]
        figures = periods.setdefault(int(period_index), UsageFigures())
        figures.latency[int(bucket)] = int(count)
    return periods
