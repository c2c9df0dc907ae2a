"""Summaries of a text or of a channel's recent messages, with the discussion's mood."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from bot.errors import InvalidInputError
from bot.inference.engine import InferenceEngine
from bot.inference.summarize import Summary
from bot.services.sentiment import Mood, SentimentService, check_text

MAX_TEXT_CHARS = 6000  # the most Discord sends in one text option
MAX_BULLETS = 8
# The most a channel summary reads (the newest messages): one text option's worth per bullet.
# A member can fill a channel with long messages; beyond this the model would be busy for
# minutes on one command.
MAX_DISCUSSION_CHARS = MAX_BULLETS * MAX_TEXT_CHARS
# Summary lengths a member may ask for, in tokens (a forced minimum applies to every part).
MAX_MIN_LENGTH = 200
MAX_MAX_LENGTH = 500
DEFAULT_MIN_LENGTH = 30
MIN_MESSAGES_CHARS = 40
EMPTY_SUMMARY = (
    "The model returned an empty summary for this text - try a longer text, "
    "or a smaller min_length."
)
EMPTY_DISCUSSION_SUMMARY = "The model returned an empty summary for these messages."


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """One message as the summarizer sees it (built by the Discord glue)."""

    id: int
    author_name: str
    content: str
    created_at: datetime
    author_is_bot: bool = False
    has_attachments_or_embeds: bool = False


@dataclass(frozen=True, slots=True)
class Bullet:
    text: str
    message_id: int  # where the summarised stretch of discussion starts


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    bullets: tuple[Bullet, ...]
    mood: Mood
    messages_used: int
    skipped_bots: int
    skipped_no_text: int
    skipped_over_limit: int = 0  # the oldest messages, beyond MAX_DISCUSSION_CHARS


class SummaryService:
    """Summaries of texts and of channel discussions."""

    def __init__(self, engine: InferenceEngine, sentiment: SentimentService) -> None:
        self._engine = engine
        self._sentiment = sentiment

    async def summarize_text(
        self, text: str, *, min_length: int | None = None, max_length: int = 130
    ) -> Summary:
        """Summary of a text; long ones are summarised in parts, then as a whole."""
        text = check_text(text, limit=MAX_TEXT_CHARS)
        if len(text.split()) < 8:
            raise InvalidInputError("That text is too short to summarise - it already is one.")
        if min_length is None:  # only a maximum given: the default minimum must not exceed it
            min_length = min(DEFAULT_MIN_LENGTH, max_length // 2)
        if min_length > MAX_MIN_LENGTH or max_length > MAX_MAX_LENGTH:
            raise InvalidInputError(
                f"Summaries can be at most {MAX_MAX_LENGTH} tokens long, with a minimum of at "
                f"most {MAX_MIN_LENGTH}."
            )
        summary = await self._engine.summarize(text, min_length=min_length, max_length=max_length)
        if not summary.text.strip():  # Discord refuses an empty message
            return Summary(EMPTY_SUMMARY, summary.chunks)
        return summary

    async def summarize_document(self, text: str, *, max_chars: int) -> Summary:
        """Summary of an attached document's text: parts first, then the whole (map-reduce)."""
        text = check_text(text, limit=max_chars)
        if len(text.split()) < 8:
            raise InvalidInputError("That file is too short to summarise - it already is one.")
        summary = await self._engine.summarize(text, min_length=DEFAULT_MIN_LENGTH, max_length=130)
        if not summary.text.strip():
            return Summary(EMPTY_SUMMARY, summary.chunks)
        return summary

    async def summarize_messages(self, messages: Sequence[ChannelMessage]) -> ChannelSummary:
        """Bullets over a channel's messages (oldest first), each linked to where it starts."""
        human = [m for m in messages if not m.author_is_bot]
        usable = [m for m in human if m.content.strip()]
        skipped_no_text = len(human) - len(usable)
        usable, skipped_over_limit = newest_within(usable, MAX_DISCUSSION_CHARS)
        if sum(len(m.content) for m in usable) < MIN_MESSAGES_CHARS:
            raise InvalidInputError(
                "There isn't enough written discussion here to summarise "
                f"({len(usable)} messages with text)."
            )
        stretches = _stretches(usable, MAX_BULLETS)
        # Concurrent requests share the summarization worker's batches.
        summaries = await asyncio.gather(
            *(
                self._engine.summarize(_transcript(stretch), min_length=5, max_length=60)
                for stretch in stretches
            )
        )
        bullets = tuple(
            Bullet(summary.text, stretch[0].id)
            for summary, stretch in zip(summaries, stretches, strict=True)
            if summary.text.strip()
        )
        # The tutorials' chaining: messages and summary through the classifier, in one call.
        mood = await self._sentiment.mood([m.content for m in usable] + [b.text for b in bullets])
        return ChannelSummary(
            bullets or (Bullet(EMPTY_DISCUSSION_SUMMARY, usable[0].id),),
            mood,
            len(usable),
            len(messages) - len(human),
            skipped_no_text,
            skipped_over_limit,
        )


class _Written(Protocol):
    @property
    def content(self) -> str: ...


W = TypeVar("W", bound=_Written)


def newest_fitting(items: Sequence[W], limit: int) -> list[W]:
    """The newest items whose texts fit ``limit`` characters together (at least one, whole),
    oldest first."""
    kept: list[W] = []
    size = 0
    for item in reversed(items):
        if kept and size + len(item.content) > limit:
            break
        kept.append(item)
        size += len(item.content)
    kept.reverse()
    return kept


def newest_within(
    messages: Sequence[ChannelMessage], limit: int
) -> tuple[list[ChannelMessage], int]:
    """The newest messages whose text fits ``limit`` characters (at least one, cut to it),
    and how many older ones were left out."""
    kept = newest_fitting(messages, limit)
    if kept and len(kept[0].content) > limit:  # one message longer than the whole budget
        kept[0] = dataclasses.replace(kept[0], content=kept[0].content[-limit:])
    return kept, len(messages) - len(kept)


def _transcript(messages: Sequence[ChannelMessage]) -> str:
    return "\n".join(f"{m.author_name}: {m.content.strip()}" for m in messages)


def _stretches(messages: Sequence[ChannelMessage], count: int) -> list[list[ChannelMessage]]:
    """Split consecutive messages into at most ``count`` stretches of similar length."""
    total = sum(len(m.content) for m in messages)
    target = max(1, -(-total // count))
    stretches: list[list[ChannelMessage]] = [[]]
    size = 0
    for message in messages:
        if size >= target and len(stretches) < count:
            stretches.append([])
            size = 0
        stretches[-1].append(message)
        size += len(message.content)
    return stretches


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
MAX_SINCE = timedelta(days=28)
# Longer than any sensible duration ("4w0d0h0m0s" is 10); keeps int() and timedelta small.
MAX_DURATION_CHARS = 32


def parse_duration(value: str) -> timedelta:
    """Parse ``90m``, ``2h``, ``1d12h`` into a timedelta (InvalidInputError otherwise)."""
    text = value.strip().lower().replace(" ", "")
    if len(text) > MAX_DURATION_CHARS:
        raise InvalidInputError(
            "That duration is too long to read - try something like 30m, 2h or 1d."
        )
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidInputError(
            f"I can't read {text!r} as a duration - try something like 30m, 2h or 1d."
        )
    # Compared as whole seconds: a huge number never reaches timedelta (OverflowError).
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 < seconds <= MAX_SINCE.total_seconds():
        raise InvalidInputError("The duration must be more than 0 and at most 28 days.")
    return timedelta(seconds=seconds)
