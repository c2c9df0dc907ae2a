"""/moderation commands, sentiment checks of channel messages, and the moderators' alert buttons."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import timedelta
from typing import Literal

import discord
from cachetools import TTLCache
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.errors import report
from bot.cogs.moderation_access import CANNOT_QUOTE, readers_can_see, resolve_channel
from bot.cogs.moderation_alerts import AlertBoard
from bot.cogs.moderation_buttons import BUTTON_TIMEOUT_MINUTES, AlertDecisions
from bot.errors import InvalidInputError
from bot.formatting import MESSAGE_LIMIT, NO_MENTIONS, clip, fit_embed, join_within, truncate
from bot.services.backlog import RetryBacklog
from bot.services.moderation import (
    Alert,
    CheckedMessage,
    ModerationService,
    ModerationStats,
    is_retriable,
    render_chart,
)
from bot.storage.records import GuildSettings, ModerationAction, ModerationEvent

log = logging.getLogger(__name__)

FLAG_EMOJI = "\N{WARNING SIGN}"
# Texts already checked, remembered a while to skip the duplicate events of one edit.
CHECKED_MEMORY = 10_000
CHECKED_MEMORY_S = 600.0
_BUTTON_LABELS = {
    "dismiss": ("Dismiss (false positive)", discord.ButtonStyle.secondary),
    "delete": ("Delete message", discord.ButtonStyle.danger),
    "timeout": (f"Timeout {BUTTON_TIMEOUT_MINUTES} min", discord.ButtonStyle.danger),
}


class AlertButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"mod:(?P<decision>dismiss|delete|timeout):(?P<event_id>[0-9]+)",
):
    """An alert button; its custom id carries the decision and the event (survives restarts)."""

    def __init__(self, decision: str, event_id: int) -> None:
        label, style = _BUTTON_LABELS[decision]
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=f"mod:{decision}:{event_id}")
        )
        self.decision = decision
        self.event_id = event_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
    ) -> AlertButton:
        return cls(match["decision"], int(match["event_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        assert isinstance(interaction.client, Bot)
        cog = interaction.client.get_cog(ModerationCog.__cog_name__)
        assert isinstance(cog, ModerationCog)
        await cog.on_alert_button(interaction, self.decision, self.event_id)


def alert_view(event_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for decision in _BUTTON_LABELS:
        view.add_item(AlertButton(decision, event_id))
    return view


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def alert_embed(event: ModerationEvent, excerpt: str, outcome: str) -> discord.Embed:
    embed = discord.Embed(
        title="Flagged message" + (" (dry run)" if event.dry_run else ""),
        description=truncate(excerpt, 300),
        url=jump_url(event.guild_id, event.channel_id, event.message_id),
        colour=discord.Colour.red(),
    )
    embed.add_field(name="Author", value=f"<@{event.author_id}>")
    embed.add_field(name="Channel", value=f"<#{event.channel_id}>")
    embed.add_field(name="Score", value=f"{event.label} {event.score:.2f}")
    embed.add_field(name="Action", value=outcome, inline=False)
    embed.set_footer(text=f"event #{event.id}")
    return fit_embed(embed)


def stats_text(stats: ModerationStats, guild_name: str) -> str:
    lines = [f"**Moderation in {guild_name}, last {stats.days} days**: {stats.total} flagged"]
    if stats.total:
        lines.append("By action: " + ", ".join(f"{k} {v}" for k, v in stats.by_action.items()))
        lines.append("By label: " + ", ".join(f"{k} {v}" for k, v in stats.by_label.items()))
        lines.append(f"Dismissed as false positives: {stats.dismissed}")
        budget = MESSAGE_LIMIT - len("\n".join(lines)) - len("\nTop channels: ")
        channels = join_within([f"<#{c}> {n}" for c, n in stats.top_channels], budget)
        lines.insert(3, "Top channels: " + channels)
    return clip("\n".join(lines), MESSAGE_LIMIT)


def settings_text(settings: GuildSettings, extra: str = "") -> str:
    """The settings, then ``extra``; long lists of exemptions are cut so that all fits."""
    log_channel = f"<#{settings.log_channel_id}>" if settings.log_channel_id else "none set"
    lines = [
        f"Moderation checks are **{'on' if settings.moderation_enabled else 'off'}**.",
        f"Threshold: {settings.threshold:.2f} - action: {settings.action.value}"
        + (f" ({settings.timeout_minutes} min)" if settings.action == "timeout" else "")
        + (" - **dry run**" if settings.dry_run else ""),
        f"Emotion checks (anger, disgust): {'on' if settings.use_emotions else 'off'}",
        f"Log channel: {log_channel}",
    ]
    exempt = "\nExempt roles: {} - exempt channels: {}"
    room = MESSAGE_LIMIT - len("\n".join(lines)) - len(exempt.format("", "")) - len(extra)
    roles = join_within([f"<@&{r}>" for r in sorted(settings.exempt_role_ids)], room // 2)
    roles = roles or "none"
    channels = join_within(
        [f"<#{c}>" for c in sorted(settings.exempt_channel_ids)], room - len(roles)
    )
    return "\n".join(lines) + exempt.format(roles, channels or "none") + extra


class ModerationCog(commands.Cog, name="Moderation"):
    moderation = app_commands.Group(
        name="moderation",
        description="Sentiment checks of this server's messages",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )
    exempt = app_commands.Group(
        name="exempt", description="Roles and channels that are never checked", parent=moderation
    )

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.alerts = AlertBoard()
        # Texts already checked (message id, hash of the text): a message edited at once is
        # seen twice with the new text (discord.py updates the cached message first).
        self._checked: TTLCache[tuple[int, int], None] = TTLCache(
            CHECKED_MEMORY, ttl=CHECKED_MEMORY_S
        )
        # Checks that failed for a passing reason (model busy, slow or down), retried later.
        self.backlog: RetryBacklog[discord.Message] = RetryBacklog()
        self.decisions = AlertDecisions(bot, bot.services.moderation, self.alerts)

    @property
    def service(self) -> ModerationService:
        return self.bot.services.moderation

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AlertButton)
        self.bot.run_in_background(
            self.backlog.run(self._check_once, is_retriable, self.bot.stopping),
            "moderation-retries",
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AlertButton)
        self.backlog.stop()

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Forget what is kept in memory for a server the bot left."""
        self.service.forget_guild(guild.id)
        self.backlog.forget_guild(guild.id)
        self.alerts.forget_guild(guild.id)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Default permissions can be changed by server admins; this check cannot.
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        # Every /moderation answer is private and may wait on the database: acknowledge
        # within Discord's 3 s first, then answer by followup.
        await interaction.response.defer(ephemeral=True, thinking=True)
        return True

    # --- commands ---------------------------------------------------------------------

    @moderation.command(name="enable", description="Check every message in this server")
    async def enable(self, interaction: discord.Interaction) -> None:
        settings = await self.service.configure(_guild(interaction), moderation_enabled=True)
        await self._reply_settings(interaction, settings)

    @moderation.command(name="disable", description="Stop checking messages")
    async def disable(self, interaction: discord.Interaction) -> None:
        settings = await self.service.configure(_guild(interaction), moderation_enabled=False)
        await self._reply_settings(interaction, settings)

    @moderation.command(name="status", description="Show the moderation settings")
    async def status(self, interaction: discord.Interaction) -> None:
        guild_id = _guild(interaction)
        settings = await self.service.settings(guild_id)
        await self._reply_settings(interaction, settings, self._backlog_text(guild_id))

    @moderation.command(name="configure", description="Change how messages are checked")
    @app_commands.describe(
        threshold="Flag messages whose hostile score is at least this (0-1, default 0.9)",
        action="What to do with a flagged message",
        timeout_minutes="How long a timeout lasts",
        log_channel="Where alerts are posted",
        dry_run="Record and log what would be done, but do nothing",
        emotions="Also flag anger and disgust (emotion model) on their own",
    )
    async def configure(
        self,
        interaction: discord.Interaction,
        threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
        action: Literal["log", "react", "delete", "timeout"] | None = None,
        timeout_minutes: app_commands.Range[int, 1, 40320] | None = None,
        log_channel: discord.TextChannel | None = None,
        dry_run: bool | None = None,
        emotions: bool | None = None,
    ) -> None:
        settings = await self.service.configure(
            _guild(interaction),
            threshold=threshold,
            action=ModerationAction(action) if action else None,
            timeout_minutes=timeout_minutes,
            log_channel_id=log_channel.id if log_channel else None,
            dry_run=dry_run,
            use_emotions=emotions,
        )
        await self._reply_settings(interaction, settings)

    @exempt.command(name="role", description="Never check members with this role")
    @app_commands.describe(remove="Check this role again")
    async def exempt_role(
        self, interaction: discord.Interaction, role: discord.Role, remove: bool = False
    ) -> None:
        settings = await self.service.exempt(_guild(interaction), role_id=role.id, remove=remove)
        await self._reply_settings(interaction, settings)

    @exempt.command(
        name="channel", description="Never check messages in this channel and its threads"
    )
    @app_commands.describe(remove="Check this channel again")
    async def exempt_channel(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | discord.ForumChannel,
        remove: bool = False,
    ) -> None:
        settings = await self.service.exempt(
            _guild(interaction), channel_id=channel.id, remove=remove
        )
        await self._reply_settings(interaction, settings)

    @moderation.command(name="stats", description="What was flagged lately, with a chart")
    @app_commands.describe(days="How many days back (default 7)")
    async def stats(
        self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] = 7
    ) -> None:
        stats = await self.service.stats(_guild(interaction), days)
        chart = await asyncio.to_thread(render_chart, stats)  # matplotlib is slow: off the loop
        guild_name = interaction.guild.name if interaction.guild else "this server"
        await interaction.followup.send(
            stats_text(stats, guild_name),
            file=discord.File(io.BytesIO(chart), filename="moderation.png"),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def _reply_settings(
        self, interaction: discord.Interaction, settings: GuildSettings, extra: str = ""
    ) -> None:
        await interaction.followup.send(
            settings_text(settings, extra), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    def _backlog_text(self, guild_id: int) -> str:
        waiting = self.backlog.waiting(guild_id)
        retrying = f" - waiting for a retry: {waiting}" if waiting else ""
        return (
            "\nCould not be checked (model or database busy or down, counted since the bot "
            f"started): {self.backlog.lost(guild_id)}{retrying}"
        )

    # --- checks -----------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        await self._check(message)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        before, after = payload.cached_message, payload.message
        changed = before.content != after.content if before else after.edited_at is not None
        if changed:  # not a link preview arriving
            await self._check(after)

    async def _check(self, message: discord.Message) -> None:
        if message.guild is None or message.author.bot or not message.content.strip():
            return
        key = (message.id, hash(message.content))
        if key in self._checked:
            return
        self._checked[key] = None
        try:
            await self._check_once(message)
        except Exception as error:  # only passing failures get here: try again later
            kept = self.backlog.add(message.guild.id, message)
            log.warning(
                "moderation check of message %s failed (%s); %s",
                message.id,
                error,
                "will retry" if kept else "the retry backlog is full, not checked",
            )

    async def _check_once(self, message: discord.Message) -> None:
        """Check a message and act on it; raises only errors worth a retry (see is_retriable)."""
        assert message.guild is not None
        roles = getattr(message.author, "roles", [])
        channel = message.channel
        checked = CheckedMessage(
            message.guild.id,
            channel.id,
            message.id,
            message.author.id,
            message.content,
            frozenset(role.id for role in roles),
            parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
        )
        try:
            settings, verdict = await self.service.check(checked)
            if verdict is None:
                return
            # Stored first, so that a flag is never lost: nothing was done yet, so a
            # failure here is tried again like a failed check.
            event = await self.service.record(verdict, settings)
        except Exception as error:
            if is_retriable(error):
                raise
            _log_failure(message, error)
            return
        try:  # from here on, never again: the event is stored and may be acted on
            await self._act(message, settings, event)
        except Exception as error:  # one message must never take the checks down
            _log_failure(message, error)

    async def _act(
        self, message: discord.Message, settings: GuildSettings, event: ModerationEvent
    ) -> None:
        if settings.dry_run:
            outcome, succeeded = f"dry run: would {_verb(settings)}", True
        else:
            outcome, succeeded = await self._apply(message, settings)
        action = "dry_run" if settings.dry_run else settings.action.value
        await self.service.action_done(event.id, succeeded, action)
        await self._alert(message, settings, event, outcome)

    async def _apply(self, message: discord.Message, settings: GuildSettings) -> tuple[str, bool]:
        """Carry out the configured action; returns what happened and whether it worked."""
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
            return f"could not {_verb(settings)}: I am missing a permission", False
        except discord.HTTPException as error:
            return f"could not {_verb(settings)}: Discord said {error.status}", False
        return "logged", True

    # --- alerts -----------------------------------------------------------------------

    async def _alert(
        self,
        message: discord.Message,
        settings: GuildSettings,
        event: ModerationEvent,
        outcome: str,
    ) -> None:
        channel = self._log_channel(settings)
        if channel is None:
            return
        key = (event.guild_id, event.author_id)
        async with self.alerts.lock(key):  # an author's flags join their alert one by one
            try:
                await self._post_alert(channel, key, message, event, outcome)
            except discord.HTTPException:
                log.warning("could not post a moderation alert for event %s", event.id)

    async def _post_alert(
        self,
        channel: discord.abc.Messageable,
        key: tuple[int, int],
        message: discord.Message,
        event: ModerationEvent,
        outcome: str,
    ) -> None:
        gate = self.service.gate
        decision = gate.admit(*key)
        if decision is Alert.GROUP:
            if await self.alerts.join(key, event.id, outcome):
                return
            gate.alert_gone(*key)  # deleted by a moderator, or no longer remembered
            decision = gate.admit(*key)
        if decision is Alert.POST:
            try:
                quote = await self._may_quote(message, channel)
                embed = alert_embed(event, message.content if quote else CANNOT_QUOTE, outcome)
                await self.alerts.post(channel, key, event.id, embed, alert_view(event.id))
            except BaseException:
                gate.withdraw(key[0])  # nothing went out: later flags must not join it
                raise
            gate.posted(*key)
        elif decision is Alert.CAP_NOTICE:
            await channel.send(
                "Many messages are being flagged: further alerts this minute are recorded "
                "(and acted on) without being posted. See `/moderation stats`.",
                allowed_mentions=NO_MENTIONS,
            )

    async def _may_quote(self, message: discord.Message, log_channel: object) -> bool:
        """Whether the log channel's readers could read the flagged message where it is."""
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
        channel = self.bot.get_channel(settings.log_channel_id)
        return channel if isinstance(channel, discord.abc.Messageable) else None

    # --- alert buttons ----------------------------------------------------------------

    async def on_alert_button(
        self, interaction: discord.Interaction, decision: str, event_id: int
    ) -> None:
        await self.decisions.handle(interaction, decision, event_id)


def _log_failure(message: discord.Message, error: BaseException) -> None:
    report(error, f"moderation check of message {message.id}")


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


def _verb(settings: GuildSettings) -> str:
    return {
        ModerationAction.LOG: "log it",
        ModerationAction.REACT: "react",
        ModerationAction.DELETE: "delete it",
        ModerationAction.TIMEOUT: f"time the author out for {settings.timeout_minutes} min",
    }[settings.action]


def _guild(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise InvalidInputError("That command only works in a server.")
    return interaction.guild_id


async def setup(bot: Bot) -> None:
    await bot.add_cog(ModerationCog(bot))
