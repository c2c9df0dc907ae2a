"""Daily token budgets and fair waiting between guilds, over the loopback Discord."""

from __future__ import annotations

import asyncio
import re
import time

from tests.e2e.conftest import BotRunner
from tests.e2e.test_fairness import members, slow_down
from tests.loopback.discord_server import Interaction
from tests.loopback.harness import LoopbackDiscord

PLACE = re.compile(r"⏳ #(\d+) in line, about (\d+) (s|min)")


async def test_a_spent_member_budget_refuses_until_a_manager_raises_it(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    bot = await bots.start(chat_answers_per_minute=0, member_daily_tokens=5)
    spender, other = members(fake, 2)

    first = await fake.slash("chat", {"message": "hello there"}, user=spender)
    await discord_server.answer(first, timeout=60)
    deadline = time.monotonic() + 30
    while not (
        await bot.services.budgets.status(fake.guild_id, int(spender["id"]))
    ).usage.member_tokens:
        assert time.monotonic() < deadline, "the answer was never charged"
        await asyncio.sleep(0.05)
    shown = await fake.slash("budget", user=spender)
    [status] = await discord_server.answer(shown)
    used = int(re.search(r"You: ([\d,]+) of 5 tokens used", status)[1].replace(",", ""))  # type: ignore[index]
    assert used > 5  # the question and the answer, in the chat model's tokens

    refused = await fake.slash("chat", {"message": "and again"}, user=spender)
    [refusal] = await discord_server.answer(refused)
    assert "You've used" in refusal and "tokens for today" in refusal
    allowed = await fake.slash("chat", {"message": "my turn"}, user=other)
    assert "You've used" not in (await discord_server.answer(allowed, timeout=60))[0]

    not_manager = await fake.slash("budget-limits", {"member_daily": 0}, user=spender)
    assert "Manage Guild permission" in (await discord_server.answer(not_manager))[0]
    raised = await fake.slash("budget-limits", {"member_daily": 0})  # the owner manages it
    assert "each member: no limit" in (await discord_server.answer(raised))[0]
    again = await fake.slash("chat", {"message": "and again"}, user=spender)
    assert "You've used" not in (await discord_server.answer(again, timeout=60))[0]


async def test_a_busy_guild_does_not_starve_a_quiet_one_and_waiters_see_their_place(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    quiet = fake.add_guild("Quiet Guild", shard=(0, 2))
    # One answer at a time, so every other request waits where fairness decides.
    bot = await bots.start(chat_answers_per_minute=0, inference_max_batch_size=1)
    slow_down(bot, 0.05)
    busy_members = members(fake, 5)
    channels = [fake.channel(f"busy{i}") for i in range(5)]

    busy = [
        await fake.slash("chat", {"message": f"busy question {i}"}, user=m, channel_id=c)
        for i, (m, c) in enumerate(zip(busy_members, channels, strict=True))
    ]
    await discord_server.wait_for(
        lambda: all(i.callback_type == 5 for i in busy), 10, "the busy guild's /chat deferred"
    )
    lone = await fake.slash("chat", {"message": "quiet question"}, channel_id=quiet.general)

    def answered(interaction: Interaction) -> bool:
        text = (interaction.original or {}).get("content") or ""
        return bool(text) and not PLACE.match(text)

    done_at: dict[int, float] = {}

    def record() -> bool:
        for number, interaction in enumerate([*busy, lone]):
            if answered(interaction):
                done_at.setdefault(number, time.perf_counter())
        return len(done_at) == len(busy) + 1

    await discord_server.wait_for(record, 120, "every answer")
    order = sorted(done_at, key=done_at.__getitem__)
    assert order.index(len(busy)) <= 2, order  # the quiet guild went second or third, not last

    notices = [
        r.body["content"]
        for r in fake.requests
        if r.method == "PATCH" and r.path.endswith("/messages/@original") and r.body
        if PLACE.match(r.body.get("content") or "")
    ]
    assert notices, "no waiting member was told their place"
    places = [int(PLACE.match(text)[1]) for text in notices]  # type: ignore[index]
    assert max(places) >= 2
