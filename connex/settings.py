"""Settings read from ``CONNEX_*`` environment variables and a ``.env`` file."""

from __future__ import annotations

import secrets
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")
EMBEDDED_DATABASE_URL = f"sqlite+aiosqlite:///./{VAR_DIR}/connex.db"


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; raised at start-up."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONNEX_", env_file=".env", extra="ignore")

    database_url: str = EMBEDDED_DATABASE_URL
    # Unset: embedded mode with in-process rate limiting, key cache and worker.
    redis_url: str | None = None
    # Key for the HMAC that stores API keys and for other server-side MACs.
    # Unset in embedded mode: generated once and kept in var/secret_key.
    secret_key: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: str = Field("console", pattern="^(console|json)$")

    max_body_bytes: int = Field(1_048_576, ge=1024)
    # How long a key record stays cached before it is read from the database again.
    key_cache_seconds: int = Field(60, ge=1)
    # How often buffered last_used_at times are written to the database.
    last_used_flush_seconds: float = Field(30.0, gt=0)

    # Requests per key per window, for keys without their own rateLimitPerMinute.
    rate_limit_per_minute: int = Field(600, ge=1)
    # Length of the sliding rate-limit window in seconds. The API calls every limit
    # "per minute", so only tests that wait for a window to pass set another value.
    rate_limit_window_seconds: int = Field(60, ge=1)
    # Maximum wait for a Redis reply, in seconds. A request whose admission times out is
    # served from in-process state, like every request while Redis is unreachable.
    redis_socket_timeout: float = Field(0.5, gt=0)
    # While Redis is unreachable, one request probes it this often (seconds).
    redis_probe_seconds: float = Field(5.0, gt=0)
    # While Redis is unreachable, key records read from the database are reused for this
    # many seconds, so a revocation made on another process takes effect this much later.
    outage_key_cache_seconds: float = Field(5.0, gt=0)

    # How often each process sends its usage counters to Redis, or in embedded mode
    # writes them to the database (seconds).
    usage_flush_seconds: float = Field(1.0, gt=0)
    # How often the usage counters in Redis are rolled into the database (seconds).
    # One process at a time does it, under a Redis lock.
    usage_rollup_seconds: float = Field(5.0, gt=0)

    # GraphQL limits: nesting depth, tokens in one document, aliases in one document.
    graphql_max_depth: int = Field(10, ge=1)
    graphql_max_tokens: int = Field(2000, ge=100)
    graphql_max_aliases: int = Field(30, ge=1)
    # Maximum cost of one GraphQL query in rate-limit units; schema/cost.py computes it.
    graphql_max_cost: int = Field(100, ge=1)

    # v1 lifecycle, sent as the Deprecation and Sunset headers.
    v1_deprecated_on: date = date(2026, 10, 1)
    v1_sunset_on: date = date(2027, 10, 1)

    public_base_url: str = "http://127.0.0.1:8000"

    # Webhook delivery. Plain http URLs are rejected unless allowed here.
    webhook_allow_http: bool = False
    # Networks exempt from the SSRF guard, as a JSON list such as '["127.0.0.1/32"]'.
    webhook_ssrf_exempt_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    # Limit on one whole attempt: DNS lookup, connection, request and reading the response.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # Delays in seconds before the 2nd, 3rd, ... attempt; the first attempt is immediate.
    webhook_retry_schedule: list[float] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000, 36000], min_length=0
    )
    # Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
    webhook_retry_jitter: float = Field(0.2, ge=0, lt=1)
    # An endpoint whose attempts have all failed for this long is disabled.
    webhook_disable_after_seconds: float = Field(5 * 86400, gt=0)
    # How long the previous secret keeps signing next to the new one after a rotation.
    webhook_secret_overlap_seconds: float = Field(86400, ge=0, le=7 * 86400)
    # How often each worker looks for due deliveries whose queue message was lost.
    webhook_sweep_interval_seconds: float = Field(30.0, gt=0)
    # A delivery is re-sent by the sweep once its queue message is this much overdue.
    webhook_sweep_grace_seconds: float = Field(60.0, ge=0)
    # Extra time beyond the attempt timeout for which a worker holds a delivery's lease.
    webhook_lease_margin_seconds: float = Field(30.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_retry_schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays must not be negative")
        if any(delay >= 7 * 86400 for delay in value):
            raise ValueError("each delay must be shorter than 7 days, the longest delay the queue accepts")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    def secret_key_bytes(self) -> bytes:
        if self.secret_key is None:
            raise ConfigurationError("CONNEX_SECRET_KEY is not set")
        return self.secret_key.get_secret_value().encode()

    def validate_for_serving(self) -> None:
        if self.v1_sunset_on < self.v1_deprecated_on:
            raise ConfigurationError("CONNEX_V1_SUNSET_ON must not be earlier than CONNEX_V1_DEPRECATED_ON")
        if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
            raise ConfigurationError("CONNEX_SECRET_KEY must be at least 32 characters")


def ensure_secret_key(settings: Settings) -> Settings:
    """Give an embedded installation a persistent secret key in var/secret_key.

    A server with Redis is a shared deployment, where every process must use the
    same key, so there the key has to be set explicitly.
    """
    if settings.secret_key is not None:
        return settings
    if not settings.embedded:
        raise ConfigurationError("CONNEX_SECRET_KEY must be set when CONNEX_REDIS_URL is set")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return settings.model_copy(update={"secret_key": SecretStr(path.read_text().strip())})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = ensure_secret_key(Settings())
    settings.validate_for_serving()
    return settings
