"""Running the real bot against the loopback Discord, and waiting on what it does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.settings import Settings
from tests.loopback.discord_server import FakeDiscord, Interaction


class BotErrorLog(logging.Handler):
    """Collects ERROR records so a waiting test fails at once instead of timing out."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.expected = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def unexpected(self) -> list[logging.LogRecord]:
        return self.records[self.expected :]

    def expect(self, count: int = 1) -> None:
        """The next ``count`` errors are part of the test."""
        self.expected += count


class BotFailed(AssertionError):
    pass


@dataclass
class LoopbackDiscord:
    """The server, its address, and waiting helpers that watch the bot's error log."""

    fake: FakeDiscord
    runner: web.AppRunner
    errors: BotErrorLog
    port: int = 0
    timings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def settings_env(self) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": self.fake.token,
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_DEV_GUILD_ID": str(self.fake.guild_id),
        }

    def check_errors(self) -> None:
        unexpected = self.errors.unexpected()
        if unexpected:
            record = unexpected[0]
            detail = logging.Formatter().format(record)
            raise BotFailed(f"the bot logged an error: {detail}")

    async def wait_for(
        self, condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
    ) -> Any:
        """Poll ``condition`` until truthy; fail fast if the bot logs an error."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_errors()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.01)

    async def answer(self, interaction: Interaction, timeout: float = 15.0) -> list[str]:
        """Wait until the interaction has a visible answer; returns its texts."""
        await self.wait_for(
            lambda: (
                (
                    interaction.original is not None
                    and (interaction.original.get("content") or interaction.original.get("embeds"))
                )
                or interaction.followups
            ),
            timeout,
            f"an answer to /{interaction.name}",
        )
        return interaction.texts()


async def start_server() -> LoopbackDiscord:
    fake = FakeDiscord()
    runner = web.AppRunner(fake.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.gateway.base_url = f"ws://127.0.0.1:{port}/gateway"
    fake.http_base = f"http://127.0.0.1:{port}"
    errors = BotErrorLog()
    logging.getLogger().addHandler(errors)
    return LoopbackDiscord(fake, runner, errors, port)


async def stop_server(server: LoopbackDiscord) -> None:
    logging.getLogger().removeHandler(server.errors)
    await server.fake.gateway.drop()
    await asyncio.wait_for(server.runner.cleanup(), 10)


def loopback_settings(
    server: LoopbackDiscord, database_url: str, models: dict[str, str], **overrides: Any
) -> Settings:
    """Settings as `python -m bot run` would read them, pointed at the loopback Discord."""
    values: dict[str, Any] = {
        "discord_token": server.fake.token,
        "discord_api_base": server.api_base,
        "discord_gateway_url": server.gateway_url,
        "discord_dev_guild_id": server.fake.guild_id,
        "database_url": database_url,
        "sentiment_model": models["sentiment"],
        "emotion_model": models["emotion"],
        "moderation_model": models["moderation"],
        "summarization_model": models["summarization"],
        "chat_model": models["chat"],
        "device": "cpu",
        "command_cooldown_s": 0,
        "chat_max_new_tokens": 24,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
