"""Channel conversations: what the model sees, what is remembered, and in which order."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cachetools import LRUCache, TTLCache

from bot.errors import InvalidInputError
from bot.inference.chat import ChatMessage
from bot.inference.engine import InferenceEngine
from bot.services.cooldowns import RateLimit
from bot.services.lines import ChannelBusyError, ChannelLine, Place
from bot.services.memory import ConversationMemory
from bot.services.prompts import LeadingNameFilter, conversation_prompt, speaker_names
from bot.storage.records import (
    ChannelSettings,
    ConversationSummary,
    NewTurn,
    RememberedChannel,
    Role,
    Turn,
)
from bot.storage.repositories import ChannelSettingsStore, ConversationStore

log = logging.getLogger(__name__)

# Short and plain, so that even the small default model follows it. Who is speaking is
# added by the prompt layout (bot.services.prompts), for custom personas too.
DEFAULT_PERSONA = (
    "You are a helpful assistant in a Discord server. Answer in one or two short sentences."
)
MAX_MESSAGE_CHARS = 4000
MAX_PERSONA_CHARS = 1000
# Turns read from the database per answer; the model's window then decides how many fit.
HISTORY_WINDOW = 60
# Ids of recently deleted messages remembered, so that a message deleted while it waits
# for its turn (or while its turn is being stored) is never remembered.
RECENTLY_DELETED = 10_000
BUSY_CHANNELS = 10_000
BUSY_NOTICE_S = 60.0


@dataclass(frozen=True, slots=True)
class Speaker:
    guild_id: int
    channel_id: int
    author_id: int
    author_name: str
    parent_id: int | None = None  # in a thread or forum post: its channel (settings come from it)


class ConversationService:
    """Answers members in a channel with that channel's remembered conversation."""

    def __init__(
        self,
        engine: InferenceEngine,
        turns: ConversationStore,
        channels: ChannelSettingsStore,
        *,
        bot_user_id: int = 0,
        max_new_tokens: int = 256,
        answers_per_minute: int = 0,
        queue_limit: int = 10,
        memory: bool = True,
        summary_tokens: int = 160,
    ) -> None:
        self._engine = engine
        self._turns = turns
        self._channels = channels
        self.bot_user_id = bot_user_id
        self._max_new_tokens = max_new_tokens
        # One answer at a time per channel, in arrival order.
        self._line = ChannelLine()
        self._queue_limit = queue_limit
        self._pace = RateLimit(answers_per_minute, 60.0)
        self._deleted: LRUCache[int, bool] = LRUCache(RECENTLY_DELETED)
        # Channels told they are busy within the last minute: told once, not once per message.
        self._told_busy: TTLCache[int, None] = TTLCache(BUSY_CHANNELS, ttl=BUSY_NOTICE_S)
        self.memory = (
            ConversationMemory(
                engine,
                turns,
                channels,
                default_persona=DEFAULT_PERSONA,
                history_window=HISTORY_WINDOW,
                max_new_tokens=max_new_tokens,
                summary_tokens=summary_tokens,
            )
            if memory
            else None
        )

    def line_up(self, channel_id: int) -> Place:
        """A place in the channel's line. Join before the first ``await`` to keep arrival order,
        and leave it (``with``) once the message is answered or needs no answer."""
        return self._line.join(channel_id)

    def ask(
        self,
        speaker: Speaker,
        text: str,
        place: Place,
        *,
        message_id: int | None = None,
        answer_message_id: Callable[[], int | None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Check the question now (friendly errors), then stream the answer when iterated.

        Both turns are stored: the question once its turn comes, before generating.
        ``message_id`` is the Discord message ``text`` came from and ``answer_message_id``
        tells, once the answer is complete, the id of the message showing it: deleting
        either message later deletes its turn (see ``forget_messages``).
        """
        text = text.strip()
        if not text:
            raise InvalidInputError("Say something and I'll answer.")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InvalidInputError(f"Please keep messages under {MAX_MESSAGE_CHARS} characters.")
        if place.ahead > self._queue_limit:
            repeated = speaker.channel_id in self._told_busy
            self._told_busy[speaker.channel_id] = None
            raise ChannelBusyError(place.ahead, repeated=repeated)
        self._pace.hit((speaker.guild_id, speaker.author_id))
        return self._answer(speaker, text, place, message_id, answer_message_id)

    async def respond(
        self,
        speaker: Speaker,
        text: str,
        *,
        message_id: int | None = None,
        answer_message_id: Callable[[], int | None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """``ask`` with its own place in line (for callers that need no Discord ordering)."""
        with self.line_up(speaker.channel_id) as place:
            answer = self.ask(
                speaker,
                text,
                place,
                message_id=message_id,
                answer_message_id=answer_message_id,
            )
            async with contextlib.aclosing(answer):
                async for piece in answer:
                    yield piece

    async def _answer(
        self,
        speaker: Speaker,
        text: str,
        place: Place,
        message_id: int | None,
        answer_message_id: Callable[[], int | None] | None,
    ) -> AsyncGenerator[str, None]:
        await place.wait_turn()
        if self.was_deleted(message_id):
            return  # deleted while it waited for its turn
        [tokens] = await self._engine.count_tokens([f"{speaker.author_name}: {text}"])
        question = await self._turns.add_turn(
            NewTurn(
                speaker.guild_id,
                speaker.channel_id,
                speaker.author_id,
                speaker.author_name,
                Role.USER,
                text,
                tokens,
                message_id,
            )
        )
        if self.was_deleted(message_id):  # deleted while the turn was being written
            await self._turns.delete_turn(question.id)
            return
        messages, names = await self._prompt(speaker)
        # The prompt keeps answers from opening with a member's name; this catches the rest.
        unnamed = LeadingNameFilter(names)
        pieces: list[str] = []
        stream = self._engine.chat_stream(messages, max_new_tokens=self._max_new_tokens)
        async with contextlib.aclosing(stream):  # closing it stops the generation
            async for piece in stream:
                place.raise_if_dropped()
                if self.was_deleted(message_id):
                    return  # the question was deleted while answered: stop, store nothing
                if shown := unnamed.feed(piece):
                    pieces.append(shown)
                    yield shown
        place.raise_if_dropped()
        if rest := unnamed.finish():
            pieces.append(rest)
            yield rest
        answer = "".join(pieces).strip()
        shown_in = answer_message_id() if answer_message_id is not None else None
        if answer and not self.was_deleted(shown_in):
            [answer_tokens] = await self._engine.count_tokens([answer])
            await self._turns.add_turn(
                NewTurn(
                    speaker.guild_id,
                    speaker.channel_id,
                    self.bot_user_id,
                    "assistant",
                    Role.ASSISTANT,
                    answer,
                    answer_tokens,
                    shown_in,
                )
            )
        if self.memory is not None:  # after the answer, in the background
            self.memory.schedule(speaker.guild_id, speaker.channel_id, speaker.parent_id)

    async def _prompt(self, speaker: Speaker) -> tuple[list[ChatMessage], list[str]]:
        """The messages for the model, and the names its answer must not open with."""
        guild_id, channel_id = speaker.guild_id, speaker.channel_id
        settings = await self._channels.resolve(guild_id, channel_id, speaker.parent_id)
        summary: str | None = None
        if self.memory is None:
            turns = await self._turns.recent_turns(guild_id, channel_id, HISTORY_WINDOW)
        else:
            memory = await self._turns.memory(guild_id, channel_id, HISTORY_WINDOW)
            turns = memory.recent
            summary = memory.summary.content if memory.summary else None
        messages = conversation_prompt(settings.persona or DEFAULT_PERSONA, turns, summary)
        return messages, speaker_names(turns, speaker.author_name)

    async def summary(self, guild_id: int, channel_id: int) -> ConversationSummary | None:
        """The channel's summary of the turns that no longer fit the model's window."""
        if self.memory is None:
            return None
        return await self._turns.summary(guild_id, channel_id)

    async def history(self, guild_id: int, channel_id: int, limit: int) -> list[Turn]:
        """What the bot remembers of a channel, oldest first."""
        return await self._turns.recent_turns(guild_id, channel_id, limit)

    async def channels(self, guild_id: int) -> list[RememberedChannel]:
        """A guild's channels with remembered turns, most recently active first."""
        return await self._turns.channels(guild_id)

    async def guild_ids(self) -> set[int]:
        """Every guild with remembered turns."""
        return await self._turns.guild_ids()

    async def delete_turn(self, guild_id: int, channel_id: int, turn_id: int) -> bool:
        """Forget one remembered turn of a channel; False when the channel has no such turn."""
        return await self._turns.delete_channel_turn(guild_id, channel_id, turn_id) > 0

    async def persona(self, guild_id: int, channel_id: int) -> str | None:
        """The channel's own persona (None: the default one)."""
        return (await self._channels.get(guild_id, channel_id)).persona

    async def reset(self, guild_id: int, channel_id: int) -> int:
        """Forget a channel's conversation; answers waiting or under way there are dropped."""
        self._line.drop(channel_id)
        if self.memory is not None:
            self.memory.cancel(channel_id)
        with self._line.join(channel_id) as place:
            await place.wait_turn()  # the dropped answers have stopped: none is stored later
            return await self._turns.clear_channel(guild_id, channel_id)

    def forget_guild(self, guild_id: int) -> None:
        """Drop the cached channel settings of a guild the bot left (they stay stored)."""
        self._channels.forget_guild(guild_id)

    def close(self) -> None:
        """Stop every answer waiting or under way, and every summary refresh (shutdown)."""
        self._line.drop_all()
        if self.memory is not None:
            self.memory.close()

    async def forget_member(self, guild_id: int, author_id: int) -> int:
        """Delete every turn a member wrote in a guild; returns how many."""
        return await self._turns.forget_author(guild_id, author_id)

    async def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        """These Discord messages were deleted: delete their turns; returns how many."""
        for message_id in message_ids:
            self._deleted[message_id] = True
        removed = await self._turns.delete_messages(guild_id, message_ids)
        if removed:
            log.info("deleted %d conversation turns of deleted messages", removed)
        return removed

    def was_deleted(self, message_id: int | None) -> bool:
        """Whether the message was deleted recently (a turn for it must not be stored)."""
        return message_id is not None and message_id in self._deleted

    async def set_mode(self, guild_id: int, channel_id: int, *, enabled: bool) -> None:
        """Switch channel conversation mode (answer every message) on or off."""
        await self._channels.update(guild_id, channel_id, conversation_enabled=enabled)

    async def follow_parent(self, guild_id: int, thread_id: int, parent_id: int) -> ChannelSettings:
        """A thread drops its own mode and persona and follows its parent channel again;
        returns the settings now in force there."""
        await self._channels.update(guild_id, thread_id, clear_mode=True, clear_persona=True)
        return await self._channels.resolve(guild_id, thread_id, parent_id)

    async def channel_settings(
        self, guild_id: int, channel_id: int, parent_id: int | None = None
    ) -> ChannelSettings:
        """The mode and persona in force in a channel, or in a thread of ``parent_id``."""
        return await self._channels.resolve(guild_id, channel_id, parent_id)

    async def is_conversation_channel(
        self, guild_id: int, channel_id: int, parent_id: int | None = None
    ) -> bool:
        """Whether the bot answers every message in this channel (or thread of ``parent_id``)."""
        return (await self._channels.resolve(guild_id, channel_id, parent_id)).conversation_enabled

    async def set_persona(
        self, guild_id: int, channel_id: int, persona: str | None, parent_id: int | None = None
    ) -> str:
        """Set (or with None, reset) the channel's persona; returns the one now in force
        (in a thread, a reset persona is the parent channel's)."""
        if persona is not None:
            persona = persona.strip()
            if len(persona) > MAX_PERSONA_CHARS:
                raise InvalidInputError(f"Keep the persona under {MAX_PERSONA_CHARS} characters.")
        await self._channels.update(
            guild_id, channel_id, persona=persona or None, clear_persona=not persona
        )
        settings = await self._channels.resolve(guild_id, channel_id, parent_id)
        return settings.persona or DEFAULT_PERSONA

    async def prune(self, retention_days: int) -> int:
        """Delete turns older than the retention period (0 keeps everything)."""
        if retention_days <= 0:
            return 0
        removed = await self._turns.prune_older_than(
            datetime.now(UTC) - timedelta(days=retention_days)
        )
        if removed:
            log.info("retention: removed %d conversation turns", removed)
        return removed
