"""Alembic environment: URL from the bot's settings, async engines, batch mode for SQLite."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.settings import get_settings
from bot.storage.engine import create_engine
from bot.storage.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata
# Any fixed number: the key of the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK = 7_310_422_118


def _database_url() -> str:
    # An explicit URL (tests, `db upgrade --url`) wins over the settings.
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def _configure(connection: Connection) -> None:
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        # Every bot process migrates at start, and shard processes start together: the first
        # to take this lock migrates, the others wait and then find nothing left to do. The
        # lock ends with the transaction the migrations run in.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if postgresql:  # Alembic leaves a transaction it did not begin to its owner
        connection.commit()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=_database_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
