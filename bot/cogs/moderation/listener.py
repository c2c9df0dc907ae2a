"""Channel messages to the moderation service, and the Discord actions it calls back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import discord
from cachetools import TTLCache

from bot.cogs.errors import report
from bot.cogs.moderation.access import CANNOT_QUOTE, readers_can_see, resolve_channel
from bot.cogs.moderation.alerts import AlertBoard
from bot.cogs.moderation.heat import heat_embed, heat_view
from bot.cogs.moderation.texts import alert_embed
from bot.cogs.moderation.views import alert_view
from bot.formatting import NO_MENTIONS
from bot.services.backlog import RetryBacklog
from bot.services.explain import WordEffect
from bot.services.moderation import (
    ActingFailedError,
    AlertKey,
    CheckedMessage,
    ModerationService,
    action_verb,
    is_retriable,
)
from bot.storage.records import GuildSettings, ModerationAction, ModerationEvent

log = logging.getLogger(__name__)

FLAG_EMOJI = "\N{WARNING SIGN}"
# Texts already checked, remembered a while to skip the duplicate events of one edit.
CHECKED_MEMORY = 10_000
CHECKED_MEMORY_S = 600.0


class DiscordActions:
    """What the service asks Discord to do about one flagged message (ModerationActions)."""

    def __init__(self, client: discord.Client, alerts: AlertBoard, message: discord.Message):
        self._client = client
        self._alerts = alerts
        self._message = message

    async def apply(self, settings: GuildSettings) -> tuple[str, bool]:
        message = self._message
        try:
            if settings.action is ModerationAction.REACT:
                await message.add_reaction(FLAG_EMOJI)
                return "reacted", True
            if settings.action is ModerationAction.DELETE:
                await message.delete()
                return "deleted", True
            if settings.action is ModerationAction.TIMEOUT:
                return await _timeout(message.guild, message.author, settings.timeout_minutes)
        except discord.Forbidden:
            return f"could not {action_verb(settings)}: I am missing a permission", False
        except discord.HTTPException as error:
            return f"could not {action_verb(settings)}: Discord said {error.status}", False
        return "logged", True

    def can_alert(self, settings: GuildSettings) -> bool:
        return self._log_channel(settings) is not None

    def alert_lock(self, key: AlertKey) -> AbstractAsyncContextManager[Any]:
        return self._alerts.lock(key)

    async def post_alert(
        self,
        settings: GuildSettings,
        event: ModerationEvent,
        outcome: str,
        reasons: Sequence[WordEffect],
    ) -> None:
        channel = self._log_channel(settings)
        assert channel is not None
        quote = await self._may_quote(channel)
        # The words are the message's own: named only where it could be quoted.
        embed = alert_embed(
            event,
            self._message.content if quote else CANNOT_QUOTE,
            outcome,
            reasons if quote else (),
        )
        key = (event.guild_id, event.author_id)
        await self._alerts.post(channel, key, event.id, embed, alert_view(event.id))

    async def join_alert(self, key: AlertKey, event: ModerationEvent, outcome: str) -> bool:
        return await self._alerts.join(key, event.id, outcome)

    async def post_heat_alert(
        self, settings: GuildSettings, channel_id: int, share: float, checked: int
    ) -> None:
        channel = self._log_channel(settings)
        assert channel is not None
        await channel.send(
            embed=heat_embed(channel_id, share, checked),
            view=heat_view(channel_id),
            allowed_mentions=NO_MENTIONS,
        )

    async def post_cap_notice(self, settings: GuildSettings) -> None:
        channel = self._log_channel(settings)
        assert channel is not None
        await channel.send(
            "Many messages are being flagged: further alerts this minute are recorded "
            "(and acted on) without being posted. See `/moderation stats`.",
            allowed_mentions=NO_MENTIONS,
        )

    async def _may_quote(self, log_channel: object) -> bool:
        """Whether the log channel's readers could read the flagged message where it is."""
        message = self._message
        if message.guild is None or not isinstance(
            log_channel, discord.abc.GuildChannel | discord.Thread
        ):
            return False
        try:
            source = await resolve_channel(message.guild, message.channel.id)
        except discord.HTTPException:
            return False
        return source is not None and readers_can_see(source, log_channel)

    def _log_channel(self, settings: GuildSettings) -> discord.abc.Messageable | None:
        if settings.log_channel_id is None:
            return None
        channel = self._client.get_channel(settings.log_channel_id)
        return channel if isinstance(channel, discord.abc.Messageable) else None


class MessageChecks:
    """Checks each new or edited message once; passing failures wait in a retry backlog."""

    def __init__(
        self, client: discord.Client, service: ModerationService, alerts: AlertBoard
    ) -> None:
        self._client = client
        self._service = service
        self._alerts = alerts
        # Texts already checked (message id, hash of the text): a message edited at once is
        # seen twice with the new text (discord.py updates the cached message first).
        self._checked: TTLCache[tuple[int, int], None] = TTLCache(
            CHECKED_MEMORY, ttl=CHECKED_MEMORY_S
        )
        # Checks that failed for a passing reason (model busy, slow or down), retried later.
        self.backlog: RetryBacklog[discord.Message] = RetryBacklog()

    async def check(self, message: discord.Message) -> None:
        """Check a message unless it was checked with this text already."""
        if message.guild is None or message.author.bot or not message.content.strip():
            return
        key = (message.id, hash(message.content))
        if key in self._checked:
            return
        self._checked[key] = None
        try:
            await self.check_once(message)
        except Exception as error:  # only passing failures get here: try again later
            kept = self.backlog.add(message.guild.id, message)
            log.warning(
                "moderation check of message %s failed (%s); %s",
                message.id,
                error,
                "will retry" if kept else "the retry backlog is full, not checked",
            )

    async def check_once(self, message: discord.Message) -> None:
        """Check a message and act on it; raises only errors worth a retry (see is_retriable)."""
        assert message.guild is not None
        actions = DiscordActions(self._client, self._alerts, message)
        try:
            await self._service.process(checked_message(message), actions)
        except ActingFailedError as error:  # the flag is stored: never again
            report(error.__cause__ or error, f"moderation check of message {message.id}")
        except Exception as error:
            if is_retriable(error):
                raise
            report(error, f"moderation check of message {message.id}")


def checked_message(message: discord.Message) -> CheckedMessage:
    """What the service needs to know about a guild message."""
    assert message.guild is not None
    channel = message.channel
    return CheckedMessage(
        message.guild.id,
        channel.id,
        message.id,
        message.author.id,
        message.content,
        frozenset(role.id for role in getattr(message.author, "roles", [])),
        parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
    )


async def _timeout(
    guild: discord.Guild | None, author: discord.abc.User, minutes: int
) -> tuple[str, bool]:
    """Time a member out, never the owner or anyone at or above the bot's top role."""
    if guild is None or not isinstance(author, discord.Member):
        return "could not time out: not a member of this server", False
    if author.id == guild.owner_id:
        return "not timed out: the server owner cannot be timed out", False
    if author.top_role >= guild.me.top_role:
        return "not timed out: their top role is at or above mine", False
    await author.timeout(timedelta(minutes=minutes), reason="flagged by moderation checks")
    return f"timed out for {minutes} min", True
