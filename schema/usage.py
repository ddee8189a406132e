"""Usage and rate limits: the ``usage`` query and the ``setApiKeyRateLimit`` mutation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from connex import apikeys
from connex.context import RequestContext
from connex.usage.report import MAX_BUCKETS, Granularity, UsageFigures, read_usage
from schema.types import ApiKey

Info = strawberry.Info[RequestContext, None]

UsageGranularity = strawberry.enum(
    Granularity, name="UsageGranularity", description="Length of one usage bucket, aligned to UTC."
)


@strawberry.type(description="Latency percentiles in milliseconds, within 2 % of the exact values.")
class LatencyPercentiles:
    p50_ms: float
    p95_ms: float
    p99_ms: float


@strawberry.type(description="Requests of a period, or of the whole range, by status class.")
class UsageStats:
    requests: int = strawberry.field(description="Authenticated requests, whatever their status.")
    status_2xx: int
    status_4xx: int = strawberry.field(description="Client errors, the rate-limited requests included.")
    status_5xx: int
    rate_limited: int = strawberry.field(description="Requests rejected with 429 by the rate limit.")
    error_rate: float | None = strawberry.field(
        description="(status4xx + status5xx) / requests, from 0 to 1; null without requests."
    )
    latency: LatencyPercentiles | None = strawberry.field(
        description="From the start of authentication to the last byte of the response; null without requests."
    )


@strawberry.type(description="The usage of one period.")
class UsageBucket(UsageStats):
    start: datetime = strawberry.field(description="Start of the period; it lasts one granularity.")


@strawberry.type(description="Usage of one API key or of one organization's keys.")
class Usage:
    granularity: UsageGranularity  # type: ignore[valid-type]
    start: datetime = strawberry.field(description="Start of the first bucket: `from` rounded down.")
    end: datetime = strawberry.field(description="End of the last bucket, exclusive: `to` rounded up.")
    api_key_id: strawberry.ID | None = strawberry.field(description="The key, when the usage is one key's.")
    organization_id: strawberry.ID | None
    buckets: list[UsageBucket] = strawberry.field(
        description="Every period from start to end, oldest first, including periods without requests."
    )
    totals: UsageStats


def _stats_fields(figures: UsageFigures) -> dict[str, object]:
    latency = None
    if figures.latency:
        latency = LatencyPercentiles(
            p50_ms=figures.latency_ms(0.50),  # type: ignore[arg-type]
            p95_ms=figures.latency_ms(0.95),  # type: ignore[arg-type]
            p99_ms=figures.latency_ms(0.99),  # type: ignore[arg-type]
        )
    return {
        "requests": figures.requests,
        "status_2xx": figures.status_2xx,
        "status_4xx": figures.status_4xx,
        "status_5xx": figures.status_5xx,
        "rate_limited": figures.rate_limited,
        "error_rate": figures.error_rate,
        "latency": latency,
    }


@strawberry.input
class SetApiKeyRateLimitInput:
    id: strawberry.ID
    rate_limit_per_minute: int | None = strawberry.field(
        description="Requests per minute; null returns the key to the server's default. "
        "Only a platform admin key can set more than the default."
    )


@strawberry.type
class Query:
    @strawberry.field(
        description="Requests, status classes, error rate and latency per period, for one API key "
        "(apiKeyId) or for an organization's keys. Needs the usage:read scope. Requests appear "
        f"within about 10 seconds with the default settings. At most {MAX_BUCKETS} buckets."
    )
    async def usage(
        self,
        info: Info,
        from_: Annotated[
            datetime, strawberry.argument(name="from", description="Start of the range, inclusive.")
        ],
        to: Annotated[datetime, strawberry.argument(description="End of the range, exclusive.")],
        granularity: Annotated[
            UsageGranularity,  # type: ignore[valid-type]
            strawberry.argument(description="Bucket length; hour when omitted."),
        ] = Granularity.HOUR,
        api_key_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this key's requests. Omit for the whole organization."),
        ] = None,
        organization_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="The organization. Defaults to the API key's own; required for a platform "
                "admin key unless apiKeyId is given."
            ),
        ] = None,
    ) -> Usage:
        report = await read_usage(
            info.context,
            start=from_,
            end=to,
            granularity=granularity,
            api_key_id=api_key_id,
            organization_id=organization_id,
        )
        return Usage(
            granularity=report.granularity,
            start=report.start,
            end=report.end,
            api_key_id=report.api_key_id,  # type: ignore[arg-type]
            organization_id=report.organization_id,  # type: ignore[arg-type]
            buckets=[UsageBucket(start=start, **_stats_fields(figures)) for start, figures in report.buckets],  # type: ignore[arg-type]
            totals=UsageStats(**_stats_fields(report.totals)),  # type: ignore[arg-type]
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Change a key's rate limit. It applies from the key's next request, on every server."
    )
    async def set_api_key_rate_limit(self, info: Info, input: SetApiKeyRateLimitInput) -> ApiKey:
        return await apikeys.set_api_key_rate_limit(info.context, input.id, input.rate_limit_per_minute)  # type: ignore[return-value]
