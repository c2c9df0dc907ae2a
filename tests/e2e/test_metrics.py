"""METRICS_PORT: /metrics counts and times commands and models, /healthz watches gateway and
database, scraped over HTTP like Prometheus and an orchestrator would."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.e2e.conftest import BotRunner
from tests.loopback.harness import LoopbackDiscord

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def health(port: int) -> tuple[int, dict[str, bool]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status, json.loads(await response.text())


async def scrape_until(
    server: LoopbackDiscord, port: int, name: str, at_least: float, **labels: str
) -> Samples:
    """Scrape until a sample reaches a value (a command is counted once its answer is sent)."""
    latest: Samples = {}

    async def reached() -> bool:
        nonlocal latest
        latest = await scrape(port)
        return value(latest, name, **labels) >= at_least

    for _ in range(200):
        if await reached():
            return latest
        server.check_errors()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name}{labels} stayed at {value(latest, name, **labels)}")


async def test_metrics_count_and_time_commands_and_models(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    bot = await bots.start(metrics_port=0)
    assert bot.monitoring is not None
    port = bot.monitoring.port
    before = await scrape(port)

    positive = await discord_server.fake.slash("sentiment", {"text": "what a wonderful day"})
    await discord_server.answer(positive)
    refused = await discord_server.fake.slash("summarize", {"text": "   "})
    await discord_server.answer(refused)
    after = await scrape_until(
        discord_server, port, "bot_commands_total", 1, command="summarize", outcome="refused"
    )
    after = await scrape_until(
        discord_server, port, "bot_commands_total", 1, command="sentiment", outcome="ok"
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("bot_commands_total", command="sentiment", outcome="ok") == 1
    assert moved("bot_commands_total", command="sentiment", outcome="refused") == 0
    assert moved("bot_commands_total", command="summarize", outcome="refused") == 1
    assert moved("bot_command_answer_seconds_count", command="sentiment", outcome="ok") == 1
    assert moved("bot_command_acknowledge_seconds_count", command="sentiment") == 1
    acknowledged = moved("bot_command_acknowledge_seconds_sum", command="sentiment")
    answered = moved("bot_command_answer_seconds_sum", command="sentiment", outcome="ok")
    assert 0 < acknowledged < answered  # it defers first, then runs the model and answers
    # One text, one request to the sentiment model, in one run of one slot.
    assert moved("bot_inference_latency_seconds_count", role="sentiment") == 1
    assert 0 < moved("bot_inference_latency_seconds_sum", role="sentiment") < answered
    assert moved("bot_inference_batch_size_count", role="sentiment") == 1
    assert moved("bot_inference_batch_size_sum", role="sentiment") == 1
    assert moved("bot_inference_latency_seconds_count", role="summarization") == 0
    assert value(after, "bot_inference_queue_depth", role="sentiment") == 0
    assert value(after, "bot_inference_rejections_total", role="sentiment") == 0
    # Every shard of the bot has a latency sample.
    assert {
        dict(labels)["shard"] for name, labels in after if name == "bot_gateway_latency_seconds"
    } == {str(shard_id) for shard_id in bot.shards}


async def test_health_follows_the_gateway_and_the_database(
    bots: BotRunner, discord_server: LoopbackDiscord, database_url: str
) -> None:
    bot = await bots.start(metrics_port=0)
    assert bot.monitoring is not None
    port = bot.monitoring.port
    assert await health(port) == (200, {"gateway": True, "database": True})

    [shard] = bot.shards.values()
    await shard.disconnect()
    assert await health(port) == (503, {"gateway": False, "database": True})
    await shard.connect()
    await discord_server.wait_for(lambda: not shard.is_closed(), 10, "the shard to reconnect")
    assert (await health(port))[0] == 200

    # The database file turns into a folder: no new connection can open it.
    path = Path(make_url(database_url).database or "")
    await bot.monitoring.database.dispose()
    await asyncio.to_thread(replace_with_folder, path)
    assert await health(port) == (503, {"gateway": True, "database": False})
    await asyncio.to_thread(shutil.rmtree, path)


def replace_with_folder(path: Path) -> None:
    for leftover in path.parent.glob(path.name + "*"):  # the file, its -wal and -shm
        leftover.unlink()
    path.mkdir()
