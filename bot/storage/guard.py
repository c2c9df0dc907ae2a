"""The storage boundary: database failures leave the repositories as StorageError only."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import StorageError
from bot.storage.models import Base

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def storage_call(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn SQLAlchemy and driver (OSError) failures of ``method`` into StorageError.

    The original is logged here, once, with its traceback and an error id that the
    member is shown; callers above the storage layer never see SQLAlchemy types.
    """

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (SQLAlchemyError, OSError) as error:
            error_id = secrets.token_hex(4)
            log.error("database error %s in %s", error_id, method.__qualname__, exc_info=error)
            raise StorageError(error_id) from error

    return guarded


async def insert_if_missing(
    session: AsyncSession, table: type[Base], values: dict[str, Any]
) -> None:
    """Insert a row unless one with the same primary key exists (safe under concurrency).

    Two first-time writers of the same key would otherwise both see "no row" and both
    INSERT; the loser failed with an IntegrityError.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        await session.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        await session.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    else:  # any other backend: a savepoint absorbs the duplicate
        try:
            async with session.begin_nested():
                await session.execute(insert(table).values(values))
        except IntegrityError:
            pass
