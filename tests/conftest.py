"""Fixtures shared by unit and end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage import migrate
from bot.storage.engine import SessionFactory, create_engine, create_session_factory


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite file (not yet migrated)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """A session factory on a migrated temporary database."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()
