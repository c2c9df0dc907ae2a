"""What the alert buttons do: checked as Discord would check the clicking member, done once."""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta

import discord
from discord import app_commands

from bot.cogs.errors import report, send_ephemeral
from bot.cogs.moderation.access import resolve_channel, timeout_refusal
from bot.cogs.moderation.alerts import AlertBoard
from bot.errors import InvalidInputError, PermissionDeniedError, UserFacingError
from bot.services.moderation import BUTTON_TIMEOUT_MINUTES, Decision, ModerationService
from bot.storage.records import ModerationEvent

log = logging.getLogger(__name__)


class ActionFailedError(UserFacingError):
    """What a moderator's button should have done did not happen."""


class AlertDecisions:
    """Carries out a moderator's click on an alert and writes the decision on it.

    The action runs first and the decision is stored after it, under a per-alert lock and
    with a conditional update: a failed action leaves the alert open (buttons and all), a
    second click waits and then finds it decided, and a crash between the two leaves the
    alert open rather than stuck (a second delete finds the message gone and says so).
    """

    def __init__(
        self, client: discord.Client, service: ModerationService, alerts: AlertBoard
    ) -> None:
        self._client = client
        self._service = service
        self._alerts = alerts
        # One decision at a time per alert; a lock goes once nobody holds or awaits it.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    async def handle(
        self, interaction: discord.Interaction, decision: Decision, event_id: int
    ) -> None:
        """Answer a click: every failure becomes a private sentence and the alert stays open."""
        try:  # acknowledge within Discord's 3 s, before waiting on anything
            await interaction.response.defer()
        except discord.HTTPException:
            log.warning(
                "could not acknowledge alert button %s on event %s", decision.value, event_id
            )
            return
        try:
            await self._decide(interaction, decision, event_id)
        except Exception as error:
            await send_ephemeral(
                interaction, report(error, f"alert button {decision.value} #{event_id}")
            )

    async def _decide(
        self, interaction: discord.Interaction, decision: Decision, event_id: int
    ) -> None:
        lock = self._locks.get(event_id)
        if lock is None:
            lock = self._locks[event_id] = asyncio.Lock()
        async with lock:
            event = await self._service.event(event_id)
            if event is None or event.guild_id != interaction.guild_id:
                raise InvalidInputError("That alert is no longer in the records.")
            if event.decision is not None:  # its buttons still showed: take them away
                await self._write_decision(interaction, event, "", keep_written=True)
                raise InvalidInputError(
                    f"That alert was already handled: {event.decision} by <@{event.decided_by}>."
                )
            note = await self._carry_out(interaction, decision, event)
            event = await self._service.decide(event_id, decision, interaction.user.id)
        await self._write_decision(interaction, event, note)

    async def _write_decision(
        self,
        interaction: discord.Interaction,
        event: ModerationEvent,
        note: str,
        *,
        keep_written: bool = False,
    ) -> None:
        message = interaction.message
        shown = message.embeds[0] if message is not None and message.embeds else None

        async def edit(embed: discord.Embed) -> None:
            await interaction.edit_original_response(embed=embed, view=None)

        try:
            await self._alerts.write_decision(
                (event.guild_id, event.author_id),
                event.id,
                shown,
                f"{event.decision} by <@{event.decided_by}>{note}",
                edit,
                keep_written=keep_written,
            )
        except discord.HTTPException:
            log.warning("could not write the decision on the alert of event %s", event.id)
            raise ActionFailedError(
                f"Recorded as {event.decision}, but I could not update the alert message."
            ) from None

    async def _carry_out(
        self, interaction: discord.Interaction, decision: Decision, event: ModerationEvent
    ) -> str:
        """Do what the button says, as the clicking member may; returns a note for the alert.

        Raises a UserFacingError saying why when it is refused or fails.
        """
        # A delete is checked against the flagged channel, not the log channel clicked in.
        if decision is not Decision.DELETE and not getattr(
            interaction.permissions, decision.permission
        ):
            raise app_commands.MissingPermissions([decision.permission])
        if decision is Decision.DISMISS:
            return ""
        guild, member = interaction.guild, interaction.user
        if guild is None or not isinstance(member, discord.Member):
            raise InvalidInputError("Alert buttons only work in a server.")
        if decision is Decision.DELETE:
            return await self._delete(guild, member, event, interaction.permissions)
        return await _timeout(guild, member, event)

    async def _delete(
        self,
        guild: discord.Guild,
        member: discord.Member,
        event: ModerationEvent,
        in_log_channel: discord.Permissions,
    ) -> str:
        """Delete the flagged message if the member may manage messages in its channel."""
        where = f"<#{event.channel_id}>"
        try:
            channel = await resolve_channel(guild, event.channel_id)
            # The member's rights in the flagged channel, not in the log channel clicked in
            # (unless that channel is gone, and the message with it).
            allowed = (
                channel.permissions_for(member) if channel else in_log_channel
            ).manage_messages
        except (discord.HTTPException, discord.ClientException):
            raise ActionFailedError(f"I cannot see {where} any more to delete it.") from None
        if not allowed:
            raise PermissionDeniedError(
                f"You need the Manage Messages permission in {where} to delete that message."
            )
        if channel is None:
            return " (the message was already gone)"
        # Works for threads and channels the bot has not cached alike.
        flagged = self._client.get_partial_messageable(event.channel_id, guild_id=guild.id)
        try:
            await flagged.get_partial_message(event.message_id).delete()
        except discord.NotFound:
            return " (the message was already gone)"
        except discord.Forbidden:
            raise ActionFailedError(
                f"I am missing the Manage Messages permission in {where}; "
                "the message is still there."
            ) from None
        except discord.HTTPException as error:
            raise ActionFailedError(
                f"Discord did not let me delete it (error {error.status}) - try again."
            ) from None
        return ""


async def _timeout(guild: discord.Guild, member: discord.Member, event: ModerationEvent) -> str:
    """Time the flagged author out, only if Discord would let the clicking member do it."""
    try:
        target = await guild.fetch_member(event.author_id)
    except discord.NotFound:
        raise ActionFailedError("They are no longer in this server.") from None
    refusal = timeout_refusal(
        target_id=target.id,
        target_rank=target.top_role,
        clicker_id=member.id,
        clicker_rank=member.top_role,
        bot_rank=guild.me.top_role,
        owner_id=guild.owner_id or 0,
    )
    if refusal is not None:
        raise PermissionDeniedError(refusal)
    try:
        await target.timeout(
            timedelta(minutes=BUTTON_TIMEOUT_MINUTES), reason=f"moderation alert #{event.id}"
        )
    except discord.Forbidden:
        raise ActionFailedError(
            "I am missing the Moderate Members permission, so they were not timed out."
        ) from None
    except discord.HTTPException as error:
        raise ActionFailedError(
            f"Discord did not let me time them out (error {error.status}) - try again."
        ) from None
    return ""
