"""Serving the page: on the event loop of the services (the bot's, or its own standalone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bot.metrics import Metrics
from bot.services.container import Services, build_services
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.engine import create_engine, create_session_factory
from bot.web.access import WebSetupError, check_exposure, login_check, web_password

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken port is a clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise WebSetupError(f"cannot resolve WEB_HOST={host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise WebSetupError(
            f"cannot listen on {host}:{port} (WEB_HOST, WEB_PORT): {error.strerror}"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def build_app(services: Services, settings: Settings) -> FastAPI:
    """The FastAPI app with the page mounted at / (imports gradio: slow, call it off the loop)."""
    import gradio as gr
    from fastapi import FastAPI

    from bot.web.app import build_page

    auth = login_check(settings)
    page = build_page(services, protected=auth is not None)
    page.queue(default_concurrency_limit=None)
    app: FastAPI = gr.mount_gradio_app(
        FastAPI(openapi_url=None, docs_url=None, redoc_url=None),
        page,
        path="",
        auth=auth,
        auth_message="Log in with WEB_USERNAME and WEB_PASSWORD." if auth else None,
        footer_links=["api"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        max_file_size="1mb",
    )
    return app


class _OpenPagesAtStop(logging.Filter):
    """Drops uvicorn's report of a connection still open when the server stops.

    A browser tab left open keeps Gradio's event stream open; at stop uvicorn cancels it after
    the grace period and logs that as an ASGI error with a CancelledError traceback, although
    it is an ordinary stop.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


_OPEN_PAGES_AT_STOP = _OpenPagesAtStop()


def _server(app: FastAPI) -> uvicorn.Server:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """uvicorn on someone else's loop: signals stay with the process that owns it."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    logging.getLogger("uvicorn.error").addFilter(_OPEN_PAGES_AT_STOP)  # once: filters are a set
    return EmbeddedServer(config)


class WebServer:
    """The web app, served on the running event loop beside whatever else runs there."""

    def __init__(self, services: Services, settings: Settings) -> None:
        check_exposure(settings)
        self._services = services
        self._settings = settings
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = settings.web_port

    @property
    def url(self) -> str:
        host = self._settings.web_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{f'[{shown}]' if ':' in shown else shown}:{self.port}/"

    async def start(self) -> None:
        """Listen on WEB_HOST:WEB_PORT and serve until ``stop``; WebSetupError when it cannot."""
        sock = _bind(self._settings.web_host, self._settings.web_port)
        self.port = sock.getsockname()[1]
        try:
            app = await asyncio.to_thread(build_app, self._services, self._settings)
            self._server = _server(app)
            self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="web")
            async with asyncio.timeout(START_TIMEOUT_S):
                # uvicorn says it is up only with a flag.
                while not self._server.started and not self._task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except BaseException:
            sock.close()
            raise
        if not self._server.started:
            sock.close()
            self._task.result()  # raises what stopped it
            raise WebSetupError("the web server stopped while starting")
        login = "login required" if web_password(self._settings) else "no login (loopback)"
        log.info("web app at %s (%s)", self.url, login)

    async def stop(self) -> None:
        """Stop serving (requests under way get a moment to end)."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._task
        except TimeoutError:
            log.warning("the web server did not stop in %.0f s; cancelling it", STOP_TIMEOUT_S)
            self._task.cancel()
        self._server = None


async def run_web(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """``python -m bot web``: migrate, load the models, serve until SIGTERM/SIGINT (or
    ``stop``); returns the exit code."""
    check_exposure(settings)
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    database = create_engine(settings.database_url)
    services = build_services(settings, create_session_factory(database), Metrics())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    server = WebServer(services, settings)
    try:
        await server.start()
        print(f"web app at {server.url}", flush=True)
        warmup = asyncio.create_task(services.engine.warmup()) if settings.warmup else None
        await stop.wait()
        if warmup is not None:
            warmup.cancel()
    finally:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signal_number)
        await server.stop()
        services.conversations.close()
        await services.engine.aclose()
        await database.dispose()
    return 0
