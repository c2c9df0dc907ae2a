"""SQL expressions that differ between backends, compiled for each one."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class UtcDay(FunctionElement[date]):
    """The UTC calendar day of a stored timestamp, whatever the session's time zone."""

    type = Date()
    name = "utc_day"
    inherit_cache = True


@compiles(UtcDay)
def _utc_day_default(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(UtcDay, "sqlite")
def _utc_day_sqlite(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores the UTC wall-clock time as text: its date part is the UTC day.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(UtcDay, "postgresql")
def _utc_day_postgresql(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    # A timestamptz cast to DATE takes the session's time zone; AT TIME ZONE pins it to UTC.
    return f"CAST(({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC') AS DATE)"
