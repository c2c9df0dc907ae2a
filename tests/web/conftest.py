"""One web app per test run: tiny models, a seeded SQLite database, on 127.0.0.1.

The app runs on its own event loop in a thread, as it runs on the bot's loop; tests reach
its services with ``WebApp.call`` and the page over HTTP (gradio_client, a real browser).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.metrics import Metrics
from bot.services.container import Services
from bot.services.moderation import CheckedMessage, Decision, Verdict
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.engine import SessionFactory, create_engine, create_session_factory
from bot.storage.records import ModerationAction, NewTurn, Role
from bot.storage.repositories import ConversationStore
from tests.conftest import TinyModels

T = TypeVar("T")
USERNAME, PASSWORD = "operator", "correct horse"
GUILD_ID = 111_222_333_444_555_666_777 // 1000  # a snowflake-sized id
CHANNEL_ID = 222_333_444_555_666_777
FLAGGED_CHANNEL_ID = 333_444_555_666_777_888
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def require_module(name: str) -> None:
    """Skip when a test dependency is missing; under CI, fail (CI installs the test profile)."""
    if importlib.util.find_spec(name) is None:
        message = f"{name} is not installed (the `test` profile installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the web tests: {message}")
        pytest.skip(message)


@dataclass
class WebApp:
    url: str
    settings: Settings
    services: Services
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the app's loop (where its services live) and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=60)


async def _seed(services: Services, sessions: SessionFactory) -> None:
    """A guild with moderation settings, flagged messages and a remembered conversation."""
    moderation = services.moderation
    settings = await moderation.configure(GUILD_ID, moderation_enabled=True, threshold=0.8)
    for index, (label, channel) in enumerate(
        [("negative", CHANNEL_ID), ("anger", FLAGGED_CHANNEL_ID), ("negative", FLAGGED_CHANNEL_ID)]
    ):
        message = CheckedMessage(GUILD_ID, channel, 900 + index, 700 + index, "text")
        event = await moderation.record(Verdict(message, label, 0.95), settings)
        if index == 0:
            await moderation.decide(event.id, Decision.DISMISS, 42)
    turns = ConversationStore(sessions)  # turns as the bot stores them for a Discord channel
    for role, text in [(Role.USER, "what is the plan"), (Role.ASSISTANT, "we ship on friday")]:
        await turns.add_turn(NewTurn(GUILD_ID, CHANNEL_ID, 5, "alice", role, text))
    assert settings.action is ModerationAction.LOG


@pytest.fixture(scope="package")
def web_app(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    """The web app with a login, serving the tiny models on a free port of 127.0.0.1."""
    require_module("gradio")
    from bot.services.container import build_services
    from bot.web.server import WebServer

    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web') / 'bot.db'}"
    migrate.upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        web_host="127.0.0.1",
        web_port=0,
        web_username=USERNAME,
        web_password=PASSWORD,
        device="cpu",
        chat_max_new_tokens=24,
        chat_answers_per_minute=0,
        warmup=False,
        **{f"{role}_model": path for role, path in tiny_models.as_roles().items()},
    )
    ready: Future[WebApp] = Future()

    async def serve() -> None:
        stop = asyncio.Event()  # set from the test thread through the loop
        database = create_engine(database_url)
        sessions = create_session_factory(database)
        services = build_services(settings, sessions, Metrics())
        server = WebServer(services, settings)
        try:
            await _seed(services, sessions)
            await server.start()
            ready.set_result(
                WebApp(server.url, settings, services, asyncio.get_running_loop(), stop)
            )
            await stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise
        finally:
            await server.stop()
            services.conversations.close()
            await services.engine.aclose()
            await database.dispose()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="web-app", daemon=True)
    thread.start()
    app = ready.result(timeout=180)
    try:
        yield app
    finally:
        app.loop.call_soon_threadsafe(app.stop.set)
        thread.join(timeout=60)
