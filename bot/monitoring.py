"""/metrics (Prometheus) and /healthz over HTTP, on the bot's own event loop.

/healthz answers 200 when the gateway is connected and the database answers a ``SELECT 1``
within a short timeout, 503 otherwise; the body says which part failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import Metrics

log = logging.getLogger(__name__)

DATABASE_CHECK_S = 2.0


class MonitoringUnavailable(Exception):
    """The metrics port cannot be served (in use, not allowed); one line for the log."""


async def database_answers(database: AsyncEngine, timeout_s: float = DATABASE_CHECK_S) -> bool:
    """Whether the database answers ``SELECT 1`` within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s), database.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:  # any driver's failure means the same: it does not answer
        log.debug("health: the database did not answer: %s", error)
        return False
    return True


class MonitoringServer:
    """Serves /metrics and /healthz on ``host:port`` (port 0: a free one, see ``port``)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        gateway_connected: Callable[[], bool],
        database: AsyncEngine,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.metrics = metrics
        self.database = database
        self._gateway_connected = gateway_connected
        self._host, self._requested_port = host, port
        self._runner: web.AppRunner | None = None
        self._healthy: bool | None = None  # the last answer, to log changes only

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._runner is None or not self._runner.addresses:
            return self._requested_port
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        """Start listening (raises MonitoringUnavailable when the port cannot be used)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except OSError as error:
            await runner.cleanup()
            # asyncio repeats the address in its message; the errno's own text is enough.
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise MonitoringUnavailable(
                f"cannot serve metrics on {self._host}:{self._requested_port}: {reason}"
            ) from None
        self._runner = runner
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self._host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        # Rendering takes milliseconds (every histogram bucket): not on the event loop.
        body, content_type = await asyncio.to_thread(self.metrics.exposition)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _health(self, _request: web.Request) -> web.Response:
        gateway = self._gateway_connected()
        database = await database_answers(self.database)
        healthy = gateway and database
        if healthy != self._healthy:
            log.log(
                logging.INFO if healthy else logging.WARNING,
                "health: %s (gateway %s, database %s)",
                "ok" if healthy else "failing",
                "connected" if gateway else "disconnected",
                "answers" if database else "does not answer",
            )
            self._healthy = healthy
        return web.json_response(
            {"gateway": gateway, "database": database}, status=200 if healthy else 503
        )
