"""/moderation commands, sentiment checks of channel messages, and the moderators' alert buttons."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections import OrderedDict, defaultdict
from datetime import timedelta
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.errors import describe, send_ephemeral
from bot.errors import InvalidInputError
from bot.formatting import NO_MENTIONS, truncate
from bot.services.moderation import (
    Alert,
    CheckedMessage,
    ModerationService,
    ModerationStats,
    Verdict,
    render_chart,
)
from bot.storage.records import GuildSettings, ModerationAction, ModerationEvent

log = logging.getLogger(__name__)

FLAG_EMOJI = "\N{WARNING SIGN}"
BUTTON_TIMEOUT_MINUTES = 10
CHECKED_MEMORY = 10_000
# What a moderator needs to press each alert button.
BUTTON_PERMISSIONS = {
    "dismiss": "manage_messages",
    "delete": "manage_messages",
    "timeout": "moderate_members",
}
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
    return embed


def stats_text(stats: ModerationStats, guild_name: str) -> str:
    lines = [f"**Moderation in {guild_name}, last {stats.days} days**: {stats.total} flagged"]
    if stats.total:
        lines.append("By action: " + ", ".join(f"{k} {v}" for k, v in stats.by_action.items()))
        lines.append("By label: " + ", ".join(f"{k} {v}" for k, v in stats.by_label.items()))
        lines.append("Top channels: " + ", ".join(f"<#{c}> {n}" for c, n in stats.top_channels))
        lines.append(f"Dismissed as false positives: {stats.dismissed}")
    return "\n".join(lines)


def settings_text(settings: GuildSettings) -> str:
    log_channel = f"<#{settings.log_channel_id}>" if settings.log_channel_id else "none set"
    roles = ", ".join(f"<@&{r}>" for r in sorted(settings.exempt_role_ids)) or "none"
    channels = ", ".join(f"<#{c}>" for c in sorted(settings.exempt_channel_ids)) or "none"
    return "\n".join(
        [
            f"Moderation checks are **{'on' if settings.moderation_enabled else 'off'}**.",
            f"Threshold: {settings.threshold:.2f} - action: {settings.action.value}"
            + (f" ({settings.timeout_minutes} min)" if settings.action == "timeout" else "")
            + (" - **dry run**" if settings.dry_run else ""),
            f"Emotion checks (anger, disgust): {'on' if settings.use_emotions else 'off'}",
            f"Log channel: {log_channel}",
            f"Exempt roles: {roles} - exempt channels: {channels}",
        ]
    )


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
        # The latest alert per (guild, author) with its event and how many flags joined it.
        self._alerts: dict[tuple[int, int], tuple[discord.Message, int, int]] = {}
        # Texts already checked: a message edited at once is seen twice with the new text
        # (discord.py updates the cached message before the first handler reads it).
        self._checked: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._alert_locks: defaultdict[tuple[int, int], asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def service(self) -> ModerationService:
        return self.bot.services.moderation

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AlertButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AlertButton)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Default permissions can be changed by server admins; this check cannot.
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
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
        await self._reply_settings(interaction, await self.service.settings(_guild(interaction)))

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

    @exempt.command(name="channel", description="Never check messages in this channel")
    @app_commands.describe(remove="Check this channel again")
    async def exempt_channel(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
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
        await interaction.response.defer(ephemeral=True, thinking=True)
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
        self, interaction: discord.Interaction, settings: GuildSettings
    ) -> None:
        await interaction.response.send_message(
            settings_text(settings), ephemeral=True, allowed_mentions=NO_MENTIONS
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
        key = (message.id, message.content)
        if key in self._checked:
            return
        self._checked[key] = None
        if len(self._checked) > CHECKED_MEMORY:
            self._checked.popitem(last=False)
        roles = getattr(message.author, "roles", [])
        checked = CheckedMessage(
            message.guild.id,
            message.channel.id,
            message.id,
            message.author.id,
            message.content,
            frozenset(role.id for role in roles),
        )
        try:
            settings, verdict = await self.service.check(checked)
            if verdict is not None:
                await self._act(message, settings, verdict)
        except Exception as error:  # one message must never take the checks down
            text, expected = describe(error)
            log.log(
                logging.WARNING if expected else logging.ERROR,
                "moderation check of message %s failed: %s",
                message.id,
                text or error,
                exc_info=not expected,
            )

    async def _act(
        self, message: discord.Message, settings: GuildSettings, verdict: Verdict
    ) -> None:
        event = await self.service.record(verdict, settings)  # first: never lost
        if settings.dry_run:
            outcome, succeeded = f"dry run: would {_verb(settings)}", True
        else:
            outcome, succeeded = await self._apply(message, settings)
        await self.service.action_done(event.id, succeeded)
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
        async with self._alert_locks[key]:  # an author's flags join their alert one by one
            await self._post_alert(channel, key, message, event, outcome)

    async def _post_alert(
        self,
        channel: discord.abc.Messageable,
        key: tuple[int, int],
        message: discord.Message,
        event: ModerationEvent,
        outcome: str,
    ) -> None:
        decision = self.service.gate.admit(*key)
        try:
            if decision is Alert.POST:
                sent = await channel.send(
                    embed=alert_embed(event, message.content, outcome),
                    view=alert_view(event.id),
                    allowed_mentions=NO_MENTIONS,
                )
                self._alerts[key] = (sent, event.id, 0)
            elif decision is Alert.GROUP and key in self._alerts:
                sent, first_event_id, more = self._alerts[key]
                more += 1
                embed = sent.embeds[0]
                embed.set_footer(
                    text=f"event #{first_event_id} · "
                    f"+{more} more flagged from this author (event #{event.id}, {outcome})"
                )
                self._alerts[key] = (await sent.edit(embed=embed), first_event_id, more)
            elif decision is Alert.CAP_NOTICE:
                await channel.send(
                    "Many messages are being flagged: further alerts this minute are recorded "
                    "(and acted on) without being posted. See `/moderation stats`.",
                    allowed_mentions=NO_MENTIONS,
                )
        except discord.HTTPException:
            log.warning("could not post a moderation alert for event %s", event.id)

    def _log_channel(self, settings: GuildSettings) -> discord.abc.Messageable | None:
        if settings.log_channel_id is None:
            return None
        channel = self.bot.get_channel(settings.log_channel_id)
        return channel if isinstance(channel, discord.abc.Messageable) else None

    # --- alert buttons ----------------------------------------------------------------

    async def on_alert_button(
        self, interaction: discord.Interaction, decision: str, event_id: int
    ) -> None:
        try:
            needed = BUTTON_PERMISSIONS[decision]
            if not getattr(interaction.permissions, needed):
                raise app_commands.MissingPermissions([needed])
            event = await self.service.event(event_id)
            if event is None or event.guild_id != interaction.guild_id:
                raise InvalidInputError("That alert is no longer in the records.")
            result = await self._carry_out(interaction, decision, event)
            event = await self.service.decide(event_id, decision, interaction.user.id)
            message = interaction.message
            embed = message.embeds[0] if message and message.embeds else discord.Embed()
            embed.add_field(
                name="Decision",
                value=f"{event.decision} by <@{interaction.user.id}>{result}",
                inline=False,
            )
            await interaction.response.edit_message(embed=embed, view=None)
        except Exception as error:
            text, expected = describe(error)
            if not expected:
                log.exception("alert button %s on event %s failed", decision, event_id)
                text = "Something went wrong on my side; the alert is unchanged."
            await send_ephemeral(interaction, text)

    async def _carry_out(
        self, interaction: discord.Interaction, decision: str, event: ModerationEvent
    ) -> str:
        guild = interaction.guild
        assert guild is not None
        try:
            if decision == "delete":
                channel = guild.get_channel(event.channel_id)
                if isinstance(channel, discord.abc.Messageable):
                    await channel.get_partial_message(event.message_id).delete()
            elif decision == "timeout":
                member = await guild.fetch_member(event.author_id)
                outcome, succeeded = await _timeout(guild, member, BUTTON_TIMEOUT_MINUTES)
                return "" if succeeded else f" ({outcome})"
        except discord.NotFound:
            return " (the message or member is already gone)"
        except discord.Forbidden:
            return " (I am missing a permission)"
        return ""


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
