"""A fresh PostgreSQL database per test, on the server named by TEST_DATABASE_URL.

TEST_DATABASE_URL is an async SQLAlchemy URL of a role that may create databases and is a
member of pg_signal_backend (dropping a database WITH (FORCE) must be able to end an
autovacuum worker that is visiting it), e.g.
``postgresql+asyncpg://bot_ci:bot_ci@127.0.0.1:5432/postgres`` (`.ci/run` starts such a
server). Without it PostgreSQL tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import URL, make_url

ENV_NAME = "TEST_DATABASE_URL"


def server_url() -> URL:
    """The server to create test databases on; skips (fails under CI) when it is not set."""
    value = os.environ.get(ENV_NAME, "").strip()
    if not value:
        message = f"{ENV_NAME} is not set (e.g. postgresql+asyncpg://user:pw@127.0.0.1/postgres)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {message}")
        pytest.skip(message)
    url = make_url(value)
    if url.get_backend_name() != "postgresql":
        pytest.fail(f"{ENV_NAME} must be a postgresql+asyncpg:// URL, got {url.drivername}")
    return url


async def _admin(url: URL, statement: str) -> object:
    import asyncpg

    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


def _run(url: URL, statement: str) -> object:
    # Its own thread and loop: fixtures run this from sync and async tests alike.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _admin(url, statement)).result(timeout=60)


@functools.cache
def _check_role(server: URL) -> None:
    """Fail every PostgreSQL test at once, naming the fix, rather than the rare teardown that
    meets an autovacuum worker in the database it drops."""
    if not _run(server, "SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"):
        pytest.fail(
            f"{ENV_NAME}'s role {server.username!r} must be a member of pg_signal_backend to "
            f"drop test databases WITH (FORCE): GRANT pg_signal_backend TO {server.username};"
        )


@contextlib.contextmanager
def fresh_database(server: URL) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (closing leftover connections)."""
    _check_role(server)
    name = f"bot_test_{uuid.uuid4().hex[:12]}"
    _run(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        _run(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
