from __future__ import annotations

from typing import Any

import pytest

from bot.cogs import streaming
from bot.cogs.streaming import StreamingReply


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
