"""Database engine, sessions and the column types shared by the tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Format a timestamp in UTC with a 'Z' suffix, as every API response does."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat() of a UTC datetime ends in "+00:00"; this runs for every timestamp of every list.
    return moment.isoformat()[:-6] + "Z"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back time-zone aware.

    SQLite keeps no offset, so values are normalised to UTC on the way in and
    marked as UTC on the way out; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_engine(url: str, *, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """Create the engine; ``pre_ping`` tests each pooled PostgreSQL connection before use.

    The ping costs a round trip per checkout. Without it, the first use of a connection
    that the server closed fails, and the pool replaces that connection.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping)


def _configure_sqlite(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


AfterCommit = Callable[[AsyncSession], Awaitable[None]]


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, *, pool_size: int = 10, pre_ping: bool = True) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, pre_ping=pre_ping)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Called with the session after each commit of ``transaction``, never after a
        # rollback; the outbox uses this to queue the deliveries the transaction wrote.
        self.after_commit: list[AfterCommit] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """Open a plain connection for read-only Core queries, without an ORM session's bookkeeping."""
        async with self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Open a session whose work commits on success and rolls back on error."""
        async with self.sessions() as session:
            async with session.begin():
                yield session
            for hook in self.after_commit:
                await hook(session)

    async def dispose(self) -> None:
        await self.engine.dispose()
