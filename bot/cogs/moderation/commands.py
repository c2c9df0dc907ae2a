"""/moderation commands and the cog that ties the listener and the alert buttons to them."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.moderation.alerts import AlertBoard
from bot.cogs.moderation.buttons import AlertDecisions
from bot.cogs.moderation.heat import HeatAction, HeatButton, HeatedChannels
from bot.cogs.moderation.listener import MessageChecks
from bot.cogs.moderation.texts import settings_text, stats_text
from bot.cogs.moderation.tuning import ConfirmTuning, proposals_text, replay_text, review_text
from bot.cogs.moderation.views import COG_NAME, AlertButton
from bot.errors import InvalidInputError
from bot.formatting import NO_MENTIONS
from bot.services.backlog import RetryBacklog
from bot.services.moderation import (
    MAX_SLOWMODE_MINUTES,
    Decision,
    ModerationService,
    is_retriable,
    parse_signals,
    render_chart,
)
from bot.storage.records import GuildSettings, ModerationAction

log = logging.getLogger(__name__)


class ModerationCog(commands.Cog, name=COG_NAME):
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
        self.checks = MessageChecks(bot, bot.services.moderation, self.alerts)
        self.decisions = AlertDecisions(bot, bot.services.moderation, self.alerts)
        self.heated = HeatedChannels(bot, bot.services.moderation)

    @property
    def backlog(self) -> RetryBacklog[discord.Message]:
        return self.checks.backlog

    @property
    def service(self) -> ModerationService:
        return self.bot.services.moderation

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(AlertButton, HeatButton)
        self.bot.run_in_background(
            self.backlog.run(self.checks.check_once, is_retriable, self.bot.stopping),
            "moderation-retries",
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(AlertButton, HeatButton)
        self.backlog.stop()
        self.heated.close()

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
        signals="Which signals flag a message: sentiment, emotions, toxicity (comma-separated)",
        label="A label to give its own threshold (e.g. toxic, insult, anger, negative)",
        label_threshold="That label's threshold (0-1; 0: use the threshold above again)",
        temperature="Alert once when this % of a channel's recent messages are flagged (0: off)",
        slowmode_minutes="How long the heated-channel alert's slowmode lasts (default 10)",
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
        signals: app_commands.Range[str, 1, 100] | None = None,
        label: app_commands.Range[str, 1, 40] | None = None,
        label_threshold: app_commands.Range[float, 0.0, 1.0] | None = None,
        temperature: app_commands.Range[int, 0, 100] | None = None,
        slowmode_minutes: app_commands.Range[int, 1, MAX_SLOWMODE_MINUTES] | None = None,
    ) -> None:
        guild_id = _guild(interaction)
        if (label is None) != (label_threshold is None):
            raise InvalidInputError("Give `label` and `label_threshold` together.")
        try:
            chosen = parse_signals(signals) if signals is not None else None
        except ValueError as error:
            raise InvalidInputError(str(error)) from None
        if label is not None and label_threshold is not None:
            await self.service.set_label_threshold(guild_id, label, label_threshold)
        settings = await self.service.configure(
            guild_id,
            signals=chosen,
            threshold=threshold,
            action=ModerationAction(action) if action else None,
            timeout_minutes=timeout_minutes,
            log_channel_id=log_channel.id if log_channel else None,
            dry_run=dry_run,
            use_emotions=emotions,
            temperature_level=temperature / 100 if temperature is not None else None,
            slowmode_minutes=slowmode_minutes,
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

    @moderation.command(name="review", description="Flags moderators confirmed or dismissed")
    @app_commands.describe(days="How many days back (default 30)")
    async def review(
        self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] = 30
    ) -> None:
        reviews = await self.service.review(_guild(interaction), days)
        await interaction.followup.send(
            review_text(reviews, days), ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @moderation.command(name="tune", description="Propose per-label thresholds from reviews")
    @app_commands.describe(
        target_precision="Share of flags that should be right (0-1, e.g. 0.9)",
        days="Reviewed flags of how many days (default 90)",
    )
    async def tune(
        self,
        interaction: discord.Interaction,
        target_precision: app_commands.Range[float, 0.0, 1.0],
        days: app_commands.Range[int, 1, 365] = 90,
    ) -> None:
        guild_id = _guild(interaction)
        proposals = await self.service.propose_thresholds(guild_id, target_precision, days)
        text = proposals_text(proposals, target_precision)
        if not proposals:
            await interaction.followup.send(text, ephemeral=True)
            return
        view = ConfirmTuning(self.service, guild_id, interaction.user.id, proposals)
        await interaction.followup.send(
            text, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    @moderation.command(name="replay", description="What a threshold would have flagged")
    @app_commands.describe(
        threshold="The threshold to try (0-1)",
        label="Only this label (e.g. toxic, insult, negative); default: any label",
        days="How many days back (default 7; scores are kept for a limited time)",
    )
    async def replay(
        self,
        interaction: discord.Interaction,
        threshold: app_commands.Range[float, 0.0, 1.0],
        label: app_commands.Range[str, 1, 40] | None = None,
        days: app_commands.Range[int, 1, 365] = 7,
    ) -> None:
        flagged, checked = await self.service.replay(_guild(interaction), threshold, label, days)
        await interaction.followup.send(
            replay_text(flagged, checked, threshold, label, days),
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

    # --- messages and alert buttons ------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        await self.checks.check(message)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        before, after = payload.cached_message, payload.message
        changed = before.content != after.content if before else after.edited_at is not None
        if changed:  # not a link preview arriving
            await self.checks.check(after)

    async def on_alert_button(
        self, interaction: discord.Interaction, decision: Decision, event_id: int
    ) -> None:
        await self.decisions.handle(interaction, decision, event_id)

    async def on_heat_button(
        self, interaction: discord.Interaction, action: HeatAction, channel_id: int
    ) -> None:
        await self.heated.handle(interaction, action, channel_id)


def _guild(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise InvalidInputError("That command only works in a server.")
    return interaction.guild_id
