"""Catching up: what happened in a channel since a member last wrote there.

Messages that mention the member or reply to them come first, one by one; the rest is
summarised (or, when it is too little to summarise, listed).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.errors import InvalidInputError
from bot.services.summaries import ChannelMessage, ChannelSummary, SummaryService

# The most messages read back (newest first): two requests of 100 to Discord, and at most
# that much discussion for the summarizer, so one command never keeps it busy for long.
READ_LIMIT = 200
# Mentions and replies listed one by one (the newest ones); the count says how many more.
MAX_FOR_YOU = 10
# Up to this many other messages are shown as they are, not summarised (so are the newest
# ones when there is too little text to summarise).
MAX_LISTED = 5


@dataclass(frozen=True, slots=True)
class Post:
    """One channel message as catch-up sees it: the summarizer's view of it, plus who wrote
    it and whom it is for (built by the Discord glue)."""

    message: ChannelMessage
    author_id: int
    mentions: frozenset[int] = field(default_factory=frozenset)  # ids of members mentioned
    reply_to_author_id: int | None = None  # whose message it replies to, when known

    def is_for(self, member_id: int) -> bool:
        """Whether it mentions or replies to ``member_id`` (and is not their own)."""
        return self.author_id != member_id and (
            member_id in self.mentions or self.reply_to_author_id == member_id
        )


@dataclass(frozen=True, slots=True)
class Catchup:
    read: int  # messages newer than the member's last one (or READ_LIMIT, if not found)
    last_seen: datetime | None  # when the member last wrote here; None: not among READ_LIMIT
    for_you: tuple[Post, ...]  # oldest first, at most MAX_FOR_YOU
    more_for_you: int  # mentions and replies left out of ``for_you`` (the oldest)
    summary: ChannelSummary | None  # of the other messages, when there was enough to summarise
    listed: tuple[Post, ...]  # otherwise the newest of the others, oldest first
    unlisted: int  # other messages neither summarised nor listed

    @property
    def is_empty(self) -> bool:
        return self.read == 0


def split_for(member_id: int, posts: Sequence[Post]) -> tuple[list[Post], list[Post]]:
    """The posts that mention or reply to the member, and the others (order kept)."""
    mine = [p for p in posts if p.is_for(member_id)]
    others = [p for p in posts if not p.is_for(member_id)]
    return mine, others


async def read_since_last(
    member_id: int, newest_first: AsyncIterable[Post], limit: int = READ_LIMIT
) -> tuple[list[Post], datetime | None]:
    """The posts after the member's last one (oldest first, at most ``limit``), and when that
    last one was written (None if it is not among the newest ``limit``). Stops reading there."""
    posts: list[Post] = []
    last_seen = None
    async for post in newest_first:
        if post.author_id == member_id:
            last_seen = post.message.created_at
            break
        posts.append(post)
        if len(posts) >= limit:
            break
    posts.reverse()
    return posts, last_seen


async def catch_up(
    summaries: SummaryService, member_id: int, newest_first: AsyncIterable[Post]
) -> Catchup:
    """What the member missed: mentions and replies first, the rest summarised."""
    posts, last_seen = await read_since_last(member_id, newest_first)
    mine, others = split_for(member_id, posts)
    shown_mine = mine[-MAX_FOR_YOU:]
    summary: ChannelSummary | None = None
    listed: list[Post] = []
    written = [p for p in others if not p.message.author_is_bot and p.message.content.strip()]
    if len(written) <= MAX_LISTED:  # a few messages read faster as they are than summarised
        listed = written
    else:
        try:
            summary = await summaries.summarize_messages([p.message for p in others])
        except InvalidInputError:  # too little text to summarise: show the newest as they are
            listed = written[-MAX_LISTED:]
    unlisted = 0 if summary else len(others) - len(listed)
    return Catchup(
        read=len(posts),
        last_seen=last_seen,
        for_you=tuple(shown_mine),
        more_for_you=len(mine) - len(shown_mine),
        summary=summary,
        listed=tuple(listed),
        unlisted=unlisted,
    )
