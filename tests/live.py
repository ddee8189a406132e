"""A ConneX server on a free loopback port, in a thread, for tests that need real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from connex.apikeys import create_key_offline
from connex.app import create_app
from connex.db import Database
from connex.ids import new_id
from connex.models import Organization
from connex.settings import Settings


@dataclass
class RunningServer:
    base_url: str
    settings: Settings
    api_key: str

    def __repr__(self) -> str:
        return f"RunningServer(base_url={self.base_url!r})"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def issue_test_key(settings: Settings, scopes: list[str]) -> str:
    db = Database(settings.database_url)
    try:
        async with db.transaction() as session:
            session.add(Organization(id=new_id("org"), slug="live-tests", name="Live tests"))
        return await create_key_offline(
            db, settings.secret_key_bytes(), name="live tests", organization_slug="live-tests", scopes=scopes
        )
    finally:
        await db.dispose()


@contextmanager
def run_server(directory: Path, scopes: list[str]) -> Iterator[RunningServer]:
    """Serve ConneX on SQLite in ``directory`` with one organization and a key holding ``scopes``."""
    database_path = directory / "connex.db"
    sock = free_socket()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database_path}",
        secret_key="x" * 40,
        redis_url=None,
        public_base_url=base_url,
    )
    # Importing connex.models registered the tables on SQLModel.metadata.
    engine = create_engine(f"sqlite:///{database_path}")
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    api_key = asyncio.run(issue_test_key(settings, scopes))

    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uvicorn_server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the ConneX test server did not start within 15 seconds")
        time.sleep(0.02)
    try:
        yield RunningServer(base_url, settings, api_key)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)
        sock.close()
