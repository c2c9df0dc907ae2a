"""A loopback Discord and the real bot, built by the composition root of `python -m bot run`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import build_bot
from bot.client import Bot
from tests.conftest import TinyModels
from tests.loopback.harness import LoopbackDiscord, loopback_settings, start_server, stop_server


@pytest.fixture
async def discord_server() -> AsyncIterator[LoopbackDiscord]:
    server = await start_server()
    yield server
    await stop_server(server)
    refused = [(r.method, r.path, errors) for r, errors in server.fake.refused]
    assert not refused, f"the bot sent what Discord would refuse: {refused}"


class BotRunner:
    """Starts and stops bots against one loopback Discord."""

    def __init__(self, server: LoopbackDiscord, database_url: str, models: TinyModels) -> None:
        self.server = server
        self.database_url = database_url
        self.models = models
        self.running: list[tuple[Bot, asyncio.Task[None]]] = []

    async def start(self, **overrides: Any) -> Bot:
        settings = loopback_settings(
            self.server, self.database_url, self.models.as_roles(), **overrides
        )
        bot = await build_bot(settings)
        # discord.py declares itself ready only after `guild_ready_timeout` (2 s) passed without
        # another GUILD_CREATE. The loopback sends every guild right after READY, so a shorter
        # quiet period is enough; the wait below still insists on every guild having arrived.
        bot._connection.guild_ready_timeout = 0.5
        task = asyncio.create_task(bot.start(self.server.fake.token))
        self.running.append((bot, task))
        expected = set(self.server.fake.guilds)
        await self.server.wait_for(
            lambda: (bot.is_ready() and expected <= {g.id for g in bot.guilds}) or task.done(),
            20,
            "the bot to be ready with every guild",
        )
        if task.done():
            task.result()
        return bot

    async def stop(self, bot: Bot) -> None:
        for entry in list(self.running):
            if entry[0] is bot:
                self.running.remove(entry)
                await bot.close()
                await asyncio.gather(entry[1], return_exceptions=True)


@pytest.fixture
async def bots(
    discord_server: LoopbackDiscord, database_url: str, tiny_models: TinyModels
) -> AsyncIterator[BotRunner]:
    runner = BotRunner(discord_server, database_url, tiny_models)
    yield runner
    for bot, _ in list(runner.running):
        await runner.stop(bot)


@pytest.fixture
async def bot(bots: BotRunner) -> Bot:
    """A running bot, logged in and synced."""
    return await bots.start()
