"""Two bot processes, one shard each, serving one application on one database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import build_bot
from bot.storage.engine import create_engine
from bot.storage.models import ChannelSettingsRow, ConversationTurnRow
from tests.conftest import TinyModels
from tests.e2e.conftest import BotRunner
from tests.loopback.discord_server import FakeDiscord, Interaction
from tests.loopback.gateway import shard_of
from tests.loopback.harness import LoopbackDiscord, loopback_settings

REPO = Path(__file__).resolve().parents[2]
CURSOR = "▌"
pytestmark = pytest.mark.timeout(600)


class BotProcess:
    """``python -m bot run`` for some shards; its REST and gateway calls carry ``client``."""

    def __init__(self, server: LoopbackDiscord, client: str, env: dict[str, str]) -> None:
        self.server = server
        self.client = client
        self.env = env
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=REPO,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_ready(self, timeout: float = 180) -> None:
        """Until the process logs that every shard it runs is connected and has its guilds."""
        await self.server.wait_for(
            lambda: "connected as" in self.log or self._exited(), timeout, f"{self.client} ready"
        )
        assert not self._exited(), f"{self.client} exited early:\n{self.log[-3000:]}"

    def _exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    async def stop(self) -> None:
        """SIGTERM, as `docker stop` sends; the process must exit cleanly."""
        if self.process is None or self._exited():
            return
        self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), 60)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        assert self.process.returncode == 0, self.log[-3000:]


def shard_env(
    server: LoopbackDiscord,
    database_url: str,
    models: TinyModels,
    client: str,
    shard_ids: str,
    **extra: str,
) -> dict[str, str]:
    base = f"http://127.0.0.1:{server.port}/c/{client}"
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "DATABASE_", "SHARD_", "CHAT_", "COMMAND_"))
    }
    return {
        **clean,
        "DISCORD_TOKEN": server.fake.token,
        "DISCORD_API_BASE": f"{base}/api/v10",
        "DISCORD_GATEWAY_URL": server.fake.gateway.url_for(client),
        "DATABASE_URL": database_url,
        "SHARD_COUNT": "2",
        "SHARD_IDS": shard_ids,
        "SENTIMENT_MODEL": models.sentiment,
        "EMOTION_MODEL": models.emotion,
        "MODERATION_MODEL": models.moderation,
        "SUMMARIZATION_MODEL": models.summarization,
        "CHAT_MODEL": models.chat,
        "DEVICE": "cpu",
        "COMMAND_COOLDOWN_S": "0",
        "CHAT_MAX_NEW_TOKENS": "8",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


async def start_shards(
    server: LoopbackDiscord,
    database_url: str,
    models: TinyModels,
    *,
    together: bool,
    **extra: str,
) -> list[BotProcess]:
    """One process per shard of two; ``together`` starts both at the same moment."""
    processes = [
        BotProcess(
            server,
            f"shard{shard_id}",
            shard_env(server, database_url, models, f"shard{shard_id}", str(shard_id), **extra),
        )
        for shard_id in (0, 1)
    ]
    if together:
        for process in processes:
            await process.start()
        await asyncio.gather(*(process.wait_ready() for process in processes))
    else:
        for process in processes:
            await process.start()
            await process.wait_ready()
    return processes


def callbacks(fake: FakeDiscord, interaction: Interaction) -> list[str]:
    """Which process answered each callback of an interaction."""
    prefix = f"/api/v10/interactions/{interaction.id}/"
    return [r.client for r in fake.requests if r.path.startswith(prefix)]


def replies_to(fake: FakeDiscord, channel_id: int) -> Counter[str]:
    """How many bot messages reply to each message id of a channel."""
    return Counter(
        str(m["message_reference"]["message_id"])
        for m in fake.bot_messages(channel_id)
        if m.get("message_reference")
    )


def finished(interaction: Interaction) -> bool:
    original = interaction.original
    return bool(original and original.get("content") and CURSOR not in original["content"])


async def test_unset_shard_count_runs_every_recommended_shard_in_one_process(
    discord_server: LoopbackDiscord, bots: BotRunner
) -> None:
    fake = discord_server.fake
    second = fake.add_guild()
    fake.recommended_shards = 2
    settings = loopback_settings(
        discord_server, bots.database_url, bots.models.as_roles(), discord_dev_guild_id=None
    )
    bot = await build_bot(settings)
    task = asyncio.create_task(bot.start(fake.token))
    bots.running.append((bot, task))
    # The second shard identifies 5 s after the first, as Discord's start limit asks.
    await discord_server.wait_for(lambda: bot.is_ready() or task.done(), 90, "the bot ready")

    assert [r.client for r in fake.requests if r.path == "/api/v10/gateway/bot"] == [""]
    assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
    assert [shard_id for shard_id, _ in bot.latencies] == [0, 1]
    assert sorted(fake.gateway.sessions) == [0, 1]
    assert {guild.id: guild.shard_id for guild in bot.guilds} == {
        fake.guild_id: 0,
        second.id: 1,
    }
    for channel in (fake.general, second.general):
        interaction = await fake.slash("sentiment", {"text": "i love this"}, channel_id=channel)
        [text] = await discord_server.answer(interaction)
        assert text.startswith("Positive")
    syncs = [r for r in fake.requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(syncs) == 1


@pytest.mark.both_backends
async def test_each_process_serves_only_the_guilds_of_its_shard(
    discord_server: LoopbackDiscord, database_url: str, tiny_models: TinyModels
) -> None:
    fake = discord_server.fake
    second = fake.add_guild()
    guilds = {fake.guild_id: fake.general, second.id: second.general}
    owner = {guild_id: f"shard{shard_of(guild_id, 2)}" for guild_id in guilds}
    assert sorted(owner.values()) == ["shard0", "shard1"]

    processes = await start_shards(discord_server, database_url, tiny_models, together=False)
    try:
        for shard_id, session in fake.gateway.sessions.items():
            [ready] = session.events("READY")
            assert session.client == f"shard{shard_id}"
            assert [int(g["id"]) for g in ready["guilds"]] == [
                g for g in guilds if shard_of(g, 2) == shard_id
            ]
        syncs = [r for r in fake.requests if r.method == "PUT" and r.path.endswith("/commands")]
        assert [r.client for r in syncs] == ["shard0"]
        assert "/guilds/" not in syncs[0].path  # no dev guild: global commands
        assert "not syncing application commands" in processes[1].log

        # Slash commands: each guild's are answered once, by the process of its shard.
        asked = [
            (guild_id, await fake.slash("sentiment", {"text": text}, channel_id=channel))
            for guild_id, channel in guilds.items()
            for text in ("i love this", "i hate this")
        ]
        for guild_id, interaction in asked:
            await discord_server.answer(interaction, timeout=60)
            assert callbacks(fake, interaction) == [owner[guild_id]]
            assert interaction.followups == []

        # Messages: conversation mode is a per-guild setting kept by the owning process.
        for channel in guilds.values():
            await discord_server.answer(
                await fake.slash("conversation", {"enable": {}}, channel_id=channel)
            )
        posted = {
            guild_id: await fake.post_message(channel, fake.owner, f"hello from {guild_id}")
            for guild_id, channel in guilds.items()
        }
        for channel in guilds.values():
            await discord_server.wait_for(
                lambda channel=channel: replies_to(fake, channel), 120, "a channel reply"
            )
        await asyncio.sleep(1.0)  # a second answer, if there were one, would arrive by now
        for guild_id, channel in guilds.items():
            assert replies_to(fake, channel) == Counter({posted[guild_id]["id"]: 1})
            sends = [
                r.client
                for r in fake.requests
                if r.method == "POST" and r.path == f"/api/v10/channels/{channel}/messages"
            ]
            assert set(sends) == {owner[guild_id]}
        assert fake.gateway.undelivered == []
    finally:
        for process in processes:
            await process.stop()
    for process in processes:
        assert "Traceback" not in process.log, process.log[-3000:]


async def stored(database_url: str) -> tuple[list[Any], list[Any]]:
    """Every conversation turn and channel settings row, read after the bots stopped."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            turns = (await connection.execute(select(ConversationTurnRow))).all()
            channels = (await connection.execute(select(ChannelSettingsRow))).all()
    finally:
        await engine.dispose()
    return list(turns), list(channels)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_processes_writing_to_one_postgresql_lose_nothing(
    discord_server: LoopbackDiscord, database_url: str, tiny_models: TinyModels
) -> None:
    fake = discord_server.fake
    second = fake.add_guild()
    channels = [fake.general, second.general]
    for guild_id in (fake.guild_id, second.id):
        channels += [fake.channel(f"room{i}", guild_id=guild_id) for i in range(2)]
    # Both start at once: they migrate the fresh database at the same moment too.
    processes = await start_shards(
        discord_server, database_url, tiny_models, together=True, CHAT_ANSWERS_PER_MINUTE="0"
    )
    try:
        # Every command goes out before any is answered: both processes write at once.
        personas = await asyncio.gather(
            *(
                fake.slash("conversation", {"persona": {"text": f"persona {c}"}}, channel_id=c)
                for c in channels
            )
        )
        questions = {(c, f"message {n} in {c}") for n in range(4) for c in channels}
        chats = await asyncio.gather(
            *(fake.slash("chat", {"message": text}, channel_id=c) for c, text in questions)
        )
        for interaction in personas:
            await discord_server.answer(interaction, timeout=120)
        await discord_server.wait_for(
            lambda: all(finished(i) for i in chats), 300, "every /chat answer"
        )
    finally:
        for process in processes:
            await process.stop()

    turns, settings = await stored(database_url)
    assert Counter((t.channel_id, t.content) for t in turns if t.role == "user") == Counter(
        questions
    )
    shown = [(i.channel_id, final_text(i)) for i in chats]
    assert Counter((t.channel_id, t.content) for t in turns if t.role == "assistant") == Counter(
        (channel, text)
        for channel, text in shown
        if text != "…"  # "…": the answer was empty
    )
    assert {(s.channel_id, s.persona) for s in settings} == {(c, f"persona {c}") for c in channels}
    for interaction in [*personas, *chats]:
        guild_id = fake.guild_of_channel(interaction.channel_id).id
        assert callbacks(fake, interaction) == [f"shard{shard_of(guild_id, 2)}"]
    for process in processes:
        assert "Traceback" not in process.log, process.log[-3000:]


def final_text(interaction: Interaction) -> str:
    assert interaction.original is not None
    return str(interaction.original["content"]).strip()
