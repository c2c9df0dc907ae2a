"""`python -m bot run --web`: the bot and the web app in one process, on one copy of the models."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest

from tests.conftest import TinyModels
from tests.e2e.test_restart import REPO, stop_process
from tests.loopback.harness import LoopbackDiscord
from tests.web.conftest import require_module

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_chat(url: str, message: str) -> list[str]:
    """Every streamed state of one web chat answer (gradio_client, in its own thread)."""
    from gradio_client import Client

    job = Client(url, verbose=False).submit(message, "", api_name="/chat")
    return [*job, job.result()]


async def test_run_web_serves_the_page_from_the_bots_process_and_models(
    discord_server: LoopbackDiscord, database_url: str, tiny_models: TinyModels
) -> None:
    require_module("gradio")
    require_module("gradio_client")
    port = free_port()
    env = {
        **os.environ,
        **discord_server.settings_env(),
        "DATABASE_URL": database_url,
        "SENTIMENT_MODEL": tiny_models.sentiment,
        "EMOTION_MODEL": tiny_models.emotion,
        "SUMMARIZATION_MODEL": tiny_models.summarization,
        "CHAT_MODEL": tiny_models.chat,
        "DEVICE": "cpu",
        "CHAT_MAX_NEW_TOKENS": "16",
        "HF_HUB_OFFLINE": "1",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(port),
        "LOG_LEVEL": "INFO",
    }
    fake = discord_server.fake
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--web",
        cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await discord_server.wait_for(
            lambda: fake.gateway.identifies > 0 or process.returncode is not None,
            120,
            "the bot process to connect",
        )
        assert process.returncode is None, "the bot process exited early"
        await asyncio.sleep(2.5)  # guilds arrive; the bot is ready
        url = f"http://127.0.0.1:{port}/"
        states = await asyncio.to_thread(web_chat, url, "hello from the web")
        assert states[-1].strip() and len(states) >= 2
        chat = await fake.slash("chat", {"message": "and hello from discord"})
        await discord_server.wait_for(
            lambda: chat.original and "▌" not in (chat.original.get("content") or "▌"),
            60,
            "the /chat answer",
        )
    finally:
        log = await stop_process(process)
    assert "Traceback" not in log, log[-4000:]
    assert "web app at http://127.0.0.1" in log
    # Both front doors were answered by the one chat model the process loaded.
    assert log.count("chat model ready") == 1, log[-3000:]
