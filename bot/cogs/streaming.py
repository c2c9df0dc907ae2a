"""Showing a growing answer: edit at most about once a second, spill past 2000 characters."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import discord

from bot.formatting import MESSAGE_LIMIT, split_message

EDIT_INTERVAL_S = 1.0
_CURSOR = " ▌"
Send = Callable[[str], Awaitable[discord.Message]]


class StreamingReply:
    """Keeps Discord messages in step with a growing text."""

    def __init__(
        self, send_first: Send, send_more: Send, interval_s: float = EDIT_INTERVAL_S
    ) -> None:
        self._send_first = send_first
        self._send_more = send_more
        self._interval_s = interval_s
        self._text = ""
        self._messages: list[discord.Message] = []
        self._shown: list[str] = []
        self._last_flush = 0.0

    @property
    def text(self) -> str:
        return self._text

    @property
    def messages(self) -> list[discord.Message]:
        return list(self._messages)

    async def add(self, piece: str) -> None:
        """Append generated text; shows it if the last update was long enough ago."""
        self._text += piece
        if time.monotonic() - self._last_flush >= self._interval_s and self._text.strip():
            await self._flush(final=False)

    async def finish(self, empty_text: str = "…") -> None:
        """Show the complete text."""
        if not self._text.strip():
            self._text = empty_text
        await self._flush(final=True)

    async def _flush(self, *, final: bool) -> None:
        self._last_flush = time.monotonic()
        # Same split on every flush (room kept for the cursor) so pieces stay stable.
        pieces = split_message(self._text, MESSAGE_LIMIT - len(_CURSOR))
        if not final:
            pieces[-1] += _CURSOR  # shows the answer is still coming
        for index, piece in enumerate(pieces):
            if index < len(self._messages):
                if self._shown[index] != piece:
                    await _edit_keeping_flags(self._messages[index], piece)
                    self._shown[index] = piece
            else:
                send = self._send_first if not self._messages else self._send_more
                self._messages.append(await send(piece))
                self._shown.append(piece)


async def _edit_keeping_flags(message: discord.Message, content: str) -> None:
    # A channel message's edit() rewrites its flags (suppress=False unless told), which would
    # bring back the link embeds the send suppressed; a webhook message's edit leaves them.
    if isinstance(message, discord.Message) and not isinstance(message, discord.WebhookMessage):
        await message.edit(content=content, suppress=message.flags.suppress_embeds)
    else:
        await message.edit(content=content)
