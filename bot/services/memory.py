"""Long memory: turns that no longer fit the chat model's window are folded into a summary.

Each channel has at most one rolling summary. After an answer, a refresh (in the background,
at most one per channel at a time; requests meanwhile are coalesced into one more run) asks
the chat model's window which of the turns after the summary still fit. Those that do not
(and the oldest quarter of those that do, so that the next answers need no refresh) are
summarised together with the old summary by the summarization model, and the new summary
replaces the old one - unless a reset, a deletion or another refresh changed those turns
meanwhile. Turns are never deleted by a refresh: a failing one loses nothing, the next one
folds the same turns again.
"""

from __future__ import annotations

import asyncio
import logging

from bot.inference.engine import InferenceEngine
from bot.services.prompts import conversation_prompt
from bot.services.summaries import newest_fitting
from bot.storage.records import ConversationSummary, Role, Turn
from bot.storage.repositories import ChannelSettingsStore, ConversationStore

log = logging.getLogger(__name__)

# The most turns (newest first) and characters one refresh folds in: a rebuild after a
# deletion, or a channel with a long history before memory existed, costs at most this much
# model time. Older turns beyond it are passed over.
MAX_FOLD_TURNS = 200
MAX_FOLD_CHARS = 6000
# How often a refresh whose turns changed under it is tried again at once.
RETRIES = 1


class ConversationMemory:
    """Keeps each channel's rolling summary of the turns that left the model's window."""

    def __init__(
        self,
        engine: InferenceEngine,
        turns: ConversationStore,
        channels: ChannelSettingsStore,
        *,
        default_persona: str,
        history_window: int,
        max_new_tokens: int,
        summary_tokens: int,
    ) -> None:
        self._engine = engine
        self._turns = turns
        self._channels = channels
        self._default_persona = default_persona
        self._history_window = history_window
        self._max_new_tokens = max_new_tokens
        self._summary_tokens = summary_tokens
        self._running: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()

    def schedule(self, guild_id: int, channel_id: int, parent_id: int | None = None) -> None:
        """Refresh the channel's summary soon; while one runs, one more run follows it.

        ``parent_id``: the channel a thread follows (its persona is part of the window).
        """
        running = self._running.get(channel_id)
        if running is not None and not running.cancelling():  # a cancelled one runs no more
            self._again.add(channel_id)
            return
        task = asyncio.create_task(self._refresh_while_asked(guild_id, channel_id, parent_id))
        self._running[channel_id] = task

    async def idle(self) -> None:
        """Wait until no refresh runs (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def cancel(self, channel_id: int) -> None:
        """Stop the channel's refresh, if one runs (its result would be refused anyway)."""
        self._again.discard(channel_id)
        task = self._running.get(channel_id)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Stop every refresh (shutdown)."""
        for channel_id in list(self._running):
            self.cancel(channel_id)

    async def _refresh_while_asked(
        self, guild_id: int, channel_id: int, parent_id: int | None
    ) -> None:
        try:
            retries = RETRIES
            while True:
                self._again.discard(channel_id)
                try:
                    stored = await self.refresh(guild_id, channel_id, parent_id)
                except Exception as error:  # chat goes on; the turns wait for the next refresh
                    log.warning("channel %s: summary refresh failed: %r", channel_id, error)
                    stored = True
                if stored is False and retries > 0:
                    retries -= 1
                    continue
                if channel_id not in self._again:
                    return
        finally:
            if self._running.get(channel_id) is asyncio.current_task():
                del self._running[channel_id]

    async def refresh(
        self, guild_id: int, channel_id: int, parent_id: int | None = None
    ) -> bool | None:
        """Fold the turns that fell out of the window into the summary.

        None: nothing fell out; True: stored; False: those turns changed meanwhile.
        """
        settings = await self._channels.resolve(guild_id, channel_id, parent_id)
        memory = await self._turns.memory(guild_id, channel_id, self._history_window)
        recent, old = memory.recent, memory.summary
        if not recent:
            return None
        persona = settings.persona or self._default_persona
        messages = conversation_prompt(persona, recent, old.content if old else None)
        fitting = await self._engine.chat_window(messages, max_new_tokens=self._max_new_tokens)
        fallen = len(recent) - fitting
        if fallen <= 0 and memory.unsummarized <= len(recent):
            return None
        # Fold the oldest quarter of what still fits too: the next answers need no refresh.
        folded = fallen + (fitting // 4 if fitting > 1 else 0)
        through = recent[folded - 1].id if folded > 0 else recent[0].id - 1
        after = old.covered_through if old else 0
        turns, in_range = await self._turns.turns_between(
            guild_id, channel_id, after, through, MAX_FOLD_TURNS
        )
        text = await self._summarize(old, newest_fitting(turns, MAX_FOLD_CHARS))
        if not text:
            log.warning("channel %s: the summary came back empty; kept the old one", channel_id)
            return True
        summary = ConversationSummary(
            guild_id, channel_id, text, through, (old.turns_folded if old else 0) + in_range
        )
        return await self._turns.save_summary(
            summary, replaces=old.covered_through if old else None, folded_range_turns=in_range
        )

    async def _summarize(self, old: ConversationSummary | None, turns: list[Turn]) -> str:
        lines = [f"Earlier: {old.content}"] if old else []
        lines += [f"{_speaker(turn)}: {turn.content}" for turn in turns]
        if not lines:
            return old.content if old else ""
        summary = await self._engine.summarize(
            "\n".join(lines),
            min_length=min(20, self._summary_tokens // 4),
            max_length=self._summary_tokens,
        )
        return await self._within_budget(" ".join(summary.text.split()))

    async def _within_budget(self, text: str) -> str:
        """``text`` cut at a word so that it is at most ``summary_tokens`` chat-model tokens."""
        for _ in range(4):
            if not text:
                return text
            [tokens] = await self._engine.count_tokens([text])
            if tokens <= self._summary_tokens:
                return text
            keep = max(1, len(text) * self._summary_tokens // tokens - 1)
            text = text[:keep].rsplit(" ", 1)[0] if " " in text[:keep] else text[:keep]
        return ""


def _speaker(turn: Turn) -> str:
    return turn.author_name if turn.role is Role.USER else "assistant"
