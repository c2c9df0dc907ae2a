"""Composition root: builds every resource once and hands them to the Bot."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from typing import TYPE_CHECKING

import discord
import yarl
from alembic.util import CommandError
from discord.gateway import DiscordWebSocket
from discord.http import Route
from sqlalchemy.exc import SQLAlchemyError

from bot.client import Bot
from bot.metrics import Metrics
from bot.monitoring import MonitoringServer, MonitoringUnavailable
from bot.redaction import mask_url_passwords, safe_database_url
from bot.services.container import build_retention, build_services
from bot.services.retention import RetentionService
from bot.settings import Settings
from bot.storage import migrate
from bot.storage.engine import create_engine, create_session_factory

if TYPE_CHECKING:
    from bot.web.server import WebServer

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0


def configure_discord_endpoints(settings: Settings) -> None:
    """Point discord.py at DISCORD_API_BASE and DISCORD_GATEWAY_URL (the one place this is done)."""
    Route.BASE = settings.discord_api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def build_bot(settings: Settings) -> Bot:
    """Migrate the database, build the services and the Bot around them."""
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    configure_discord_endpoints(settings)
    database = create_engine(settings.database_url)
    sessions = create_session_factory(database)
    metrics = Metrics()
    services = build_services(settings, sessions, metrics)
    engine = services.engine
    retention = build_retention(settings, sessions, services)

    monitoring: MonitoringServer | None = None

    async def release() -> None:
        if monitoring is not None:
            await monitoring.stop()
        await engine.aclose()
        await database.dispose()

    bot = Bot(settings, services, on_close=release)
    metrics.watch_gateway(lambda: bot.latencies)
    if settings.metrics_port is not None:
        monitoring = MonitoringServer(
            metrics,
            gateway_connected=functools.partial(gateway_connected, bot),
            database=database,
            host=settings.metrics_host,
            port=settings.metrics_port,
        )
        try:
            await monitoring.start()
        except MonitoringUnavailable:
            monitoring = None
            await release()
            raise
        bot.monitoring = monitoring
    if settings.warmup:
        bot.run_in_background(engine.warmup(), "warmup")
    bot.run_in_background(_retention_loop(retention, bot.stopping), "retention")

    async def forget_guild(guild: discord.Guild) -> None:
        # Settings of a guild the bot left stay stored but need not stay in memory (the
        # moderation cog drops its own).
        services.conversations.forget_guild(guild.id)

    bot.add_listener(forget_guild, "on_guild_remove")
    return bot


def gateway_connected(bot: Bot) -> bool:
    """Whether the bot is ready and every one of its shards has an open gateway connection."""
    shards = bot.shards.values()
    return bot.is_ready() and not bot.is_closed() and all(not s.is_closed() for s in shards)


async def _retention_loop(retention: RetentionService, stopping: asyncio.Event) -> None:
    # Stops between prunes, never in the middle of one (a database call cut by
    # cancellation leaves its connection half-closed when the engine is disposed).
    while not stopping.is_set():
        try:
            await retention.prune()
        except Exception:
            log.exception("retention pruning failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), RETENTION_INTERVAL_S)


async def run_bot(settings: Settings, *, web: bool = False) -> int:
    """Start the bot (and with ``web`` the web app beside it, on the same services and
    models) and run until it is stopped; returns the process exit code."""
    assert settings.discord_token is not None
    try:
        bot = await build_bot(settings)
    except (SQLAlchemyError, OSError, CommandError) as error:
        # One line, and never the password of DATABASE_URL.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        log.error(
            "cannot use the database %s: %s",
            safe_database_url(settings.database_url),
            mask_url_passwords(reason),
        )
        return 1
    except MonitoringUnavailable as error:
        log.error("%s (METRICS_HOST, METRICS_PORT)", error)
        return 1
    web_server = await _start_web(bot, settings) if web else None
    if web and web_server is None:
        return 1
    # `docker stop` and systemd send SIGTERM: close the gateway and the database cleanly.
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []  # a reference keeps the task alive
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(
            signal_number, lambda: stopping.append(loop.create_task(bot.close()))
        )
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure:
        log.error("Discord refused the token: check DISCORD_TOKEN")
        return 1
    except discord.PrivilegedIntentsRequired:
        log.error(
            "Discord refused the message content intent (close code 4014): enable "
            "'Message Content Intent' for this bot in the developer portal, under Bot."
        )
        return 1
    finally:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signal_number)
        if web_server is not None:
            await web_server.stop()
    return 0


async def _start_web(bot: Bot, settings: Settings) -> WebServer | None:
    """The web app on the bot's loop and services (one copy of each model); None if it
    cannot listen (the bot's resources are released then)."""
    from bot.web.access import WebSetupError
    from bot.web.server import WebServer

    server = WebServer(bot.services, settings)
    try:
        await server.start()
    except WebSetupError as error:
        log.error("%s", error)
        await bot.close()
        return None
    return server
