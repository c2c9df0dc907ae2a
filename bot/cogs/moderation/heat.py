"""Heated-channel alerts: Slowmode 30 s (lifted again later), a cool-down note, or Dismiss."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from enum import Enum

import discord
from discord import app_commands

from bot.cogs.errors import report, send_ephemeral
from bot.cogs.moderation.access import resolve_channel
from bot.cogs.moderation.alerts import copy_embed
from bot.cogs.moderation.buttons import ActionFailedError
from bot.cogs.moderation.views import button_handler
from bot.errors import InvalidInputError
from bot.formatting import NO_MENTIONS
from bot.services.moderation import ModerationService, temperature

log = logging.getLogger(__name__)

SLOWMODE_S = 30
COOL_DOWN_NOTE = (
    "\N{SNOWFLAKE} Let's take a breath, everyone: this channel has been getting heated. "
    "Please keep it kind - the moderators are around."
)


class HeatAction(Enum):
    SLOWMODE = ("slowmode", "Slowmode 30 s", discord.ButtonStyle.primary, "Slowmode")
    NOTE = ("note", "Post a cool-down note", discord.ButtonStyle.secondary, "Cool-down note")
    DISMISS = ("dismiss", "Dismiss", discord.ButtonStyle.secondary, "Dismissed")

    def __init__(self, key: str, label: str, style: discord.ButtonStyle, done: str) -> None:
        self.key, self.label, self.style = key, label, style
        self.done = done  # the alert's field that says it was done (and by whom)

    @classmethod
    def from_key(cls, key: str) -> HeatAction:
        return next(action for action in cls if action.key == key)


class HeatButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"heat:(?P<action>slowmode|note|dismiss):(?P<channel_id>[0-9]+)",
):
    """One button of a heated-channel alert; the custom id carries the channel."""

    def __init__(self, action: HeatAction, channel_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=action.label, style=action.style, custom_id=f"heat:{action.key}:{channel_id}"
            )
        )
        self.action = action
        self.channel_id = channel_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
    ) -> HeatButton:
        return cls(HeatAction.from_key(match["action"]), int(match["channel_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = button_handler(interaction)
        await handler.on_heat_button(interaction, self.action, self.channel_id)


def heat_view(channel_id: int, done: frozenset[HeatAction] = frozenset()) -> discord.ui.View:
    """The alert's buttons, less those already used."""
    view = discord.ui.View(timeout=None)
    for action in HeatAction:
        if action not in done:
            view.add_item(HeatButton(action, channel_id))
    return view


def heat_embed(channel_id: int, share: float, checked: int) -> discord.Embed:
    return discord.Embed(
        title="A channel is heating up",
        description=(
            f"{share:.0%} of the last {checked} checked messages in <#{channel_id}> were "
            "flagged. Slow it down, post a cool-down note, or dismiss this alert. There is no "
            "other alert for this channel until it has cooled down."
        ),
        colour=discord.Colour.orange(),
    )


class HeatedChannels:
    """Carries out the buttons of heated-channel alerts, one click at a time per alert."""

    def __init__(self, client: discord.Client, service: ModerationService) -> None:
        self._client = client
        self._service = service
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._lifts: dict[int, asyncio.Task[None]] = {}  # channel id -> its slowmode's end

    @property
    def lifting(self) -> int:
        """How many slowmodes wait to be lifted."""
        return len(self._lifts)

    def close(self) -> None:
        """Stop waiting to lift slowmodes (the bot is stopping; they stay as they are)."""
        for task in self._lifts.values():
            task.cancel()
        self._lifts.clear()

    async def handle(
        self, interaction: discord.Interaction, action: HeatAction, channel_id: int
    ) -> None:
        try:  # acknowledge within Discord's 3 s, before waiting on anything
            await interaction.response.defer()
        except discord.HTTPException:
            log.warning("could not acknowledge heat button %s on %s", action.key, channel_id)
            return
        try:
            await self._carry_out(interaction, action, channel_id)
        except Exception as error:
            await send_ephemeral(interaction, report(error, f"heat button {action.key}"))

    async def _carry_out(
        self, interaction: discord.Interaction, action: HeatAction, channel_id: int
    ) -> None:
        message, guild, member = interaction.message, interaction.guild, interaction.user
        if message is None or guild is None or not isinstance(member, discord.Member):
            raise InvalidInputError("Alert buttons only work in a server.")
        lock = self._locks.get(message.id)
        if lock is None:
            lock = self._locks[message.id] = asyncio.Lock()
        async with lock:
            embed = copy_embed(message.embeds[0]) if message.embeds else discord.Embed()
            done = {a for a in HeatAction if any(f.name == a.done for f in embed.fields)}
            if HeatAction.DISMISS in done or action in done:
                raise InvalidInputError("That was already done on this alert.")
            channel = await self._heated_channel(guild, channel_id)
            if not channel.permissions_for(member).manage_channels:
                raise app_commands.MissingPermissions(["manage_channels"])
            note = await self._do(action, guild, channel, member)
            embed.add_field(name=action.done, value=note, inline=False)
            done.add(action)
            view = None if HeatAction.DISMISS in done else heat_view(channel_id, frozenset(done))
            await interaction.edit_original_response(embed=embed, view=view)

    async def _do(
        self,
        action: HeatAction,
        guild: discord.Guild,
        channel: discord.TextChannel | discord.Thread,
        member: discord.Member,
    ) -> str:
        by = f"by {member.mention}"
        try:
            if action is HeatAction.NOTE:
                await channel.send(COOL_DOWN_NOTE, allowed_mentions=NO_MENTIONS)
                return by
            if action is HeatAction.SLOWMODE:
                if channel.slowmode_delay >= SLOWMODE_S:  # never loosen a stricter one
                    return f"left at {channel.slowmode_delay} s, already that slow ({by})"
                minutes = (await self._service.settings(guild.id)).slowmode_minutes
                await channel.edit(
                    slowmode_delay=SLOWMODE_S, reason=f"heated channel, {member} ({member.id})"
                )
                self._lift_later(guild, channel.id, minutes * temperature.MINUTE_S)
                return f"{SLOWMODE_S} s {by}, lifted again in {minutes} min"
        except discord.Forbidden:
            needed = "Manage Channels" if action is HeatAction.SLOWMODE else "Send Messages"
            raise ActionFailedError(
                f"I am missing the {needed} permission in {channel.mention}."
            ) from None
        except discord.HTTPException as error:
            raise ActionFailedError(
                f"Discord did not let me do that (error {error.status}) - try again."
            ) from None
        return by

    async def _heated_channel(
        self, guild: discord.Guild, channel_id: int
    ) -> discord.TextChannel | discord.Thread:
        try:
            channel = await resolve_channel(guild, channel_id)
        except discord.HTTPException:
            channel = None
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            raise InvalidInputError("That channel is gone (or I cannot see it any more).")
        return channel

    def _lift_later(self, guild: discord.Guild, channel_id: int, after_s: float) -> None:
        earlier = self._lifts.pop(channel_id, None)
        if earlier is not None:
            earlier.cancel()
        task = asyncio.create_task(self._lift(guild, channel_id, time.monotonic() + after_s))
        self._lifts[channel_id] = task
        task.add_done_callback(lambda done: self._forget_lift(channel_id, done))

    def _forget_lift(self, channel_id: int, task: asyncio.Task[None]) -> None:
        if self._lifts.get(channel_id) is task:
            del self._lifts[channel_id]

    async def _lift(self, guild: discord.Guild, channel_id: int, at: float) -> None:
        """Lift the slowmode at ``at`` - unless a moderator changed it meanwhile."""
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        try:
            channel = await self._heated_channel(guild, channel_id)
            if channel.slowmode_delay != SLOWMODE_S:
                log.info("slowmode of channel %s was changed meanwhile: left as it is", channel_id)
                return
            await channel.edit(slowmode_delay=0, reason="heated channel: slowmode over")
        except (discord.HTTPException, InvalidInputError) as error:
            log.warning("could not lift the slowmode of channel %s: %s", channel_id, error)
