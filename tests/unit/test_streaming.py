from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cogs import streaming
from bot.cogs.streaming import StreamingReply
from bot.formatting import MESSAGE_LIMIT, split_message
from tests.unit.deadline import within


class FakeMessage:
    def __init__(self, log: list[tuple[str, str]], content: str) -> None:
        self.content = content
        self._log = log

    async def edit(self, *, content: str) -> FakeMessage:
        self.content = content
        self._log.append(("edit", content))
        return self


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(streaming.time, "monotonic", fake)
    return fake


def reply_and_log() -> tuple[StreamingReply, list[tuple[str, str]], list[FakeMessage]]:
    log: list[tuple[str, str]] = []
    sent: list[FakeMessage] = []

    async def send(content: str) -> Any:
        log.append(("send", content))
        sent.append(FakeMessage(log, content))
        return sent[-1]

    return StreamingReply(send, send), log, sent


async def test_edits_at_most_once_per_interval(clock: Clock) -> None:
    reply, log, sent = reply_and_log()
    clock.now = 100.0

    for step in range(50):  # 50 pieces over 5 seconds
        clock.now = 100.0 + step * 0.1
        await reply.add(f"word{step} ")
    await reply.finish()

    updates = [entry for entry in log if entry[0] in ("send", "edit")]
    # The first piece at once, then one update per second, then the final text.
    assert [content.count("word") for _, content in updates] == [1, 11, 21, 31, 41, 50]
    assert log[0][1].endswith("▌")  # still coming
    assert sent[0].content == " ".join(f"word{i}" for i in range(50))


async def test_long_answers_continue_in_new_messages(clock: Clock) -> None:
    reply, _, sent = reply_and_log()
    words = [f"token{i:04d} " for i in range(700)]  # 7000 characters

    for step, word in enumerate(words):
        clock.now = step * 0.05
        await reply.add(word)
    await reply.finish()

    assert len(sent) == 4
    assert all(len(message.content) <= 2000 for message in sent)
    assert " ".join(m.content for m in sent).split() == "".join(words).split()
    assert not any("▌" in message.content for message in sent)


async def test_an_empty_answer_still_shows_something(clock: Clock) -> None:
    reply, _, sent = reply_and_log()

    await reply.add("   ")
    await reply.finish()

    assert [m.content for m in sent] == ["…"]


tokens = st.one_of(
    st.sampled_from(["word ", "\n", "\n\n", "```", "```python\n", "`", "x" * 300, "\U0001f600"]),
    st.text(max_size=8),
    st.builds(lambda s, n: s * n, st.sampled_from(["y", " ", "\n", "`"]), st.integers(0, 900)),
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(tokens, st.floats(0.0, 1.5)), max_size=60))
def test_streamed_messages_only_change_while_they_are_the_last(
    steps: list[tuple[str, float]],
) -> None:
    async def stream() -> tuple[StreamingReply, list[tuple[str, str]], list[FakeMessage]]:
        reply, log, sent = reply_and_log()
        for token, pause in steps:
            fake.now += pause
            await reply.add(token)
            shown.append([message.content for message in sent])
        await reply.finish()
        shown.append([message.content for message in sent])
        return reply, log, sent

    fake = Clock()
    shown: list[list[str]] = [[]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streaming.time, "monotonic", fake)
        reply, log, sent = within(30, lambda: asyncio.run(stream()))

    assert all(0 < len(content) <= MESSAGE_LIMIT for _, content in log)
    limit = MESSAGE_LIMIT - len(streaming._CURSOR)
    final = split_message(reply.text, limit) if reply.text.strip() else ["…"]
    assert [message.content for message in sent] == final
    for before, after in pairwise(shown):
        # Only the last message changes (it loses its cursor when the next one starts).
        assert after[: max(0, len(before) - 1)] == before[:-1]
