"""The one engine and session factory of the process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

SessionFactory = async_sessionmaker[AsyncSession]


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def ensure_sqlite_directory(url: URL) -> None:
    """Create the folder of a SQLite file so that a fresh checkout just works."""
    if _is_sqlite(url) and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while the bot writes; busy_timeout waits out short locks
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    # FULL syncs the WAL at every commit: a committed turn or moderation event survives a
    # power cut or OS crash too (NORMAL only survives a crash of the bot process), at the
    # price of one fsync per write transaction.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for any SQLAlchemy URL, with SQLite tuned on connect."""
    url = make_url(database_url)
    ensure_sqlite_directory(url)
    # hide_parameters: error messages (logged) never carry what members wrote.
    engine = create_async_engine(url, pool_pre_ping=not _is_sqlite(url), hide_parameters=True)
    if _is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    log.info("database backend: %s", url.get_backend_name())
    return engine


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded values usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
