"""/chat, channel conversation mode, and the memory controls (/reset, /forget, /history)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import timedelta

import discord
from cachetools import LRUCache
from discord import app_commands
from discord.ext import commands

from bot.client import Bot
from bot.cogs.errors import report
from bot.cogs.first_use import load_first
from bot.cogs.places import SettableChannel, kind_of, location, parent_of, settings_target
from bot.cogs.streaming import Send, StreamingReply
from bot.cogs.waiting import WaitNotice
from bot.errors import InvalidInputError, StorageError, UserFacingError
from bot.formatting import NO_MENTIONS, split_message, truncate
from bot.inference.fairness import WaitWatch, on_behalf_of
from bot.services.budgets import estimate_tokens
from bot.services.conversations import (
    MAX_MESSAGE_CHARS,
    MAX_PERSONA_CHARS,
    ConversationService,
    Speaker,
)
from bot.services.documents import (
    MAX_FILES_PER_MESSAGE,
    AttachedFile,
    FileLimits,
    read_document,
    with_attachments,
)
from bot.services.lines import Place
from bot.services.waiting import AnswerTimer, place_in_line

log = logging.getLogger(__name__)

# Discord accepts followups and edits for this long after a command was used.
INTERACTION_TOKEN_LIFETIME = timedelta(minutes=15)
UNCACHED_PARENTS = 10_000


def speaker_of(
    user: discord.abc.User, guild_id: int, channel_id: int, parent_id: int | None = None
) -> Speaker:
    return Speaker(guild_id, channel_id, user.id, user.display_name, parent_id)


def first_message_id(reply: StreamingReply) -> Callable[[], int | None]:
    """The id of the reply's first message, once it was sent."""
    return lambda: reply.messages[0].id if reply.messages else None


class ChatCog(commands.Cog):
    conversation = app_commands.Group(
        name="conversation",
        description="Channel conversation mode and persona",
        guild_only=True,
        default_permissions=discord.Permissions(manage_channels=True),
    )

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        # Parents of threads the bot had not cached, as Discord told them.
        self._parents: LRUCache[int, int | None] = LRUCache(UNCACHED_PARENTS)
        self.answer_time = AnswerTimer()

    @property
    def conversations(self) -> ConversationService:
        return self.bot.services.conversations

    @app_commands.command(
        name="chat", description="Talk with the bot; it remembers this channel's conversation"
    )
    @app_commands.describe(message="What you want to say")
    @app_commands.guild_only()
    async def chat(
        self,
        interaction: discord.Interaction,
        message: app_commands.Range[str, 1, MAX_MESSAGE_CHARS],
    ) -> None:
        guild_id, channel_id = location(interaction)
        speaker = speaker_of(interaction.user, guild_id, channel_id, parent_of(interaction.channel))
        send = self._answer_sender(interaction)
        reply = StreamingReply(send, send)
        watch = WaitWatch()
        with self.conversations.line_up(channel_id) as place, on_behalf_of(guild_id, watch):
            answer = self.conversations.ask(  # refusals stay private: checked before the defer
                speaker, message, place, answer_message_id=first_message_id(reply)
            )
            async with contextlib.aclosing(answer):
                await interaction.response.defer(thinking=True)
                await self.bot.services.budgets.check(
                    guild_id, speaker.author_id, estimate_tokens(message)
                )
                await load_first(interaction, self.bot.services.engine, "chat")
                notice = WaitNotice(
                    interaction, lambda: place_in_line(place.ahead, watch, self.answer_time)
                )
                notice.start()
                try:
                    await self._show(answer, reply, notice.stop)
                finally:
                    await notice.stop()
            await reply.finish()
        await self._charge(speaker, message, reply.text)

    async def _show(
        self,
        answer: AsyncIterator[str],
        reply: StreamingReply,
        before_first: Callable[[], Awaitable[None]],
    ) -> None:
        """Stream ``answer`` into ``reply``; times it for the waits told to later members."""
        started: float | None = None
        async for piece in answer:
            if started is None:
                started = time.monotonic()
                await before_first()
            await reply.add(piece)
        if started is not None:
            self.answer_time.record(time.monotonic() - started)

    async def _charge(self, speaker: Speaker, question: str, answer: str) -> None:
        """Count a finished answer against the member's and the guild's budgets."""
        try:
            await self.bot.services.budgets.charge_texts(
                speaker.guild_id, speaker.author_id, [f"{speaker.author_name}: {question}", answer]
            )
        except UserFacingError as error:  # the database failed (and logged it): answer stands
            log.warning("could not count an answer's tokens: %s", error)

    def _answer_sender(self, interaction: discord.Interaction) -> Send:
        """Sends an answer's messages: as followups while the interaction's token lives long
        enough for a whole answer, else (after a long wait in line) as channel messages."""
        answer_time = timedelta(seconds=self.bot.settings.inference_timeout_s + 60)
        channel = interaction.channel

        def send(text: str) -> Awaitable[discord.Message]:
            # Model answers never ping anyone, and links in them are not unfurled.
            token_ends = interaction.created_at + INTERACTION_TOKEN_LIFETIME
            if discord.utils.utcnow() + answer_time >= token_ends and isinstance(
                channel, discord.abc.Messageable
            ):
                return channel.send(text, allowed_mentions=NO_MENTIONS, suppress_embeds=True)
            return interaction.followup.send(
                text, wait=True, allowed_mentions=NO_MENTIONS, suppress_embeds=True
            )

        return send

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None:
            return
        if not message.content.strip() and not message.attachments:
            return
        # Joined before the first await: a channel's messages are answered in arrival order.
        with self.conversations.line_up(message.channel.id) as place:
            if not await self._should_answer(message):
                return
            answered = await self._answer(message, place)
        if answered is not None:  # counted after leaving the line: the next answer need not wait
            await self._charge(*answered)

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        # Discord sends no delete for each message of a deleted thread: forget them all.
        await self._forget_place(payload.guild_id, payload.thread_id)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._forget_place(channel.guild.id, channel.id)

    async def _forget_place(self, guild_id: int, channel_id: int) -> None:
        with contextlib.suppress(StorageError):  # logged where it happened
            removed = await self.conversations.reset(guild_id, channel_id)
            if removed:
                log.info("forgot %d turns of deleted channel %s", removed, channel_id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self._forget_deleted(payload.guild_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self._forget_deleted(payload.guild_id, payload.message_ids)

    async def _forget_deleted(self, guild_id: int, message_ids: Collection[int]) -> None:
        # A deleted message is forgotten too; a database failure was logged where it happened.
        with contextlib.suppress(StorageError):
            await self.conversations.forget_messages(guild_id, message_ids)

    async def _answer(
        self, message: discord.Message, place: Place
    ) -> tuple[Speaker, str, str] | None:
        """Answer a channel message; returns who asked what and the answer, once shown."""
        assert message.guild is not None
        speaker = speaker_of(
            message.author, message.guild.id, message.channel.id, await self._parent(message)
        )
        reply = StreamingReply(
            lambda content: message.channel.send(
                content,
                reference=_reply_reference(message),
                allowed_mentions=NO_MENTIONS,
                suppress_embeds=True,
            ),
            lambda content: message.channel.send(
                content, allowed_mentions=NO_MENTIONS, suppress_embeds=True
            ),
        )
        try:
            text = await self._with_files(message)
            answer = self.conversations.ask(  # paces the member: in arrival order, so first
                speaker,
                text,
                place,
                message_id=message.id,
                answer_message_id=first_message_id(reply),
            )
            await self.bot.services.budgets.check(
                speaker.guild_id, speaker.author_id, estimate_tokens(text)
            )
            with on_behalf_of(speaker.guild_id):
                async with contextlib.aclosing(answer):
                    async with message.channel.typing():
                        first = await anext(answer, None)
                    if first is not None:
                        await reply.add(first)
                        await self._show(answer, reply, _nothing)
            if not reply.messages and self.conversations.was_deleted(message.id):
                return None  # deleted before its answer was shown: nobody to answer
            await reply.finish()
            return speaker, text, reply.text
        except Exception as error:  # a message handler must answer, never die silently
            if isinstance(error, UserFacingError) and error.repeated:
                return None  # a flood is told once per window, not once per message
            if isinstance(error, discord.NotFound) and reply.messages:
                return None  # the answer was deleted while it was written: nothing left to edit
            text = report(error, f"conversation reply in channel {message.channel.id}")
            try:
                await message.channel.send(
                    text, reference=_reply_reference(message), allowed_mentions=NO_MENTIONS
                )
            except discord.HTTPException as failure:  # e.g. the bot may no longer send here
                log.warning("could not tell channel %s: %s", message.channel.id, failure)
            return None

    async def _with_files(self, message: discord.Message) -> str:
        """The message's text with its text files and PDFs read into it (friendly errors)."""
        text = self._without_mention(message)
        if not message.attachments:
            return text
        limits = FileLimits.from_settings(self.bot.settings)
        documents = await asyncio.gather(
            *(
                read_document(AttachedFile(a.filename, a.size, a.url), limits)
                for a in message.attachments[:MAX_FILES_PER_MESSAGE]
            )
        )
        return with_attachments(text, list(documents), MAX_MESSAGE_CHARS)

    async def _should_answer(self, message: discord.Message) -> bool:
        if not _may_send(message):
            return False  # nobody would see the answer: spend no model time on it
        me = self.bot.user
        if me is not None and me in message.mentions:
            return True
        replied_to = message.reference.resolved if message.reference else None
        if isinstance(replied_to, discord.Message) and me and replied_to.author.id == me.id:
            return True
        assert message.guild is not None
        return await self.conversations.is_conversation_channel(
            message.guild.id, message.channel.id, await self._parent(message)
        )

    async def _parent(self, message: discord.Message) -> int | None:
        """The channel of the thread ``message`` was posted in (None: not in a thread), asked of
        Discord when the bot does not know the thread (its settings come from that channel)."""
        if not isinstance(message.channel, discord.PartialMessageable):
            return parent_of(message.channel)
        if message.channel.id in self._parents:
            return self._parents[message.channel.id]
        try:
            channel = await self.bot.fetch_channel(message.channel.id)
        except discord.HTTPException as error:
            log.warning("could not look up channel %s: %s", message.channel.id, error)
            return None
        self._parents[message.channel.id] = parent = parent_of(channel)  # a thread never moves
        return parent

    def _without_mention(self, message: discord.Message) -> str:
        text = message.content
        if self.bot.user is not None:
            for form in (f"<@{self.bot.user.id}>", f"<@!{self.bot.user.id}>"):
                text = text.replace(form, "")
        return text.strip() or message.content

    @conversation.command(name="enable", description="Answer every message in this channel")
    @app_commands.describe(channel="Set it for another channel or a forum's posts instead")
    async def enable(
        self, interaction: discord.Interaction, channel: SettableChannel | None = None
    ) -> None:
        await self._set_mode(interaction, channel, enabled=True)

    @conversation.command(name="disable", description="Only answer when mentioned or replied to")
    @app_commands.describe(channel="Set it for another channel or a forum's posts instead")
    async def disable(
        self, interaction: discord.Interaction, channel: SettableChannel | None = None
    ) -> None:
        await self._set_mode(interaction, channel, enabled=False)

    async def _set_mode(
        self,
        interaction: discord.Interaction,
        channel: SettableChannel | None,
        *,
        enabled: bool,
    ) -> None:
        guild_id, channel_id, where = settings_target(interaction, channel)
        await interaction.response.defer(thinking=True)
        await self.conversations.set_mode(guild_id, channel_id, enabled=enabled)
        state = "on: I'll answer every message" if enabled else "off: mention me to talk"
        await interaction.followup.send(f"Conversation mode is {state} in {where}.")

    @conversation.command(name="persona", description="Set how the bot behaves in this channel")
    @app_commands.describe(
        text="A system prompt, e.g. 'You are a pirate.' Leave empty to reset.",
        channel="Set it for another channel or a forum's posts instead",
    )
    async def persona(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 0, MAX_PERSONA_CHARS] | None = None,
        channel: SettableChannel | None = None,
    ) -> None:
        guild_id, channel_id, where = settings_target(interaction, channel)
        parent_id = parent_of(interaction.channel) if channel is None else None
        await interaction.response.defer(thinking=True)
        persona = await self.conversations.set_persona(guild_id, channel_id, text, parent_id)
        await interaction.followup.send(
            f"Persona for {where}:\n> {truncate(persona, 1500)}", allowed_mentions=NO_MENTIONS
        )

    @conversation.command(
        name="inherit", description="In a thread: follow its channel's mode and persona again"
    )
    async def inherit(self, interaction: discord.Interaction) -> None:
        guild_id, channel_id = location(interaction)
        parent_id = parent_of(interaction.channel)
        if parent_id is None:
            raise InvalidInputError("Only a thread or forum post follows a channel's settings.")
        await interaction.response.defer(thinking=True)
        settings = await self.conversations.follow_parent(guild_id, channel_id, parent_id)
        state = "on" if settings.conversation_enabled else "off"
        await interaction.followup.send(
            f"This {kind_of(interaction.channel)} follows <#{parent_id}> again: conversation "
            f"mode is {state}.",
            allowed_mentions=NO_MENTIONS,
        )

    @app_commands.command(name="reset", description="Forget this channel's conversation")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_messages=True)
    async def reset(self, interaction: discord.Interaction) -> None:
        guild_id, channel_id = location(interaction)
        # Acknowledged first: a reset waits for the answer under way here to stop.
        await interaction.response.defer(thinking=True)
        removed = await self.conversations.reset(guild_id, channel_id)
        await interaction.followup.send(
            f"Done - I forgot this {kind_of(interaction.channel)}'s conversation "
            f"({removed} messages)."
        )

    @app_commands.command(
        name="forget", description="Delete everything you said to the bot in this server"
    )
    @app_commands.guild_only()
    async def forget(self, interaction: discord.Interaction) -> None:
        guild_id, _ = location(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        removed = await self.conversations.forget_member(guild_id, interaction.user.id)
        await interaction.followup.send(
            f"Deleted {removed} of your messages from my memory of this server.", ephemeral=True
        )

    @app_commands.command(name="history", description="Show what the bot remembers of this channel")
    @app_commands.describe(turns="How many recent messages to show")
    @app_commands.guild_only()
    @app_commands.checks.has_permissions(view_channel=True, read_message_history=True)
    async def history(
        self, interaction: discord.Interaction, turns: app_commands.Range[int, 1, 50] = 10
    ) -> None:
        guild_id, channel_id = location(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        remembered = await self.conversations.history(guild_id, channel_id, turns)
        summary = await self.conversations.summary(guild_id, channel_id)
        if not remembered and summary is None:
            raise InvalidInputError(
                f"I don't remember anything of this {kind_of(interaction.channel)}."
            )
        lines = [f"**{t.author_name}**: {truncate(t.content, 300)}" for t in remembered]
        if summary is not None:
            lines.insert(
                0,
                f"**Summary of {summary.turns_folded} older messages**: "
                f"{truncate(summary.content, 1500)}",
            )
        for piece in split_message("\n".join(lines)):
            await interaction.followup.send(piece, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: Bot) -> None:
    await bot.add_cog(ChatCog(bot))


async def _nothing() -> None:
    return None


def _reply_reference(message: discord.Message) -> discord.MessageReference:
    # The member may delete the message while it is answered, before the bot hears of it:
    # the answer is then sent without the link instead of being refused.
    return message.to_reference(fail_if_not_exists=False)


def _may_send(message: discord.Message) -> bool:
    """Whether the bot may send messages where ``message`` was posted (threads: the parent's
    send_messages_in_threads; uncached channels: assumed)."""
    channel = message.channel
    if message.guild is None:
        return True
    if isinstance(channel, discord.Thread):
        if channel.parent is None:
            return True
        # A thread has no overwrites: its parent's apply, with their own send permission.
        return channel.permissions_for(message.guild.me).send_messages_in_threads
    if not isinstance(channel, discord.abc.GuildChannel):
        return True
    return channel.permissions_for(message.guild.me).send_messages
