"""The "thinking" message of a waiting member shows their place and expected wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import discord

from bot.formatting import NO_MENTIONS

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.25
# A wait shorter than this keeps Discord's plain "thinking…" (no edit for a brief wait).
FIRST_AFTER_S = 1.0
_PREFIX = "⏳ "
# Edits of one message are rate-limited by Discord: the notice changes at most this often.
EDIT_EVERY_S = 1.5


def is_place_notice(text: str) -> bool:
    """Whether a message text is a place-in-line notice."""
    return text.startswith(_PREFIX) and " in line, about " in text


class WaitNotice:
    """Keeps a deferred interaction's message saying ``notice()`` while it returns text."""

    def __init__(self, interaction: discord.Interaction, notice: Callable[[], str | None]) -> None:
        self._interaction = interaction
        self._notice = notice
        self._task: asyncio.Task[None] | None = None
        self.shown: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_up())

    async def stop(self) -> None:
        """Stop updating and remove the notice if one is shown (idempotent)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self.shown is not None:
            self.shown = None
            with contextlib.suppress(discord.HTTPException):
                await self._interaction.delete_original_response()

    async def _keep_up(self) -> None:
        loop = asyncio.get_running_loop()
        last_edit = loop.time() - EDIT_EVERY_S + FIRST_AFTER_S
        while True:
            text = self._notice()
            if text is not None and text != self.shown and loop.time() - last_edit >= EDIT_EVERY_S:
                last_edit = loop.time()
                self.shown = text  # before the edit: a stop() during it still removes it
                try:
                    await self._interaction.edit_original_response(
                        content=_PREFIX + text, allowed_mentions=NO_MENTIONS
                    )
                except discord.HTTPException as error:
                    log.warning("could not show a member's place in line: %s", error)
                    return
            await asyncio.sleep(CHECK_EVERY_S)
