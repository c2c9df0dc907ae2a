"""The one error path: friendly texts for known errors, an error id for the rest."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.command_timing import finish_timing, start_timing, timing_of
from bot.errors import UserFacingError
from bot.formatting import NO_MENTIONS
from bot.metrics import Metrics

log = logging.getLogger(__name__)


def describe(error: BaseException) -> tuple[str, bool]:
    """The message a member sees for ``error`` and whether it was expected."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    # Includes StorageError: the repositories already logged the database failure at ERROR
    # with the id its message shows.
    if isinstance(error, UserFacingError):
        return error.message, True
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"You need the {needed} permission to do that.", True
    if isinstance(error, app_commands.BotMissingPermissions):
        needed = ", ".join(p.replace("_", " ").title() for p in error.missing_permissions)
        return f"I need the {needed} permission here to do that.", True
    if isinstance(error, discord.Forbidden):  # a permission Discord checked and we did not
        return "Discord didn't let me do that here: I'm missing a permission in this channel.", True
    if isinstance(error, app_commands.NoPrivateMessage):
        return "That command only works in a server.", True
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use that command here.", True
    return "", False


def report(error: BaseException, where: str) -> str:
    """Log ``error`` once and return what the member should see.

    Expected errors (the member's input, a busy model, a cooldown) are logged quietly;
    anything else is logged with a short id that the member is shown, so the operator can
    find the traceback.
    """
    message, expected = describe(error)
    if expected:
        log.debug("%s: %s", where, message)
        return message
    error_id = secrets.token_hex(4)
    original = getattr(error, "original", error)
    log.error("error %s in %s", error_id, where, exc_info=original)
    return (message or "Something went wrong on my side.") + (
        f" If it keeps happening, tell the bot's operator: error id `{error_id}`."
    )


async def send_ephemeral(interaction: discord.Interaction, content: str) -> None:
    """Answer privately, whether or not the interaction was already answered or deferred."""
    if interaction.is_expired():
        log.warning("interaction %s expired before the bot could answer", interaction.id)
        return
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(
                content, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException:
        log.exception("could not send an error reply for interaction %s", interaction.id)


def outcome_of(error: BaseException) -> str:
    """A failed command's outcome for metrics: refused (expected) or failed."""
    return "refused" if describe(error)[1] else "failed"


class BotTree(app_commands.CommandTree[commands.Bot]):
    """Sends every command's error through ``report`` and answers the member privately.

    With ``metrics`` set, every command is counted and timed (see bot.cogs.command_timing).
    """

    metrics: Metrics | None = None

    async def _call(self, interaction: discord.Interaction[Any]) -> None:
        # discord.py runs each command interaction through here: the one place that sees
        # a command from its arrival to the end of its answer, whichever way it ends.
        if (
            self.metrics is None
            or interaction.type is not discord.InteractionType.application_command
        ):
            await super()._call(interaction)
            return
        timing = start_timing(interaction)
        try:
            await super()._call(interaction)
        except Exception as error:  # e.g. an unknown command; the tree's on_error follows
            timing.outcome = outcome_of(error)
            raise
        finally:
            finish_timing(interaction, self.metrics)

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        name = interaction.command.qualified_name if interaction.command else "?"
        timing = timing_of(interaction)
        if timing is not None:
            timing.outcome = outcome_of(error)
        await send_ephemeral(interaction, report(error, f"/{name}"))
