"""The bot as a real process (`python -m bot run`), stopped and started on the same database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import TinyModels
from tests.loopback.harness import LoopbackDiscord

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


async def start_process(
    server: LoopbackDiscord, database_url: str, models: TinyModels
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        **server.settings_env(),
        "DATABASE_URL": database_url,
        "SENTIMENT_MODEL": models.sentiment,
        "EMOTION_MODEL": models.emotion,
        "MODERATION_MODEL": models.moderation,
        "SUMMARIZATION_MODEL": models.summarization,
        "CHAT_MODEL": models.chat,
        "DEVICE": "cpu",
        "CHAT_MAX_NEW_TOKENS": "16",
        "HF_HUB_OFFLINE": "1",
    }
    identifies = server.fake.gateway.identifies
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await server.wait_for(
        lambda: server.fake.gateway.identifies > identifies or process.returncode is not None,
        90,
        "the bot process to connect",
    )
    assert process.returncode is None, "the bot process exited early"
    await asyncio.sleep(2.5)  # guilds arrive; the bot is ready
    return process


async def stop_process(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return stderr.decode()


@pytest.mark.both_backends
async def test_settings_and_history_survive_a_restart(
    discord_server: LoopbackDiscord, database_url: str, tiny_models: TinyModels
) -> None:
    fake = discord_server.fake
    process = await start_process(discord_server, database_url, tiny_models)
    try:
        enable = await fake.slash("conversation", {"enable": {}})
        await discord_server.answer(enable)
        chat = await fake.slash("chat", {"message": "remember the release plan"})
        await discord_server.wait_for(
            lambda: chat.original and "▌" not in (chat.original.get("content") or "▌"),
            60,
            "the /chat answer",
        )
    finally:
        log = await stop_process(process)
    assert "Traceback" not in log

    process = await start_process(discord_server, database_url, tiny_models)
    try:
        history = await fake.slash("history", {"turns": 10})
        [text] = await discord_server.answer(history)
        assert "remember the release plan" in text
        assert "**assistant**" in text
        # Conversation mode is still on: a plain message gets an answer.
        before = len(fake.bot_messages(fake.general))
        member = fake.user("dana")
        fake.add_member(member)
        await fake.post_message(fake.general, member, "hello again")
        await discord_server.wait_for(
            lambda: len(fake.bot_messages(fake.general)) > before, 60, "a channel reply"
        )
    finally:
        await stop_process(process)
