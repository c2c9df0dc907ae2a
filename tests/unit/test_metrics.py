"""What the model workers, continuous batching and moderation report to Prometheus."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from pathlib import Path

import pytest

from bot.app import run_bot
from bot.errors import BusyError
from bot.inference.chat import ChatMessage
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.worker import ModelWorker, WorkerLimits
from bot.metrics import Metrics
from bot.monitoring import MonitoringServer, MonitoringUnavailable
from bot.services.moderation import CheckedMessage, Decision, ModerationService
from bot.settings import Settings
from bot.storage.engine import SessionFactory, create_engine
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from tests.conftest import TinyModels
from tests.tiny_models import NEGATIVE, POSITIVE
from tests.unit.test_engine import GateTask
from tests.unit.test_layers import imported_modules

BOT = Path(__file__).resolve().parents[2] / "bot"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_worker_reports_queue_depth_batches_latency_and_rejections() -> None:
    metrics = Metrics()
    task = GateTask()
    worker: ModelWorker[int, int] = ModelWorker(
        "sentiment",
        task,
        WorkerLimits(max_batch_size=4, max_wait_s=0, queue_limit=2, timeout_s=30),
        metrics,
    )
    first = asyncio.ensure_future(worker.submit(1))
    await asyncio.sleep(0.05)  # running on the model thread, behind the gate
    queued = [asyncio.ensure_future(worker.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    assert sample(metrics, "bot_inference_queue_depth", role="sentiment") == 2
    with pytest.raises(BusyError):
        await worker.submit(4)
    with pytest.raises(BusyError):
        await worker.submit(5)
    assert sample(metrics, "bot_inference_rejections_total", role="sentiment") == 2

    task.gate.set()
    assert await asyncio.gather(first, *queued) == [10, 20, 30]

    assert sample(metrics, "bot_inference_queue_depth", role="sentiment") == 0
    assert sample(metrics, "bot_inference_batch_size_count", role="sentiment") == 2
    assert sample(metrics, "bot_inference_batch_size_sum", role="sentiment") == 3  # 1, then 2
    assert sample(metrics, "bot_inference_batch_seconds_count", role="sentiment") == 2
    assert sample(metrics, "bot_inference_latency_seconds_count", role="sentiment") == 3
    assert sample(metrics, "bot_inference_latency_seconds_count", role="chat") == 0
    await worker.aclose()


async def test_continuous_generation_reports_first_token_and_speed(
    tiny_models: TinyModels,
) -> None:
    metrics = Metrics()
    engine = InferenceEngine(EngineConfig(models={"chat": tiny_models.chat}, device="cpu"), metrics)
    messages = [ChatMessage("user", "hello there")]
    try:
        pieces = [piece async for piece in engine.chat_stream(messages, max_new_tokens=8)]
        assert getattr(engine.worker("chat").task, "continuous", None) is not None
        assert sample(metrics, "bot_generation_time_to_first_token_seconds_count", role="chat") == 1
        streamed_tokens = sample(metrics, "bot_generation_tokens_total", role="chat")
        assert pieces and 1 <= streamed_tokens <= 8

        await engine.chat(messages, max_new_tokens=8)
    finally:
        await engine.aclose()

    # A whole answer has no first token to time; both requests are timed and counted.
    assert sample(metrics, "bot_generation_time_to_first_token_seconds_count", role="chat") == 1
    assert sample(metrics, "bot_inference_latency_seconds_count", role="chat") == 2
    assert sample(metrics, "bot_generation_tokens_per_second_count", role="chat") == 2
    assert sample(metrics, "bot_generation_tokens_total", role="chat") > streamed_tokens
    assert sample(metrics, "bot_generation_in_flight", role="chat") == 0


def test_gateway_latency_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    latencies = [(1, 0.25), (0, math.nan)]
    metrics.watch_gateway(lambda: latencies)

    assert sample(metrics, "bot_gateway_latency_seconds", shard="1") == 0.25
    assert sample(metrics, "bot_gateway_latency_seconds", shard="0") == math.inf
    latencies[0] = (1, 0.5)
    assert sample(metrics, "bot_gateway_latency_seconds", shard="1") == 0.5


def test_two_bots_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.command_finished("sentiment", "ok", 0.5, 0.1)

    assert sample(first, "bot_commands_total", command="sentiment", outcome="ok") == 1
    assert sample(second, "bot_commands_total", command="sentiment", outcome="ok") == 0
    body, content_type = first.exposition()
    assert b'bot_commands_total{command="sentiment",outcome="ok"} 1.0' in body
    assert content_type.startswith("text/plain")


@pytest.mark.parametrize("module", ["metrics.py", "monitoring.py", "services", "inference"])
def test_metrics_and_services_never_import_discord(module: str) -> None:
    paths = sorted((BOT / module).glob("*.py")) if (BOT / module).is_dir() else [BOT / module]
    for path in paths:
        assert not any(name.split(".")[0] == "discord" for name in imported_modules(path)), path


async def test_a_metrics_port_in_use_stops_the_start_with_one_line(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        database = create_engine(database_url)
        server = MonitoringServer(
            Metrics(), gateway_connected=lambda: True, database=database, port=port
        )
        with pytest.raises(MonitoringUnavailable, match=f"127.0.0.1:{port}"):
            await server.start()
        await database.dispose()

        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            discord_token="token",
            database_url=database_url,
            discord_api_base="http://127.0.0.1:9/api/v10",
            metrics_port=port,
        )
        with caplog.at_level(logging.ERROR, logger="bot.app"):
            assert await run_bot(settings) == 1
    [record] = [r for r in caplog.records if r.name == "bot.app"]
    assert record.getMessage() == (
        f"cannot serve metrics on 127.0.0.1:{port}: Address already in use "
        "(METRICS_HOST, METRICS_PORT)"
    )


async def test_moderation_counts_checks_flags_actions_and_decisions(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    metrics = Metrics()
    service = ModerationService(
        engine, GuildSettingsStore(sessions), ModerationEventStore(sessions), metrics=metrics
    )
    unchecked = await service.check(CheckedMessage(1, 10, 99, 500, NEGATIVE[0]))
    settings = await service.configure(1, moderation_enabled=True, action="delete", threshold=0.8)
    checks = [
        service.check(CheckedMessage(1, 10, message_id, 500, text))
        for message_id, text in enumerate([NEGATIVE[0], NEGATIVE[1], POSITIVE[0]])
    ]
    verdicts = [verdict for _, verdict in await asyncio.gather(*checks)]
    first = verdicts[0]
    assert unchecked[1] is None and first is not None
    event = await service.record(first, settings)
    await service.action_done(event.id, False, "delete")
    await service.decide(event.id, Decision.TIMEOUT, 900)

    assert sample(metrics, "bot_moderation_checks_total") == 3  # not while it was off
    assert sample(metrics, "bot_moderation_flags_total", label="negative") == 2
    assert sample(metrics, "bot_moderation_actions_total", action="delete", outcome="failed") == 1
    assert sample(metrics, "bot_moderation_actions_total", action="delete", outcome="ok") == 0
    assert sample(metrics, "bot_moderation_decisions_total", decision="timeout") == 1
