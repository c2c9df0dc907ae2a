"""Catch-up's pure parts: which messages are for a member, and where reading stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.services.catchup import Post, read_since_last, split_for
from bot.services.summaries import ChannelMessage

MEMBERS = st.integers(min_value=1, max_value=4)
START = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def channels(draw: st.DrawFn) -> list[Post]:
    """A channel's messages, oldest first, by a few members mentioning and replying."""
    posts = []
    for index in range(draw(st.integers(0, 30))):
        posts.append(
            Post(
                ChannelMessage(
                    id=index + 1,
                    author_name="m",
                    content=draw(st.text(max_size=10)),
                    created_at=START + timedelta(minutes=index),
                ),
                author_id=draw(MEMBERS),
                mentions=frozenset(draw(st.sets(MEMBERS, max_size=2))),
                reply_to_author_id=draw(st.none() | MEMBERS),
            )
        )
    return posts


async def newest_first(posts: Sequence[Post]) -> AsyncIterator[Post]:
    for post in reversed(posts):
        yield post


@settings(max_examples=50)
@given(channels(), MEMBERS)
def test_split_keeps_every_message_once_and_in_order(posts: list[Post], member: int) -> None:
    mine, others = split_for(member, posts)

    assert sorted(p.message.id for p in mine + others) == [p.message.id for p in posts]
    assert [p.message.id for p in mine] == sorted(p.message.id for p in mine)
    assert [p.message.id for p in others] == sorted(p.message.id for p in others)
    for post in mine:  # mentions or replies to the member, never the member's own
        assert post.author_id != member
        assert member in post.mentions or post.reply_to_author_id == member
    for post in others:
        assert post.author_id == member or (
            member not in post.mentions and post.reply_to_author_id != member
        )


@settings(max_examples=50)
@given(channels(), MEMBERS, st.integers(1, 40))
def test_reading_stops_at_the_members_last_message_or_the_limit(
    posts: list[Post], member: int, limit: int
) -> None:
    read, last_seen = asyncio.run(read_since_last(member, newest_first(posts), limit))

    own = [p for p in posts if p.author_id == member]
    after = [p for p in posts if not own or p.message.id > own[-1].message.id]
    assert read == after[-limit:]  # oldest first, never the member's own
    # Found only among the newest ``limit`` messages (then everything after it was read).
    found = bool(own) and len(after) < limit
    assert last_seen == (own[-1].message.created_at if found else None)
