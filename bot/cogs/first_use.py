"""The notice a member sees instead of a bare "thinking…" while a model loads the first time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import discord

from bot.formatting import NO_MENTIONS
from bot.inference.engine import InferenceEngine, ModelRole
from bot.inference.footprint import describe_seconds

log = logging.getLogger(__name__)

# A first load expected to be quicker than this keeps Discord's plain "thinking…".
NOTICE_MIN_S = 3.0
_NOTICE_START = "Loading the "
_NOTICE_END = " for the first time"


def loading_notice(roles: Sequence[str], seconds: float) -> str:
    """``Loading the chat model for the first time (about 20 s)…``."""
    names = " and ".join(roles)
    noun = "model" if len(roles) == 1 else "models"
    return f"{_NOTICE_START}{names} {noun}{_NOTICE_END} (about {describe_seconds(seconds)})…"


def is_loading_notice(text: str) -> bool:
    """Whether a message text is a loading notice."""
    return text.startswith(_NOTICE_START) and _NOTICE_END in text


def _estimate(engine: InferenceEngine, roles: Sequence[ModelRole]) -> float:
    return sum(engine.estimated_load_s(role) for role in roles)


@asynccontextmanager
async def first_use(
    interaction: discord.Interaction, engine: InferenceEngine, *roles: ModelRole
) -> AsyncIterator[None]:
    """Around a deferred command's model work: while a model is not loaded yet, show how long
    its first load takes instead of "thinking…"; the notice goes away before the answer."""
    shown = False
    waiting = [role for role in roles if not engine.is_loaded(role)]
    if waiting:
        seconds = await asyncio.to_thread(_estimate, engine, waiting)
        if seconds >= NOTICE_MIN_S:
            shown = await _edit_original(interaction, loading_notice(waiting, seconds))
    try:
        yield
    finally:
        if shown:
            with suppress(discord.HTTPException):
                await interaction.delete_original_response()


async def load_first(
    interaction: discord.Interaction, engine: InferenceEngine, *roles: ModelRole
) -> None:
    """Load the models a deferred command needs, with the notice of first_use while they load.

    A model that fails to load is left for the command itself to report."""
    async with first_use(interaction, engine, *roles):
        for role in roles:
            with suppress(Exception):
                await engine.ensure_loaded(role)


async def _edit_original(interaction: discord.Interaction, text: str) -> bool:
    try:
        await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        log.warning("could not show the loading notice for interaction %s", interaction.id)
        return False
    return True
