"""The Bot: discord.py client with the services injected; loads extensions, syncs commands."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord.ext import commands

from bot.cogs.errors import BotTree, report
from bot.formatting import NO_MENTIONS
from bot.monitoring import MonitoringServer
from bot.services.container import Services
from bot.settings import Settings

log = logging.getLogger(__name__)

# How long close() waits for background tasks to finish their current step.
BACKGROUND_STOP_S = 10.0

EXTENSIONS = (
    "bot.cogs.moderation",
    "bot.cogs.sentiment",
    "bot.cogs.summarize",
    "bot.cogs.chat",
    "bot.cogs.catchup",
    "bot.cogs.budgets",
)


def bot_intents() -> discord.Intents:
    """Guilds, guild messages and (privileged) message content."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    return intents


# The bot never joins voice; don't warn about voice libraries at every start.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class Bot(commands.AutoShardedBot):
    """The bot. Resources are built in ``bot.app`` and passed in.

    Sharded: with SHARD_COUNT/SHARD_IDS it runs those shards, otherwise every shard of
    Discord's recommended count (GET /gateway/bot). ``latencies`` gives each shard's
    heartbeat latency.
    """

    def __init__(
        self,
        settings: Settings,
        services: Services,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        sharding: dict[str, Any] = {"shard_count": settings.shard_count}
        if settings.shard_ids is not None:
            sharding["shard_ids"] = list(settings.shard_ids)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            tree_cls=BotTree,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            **sharding,
        )
        self.settings = settings
        self.services = services
        if isinstance(self.tree, BotTree):
            self.tree.metrics = services.metrics
        # /metrics and /healthz, when METRICS_PORT is set (started in bot.app).
        self.monitoring: MonitoringServer | None = None
        self._on_close = on_close
        self._background: set[asyncio.Task[None]] = set()
        # Set at close: background loops finish their current step and return.
        self.stopping = asyncio.Event()
        self._closing: asyncio.Future[None] | None = None

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.settings.runs_shard_zero:
            await self.sync_commands()
        else:
            # Commands belong to the application, not to a shard: one process syncs them.
            log.info("not syncing application commands: the process that runs shard 0 does")

    async def sync_commands(self) -> None:
        """Sync slash commands: to the dev guild when set (instant), else globally."""
        guild_id = self.settings.discord_dev_guild_id
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info(
            "synced %d application commands%s",
            len(synced),
            f" to guild {guild_id}" if guild_id else " globally",
        )

    async def on_ready(self) -> None:
        assert self.user is not None
        self.services.conversations.bot_user_id = self.user.id
        log.info(
            "connected as %s (%d guilds on shards %s of %s)",
            self.user,
            len(self.guilds),
            ",".join(str(shard_id) for shard_id in sorted(self.shards)),
            self.shard_count,
        )

    async def on_message(self, message: discord.Message) -> None:
        # No prefix commands: everything is a slash command; cogs listen to messages themselves.
        return

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """Listener errors take the same path as command errors (no member to answer here)."""
        error = sys.exc_info()[1]
        report(error or RuntimeError("unknown error"), f"event {event_method}")

    def run_in_background(self, coroutine: Awaitable[None], name: str) -> None:
        """Start a task the bot keeps a reference to; close() waits for it, then cancels it."""
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop background work, close the gateway, then release models and database.

        Runs once; every later or concurrent call waits for that one to end. A SIGTERM closes
        from its own task while ``async with bot`` closes again on the way out, and the process
        must not end before the release is over (a model thread left running keeps the
        interpreter from exiting).
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_once())
        await asyncio.shield(self._closing)

    async def __aexit__(self, *exc_info: object) -> None:
        # discord.py's own exit waits only for its part of close(), not for the release.
        await self.close()

    async def _close_once(self) -> None:
        self.stopping.set()
        self.services.conversations.close()
        if self._background:
            _, unfinished = await asyncio.wait(self._background, timeout=BACKGROUND_STOP_S)
            for task in unfinished:  # e.g. a warm-up still loading a model
                task.cancel()
            if unfinished:
                await asyncio.wait(unfinished, timeout=BACKGROUND_STOP_S)
        await super().close()
        if self._on_close is not None:
            await self._on_close()
