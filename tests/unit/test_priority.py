"""Urgent requests (moderation checks) go ahead of bulk work on the same model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Sequence

import pytest

from bot.errors import BusyError
from bot.inference.engine import InferenceEngine
from bot.inference.worker import URGENT, ModelWorker, WorkerLimits
from bot.services.moderation import CheckedMessage, ModerationService
from bot.storage.engine import SessionFactory
from bot.storage.repositories import GuildSettingsStore, ModerationEventStore
from tests.tiny_models import NEGATIVE, POSITIVE


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_moderation_check_finishes_before_a_big_mood_pass_in_flight(
    engine: InferenceEngine, sessions: SessionFactory
) -> None:
    service = ModerationService(
        engine, GuildSettingsStore(sessions), ModerationEventStore(sessions)
    )
    await service.configure(1, moderation_enabled=True)
    worker = engine.worker("sentiment")
    await worker.ensure_loaded()
    texts = [POSITIVE[i % len(POSITIVE)] for i in range(2000)]  # /summarize's mood pass

    mood = asyncio.ensure_future(engine.classify(texts, role="sentiment"))
    await _until(lambda: worker.batches_run >= 1)  # the big pass is running
    _, verdict = await service.check(CheckedMessage(1, 10, 100, 500, NEGATIVE[0]))

    assert not mood.done()  # the check did not wait for the whole pass
    assert verdict is not None and verdict.label == "negative"
    results = await mood
    assert len(results) == len(texts)
    assert [r[0].label for r in results[:3]] == ["POSITIVE"] * 3


async def test_big_requests_in_pieces_give_the_same_labels(engine: InferenceEngine) -> None:
    texts = [(NEGATIVE + POSITIVE)[i % 24] for i in range(150)]

    whole = await engine.classify(texts)
    one_by_one = await asyncio.gather(*(engine.classify([text]) for text in texts[:24]))

    assert [r[0].label for r in whole[:24]] == [r[0][0].label for r in one_by_one]
    assert [r[0].label for r in whole[24:48]] == [r[0].label for r in whole[:24]]


class BlockingTask:
    """Runs one payload per batch, waiting for a gate before the first one."""

    model_id = "blocking"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.order: list[int] = []

    def load(self) -> None:
        pass

    def batch_key(self, payload: int) -> Hashable:
        return None

    def size(self, payload: int) -> int:
        return 1

    def run_batch(self, payloads: Sequence[int]) -> list[int]:
        self.started.set()
        self.gate.wait(10)
        self.order += payloads
        return list(payloads)


async def test_a_full_queue_still_takes_urgent_requests_and_serves_them_first() -> None:
    task = BlockingTask()
    limits = WorkerLimits(max_batch_size=1, max_wait_s=0, queue_limit=2, timeout_s=30)
    worker: ModelWorker[int, int] = ModelWorker("sentiment", task, limits)
    try:
        running = asyncio.ensure_future(worker.submit(1))
        await _until(task.started.is_set)  # taken by the batcher, blocked on the gate
        queued = [asyncio.ensure_future(worker.submit(n)) for n in (2, 3)]
        await asyncio.sleep(0.01)
        with pytest.raises(BusyError):
            await worker.submit(4)  # the queue is full for normal work...
        urgent = asyncio.ensure_future(worker.submit(5, priority=URGENT))  # ...not for this
        await asyncio.sleep(0.01)
        task.gate.set()

        assert await asyncio.gather(running, urgent, *queued) == [1, 5, 2, 3]
        assert task.order == [1, 5, 2, 3]
    finally:
        task.gate.set()
        await worker.aclose()
