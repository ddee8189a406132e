"""Migrations: they create exactly the tables that the models describe, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command

from connex.migrate import alembic_config, upgrade


async def test_models_match_migrations(database_url: str) -> None:
    # The database fixtures have already applied every migration head.
    await asyncio.to_thread(command.check, alembic_config(database_url))


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/migrations.db"
    upgrade(url)
    command.downgrade(alembic_config(url), "0001")
    upgrade(url)
    command.check(alembic_config(url))
