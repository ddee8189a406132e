"""The benchmark database and a description of the machine and source a benchmark ran on."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import redis
from sqlalchemy.engine import make_url

from bench.servers import REPOSITORY


class SetupError(RuntimeError):
    """Failure to use or create the benchmark database."""


def asyncpg_url(url: str) -> str:
    """Return a ``postgresql://`` URL with the asyncpg driver that SQLAlchemy needs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SetupError(
            f"the database URL must start with postgresql://, not {parsed.drivername}://"
        )
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def ensure_database(url: str) -> None:
    """Create the database with createdb unless it exists.

    Raise SetupError unless the database name contains "bench".
    """
    parsed = make_url(url)
    name = parsed.database or ""
    if "bench" not in name:
        raise SetupError(
            f"database {name!r} rejected: seeding truncates its tables, so the benchmark only"
            " uses a database whose name contains 'bench'; pass such a --database-url"
        )

    async def exists() -> bool:
        connection = await asyncpg.connect(
            host=parsed.host,
            port=parsed.port,
            user=parsed.username,
            password=parsed.password,
            database="postgres",
        )
        try:
            query = "SELECT true FROM pg_database WHERE datname = $1"
            return await connection.fetchval(query, name) is not None
        finally:
            await connection.close()

    if asyncio.run(exists()):
        return
    command = ["createdb", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432)]
    command += ["-U", parsed.username or "postgres", name]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SetupError(f"createdb {name} failed: {completed.stderr.strip()}")


def describe_machine(database_version: str, redis_url: str, wrk_version: str) -> dict[str, Any]:
    """Describe the CPUs, memory and software versions, for the results of a run."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break

    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])

    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = client.info("server")["redis_version"]
    finally:
        client.close()

    packages = {}
    for name in (
        "uvicorn",
        "starlette",
        "sqlalchemy",
        "asyncpg",
        "orjson",
        "strawberry-graphql",
        "redis",
        "uvloop",
        "httptools",
    ):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    hypervisor = None
    for line in lscpu.splitlines():
        if line.startswith("Hypervisor vendor:"):
            hypervisor = line.split(":", 1)[1].strip()

    return {
        "cpus": os.cpu_count(),
        "hypervisor": hypervisor,
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": database_version,
        "redis": redis_version,
        "wrk": wrk_version,
        "packages": packages,
    }


def describe_source() -> dict[str, Any]:
    """Record the commit and any uncommitted changes to the code the full server runs."""

    def git(*args: str) -> str:
        # --no-optional-locks: git status must not take index.lock while others commit.
        command = ["git", "--no-optional-locks", *args]
        completed = subprocess.run(
            command, cwd=REPOSITORY, capture_output=True, text=True, check=False
        )
        return completed.stdout.strip()

    changed = git(
        "status", "--porcelain", "--", "connex", "schema", "rest_compat", "pyproject.toml"
    )
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": changed.splitlines()}
