from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import pytest
import torch
from transformers import pipeline

from bot.errors import (
    BusyError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelUnavailableError,
)
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.worker import ModelWorker, WorkerLimits
from tests.conftest import TinyModels

TEXTS = ["i love this", "i hate this", "you are awesome", "shut up you idiot", "see you tomorrow"]


async def test_classify_matches_the_transformers_pipeline(
    engine: InferenceEngine, tiny_models: TinyModels
) -> None:
    reference = pipeline("text-classification", model=tiny_models.sentiment)(TEXTS)

    results = await engine.classify(TEXTS)

    assert [r[0].label for r in results] == [r["label"] for r in reference]
    for result, expected in zip(results, reference, strict=True):
        assert result[0].score == pytest.approx(expected["score"], abs=1e-5)
    assert [r[0].label for r in results[:4]] == ["POSITIVE", "NEGATIVE", "POSITIVE", "NEGATIVE"]


async def test_multi_label_returns_every_label_like_the_pipeline(
    engine: InferenceEngine, tiny_models: TinyModels
) -> None:
    reference = pipeline("text-classification", model=tiny_models.emotion)(
        ["i hate this you idiot"], top_k=None
    )[0]

    [labels] = await engine.classify(["i hate this you idiot"], role="emotion", top_k=None)

    assert [(x.label, round(x.score, 5)) for x in labels] == [
        (x["label"], round(x["score"], 5)) for x in reference
    ]
    assert labels[0].label == "anger"


async def test_concurrent_requests_share_one_batch_on_the_model_thread(
    engine: InferenceEngine,
) -> None:
    worker = engine.worker("sentiment")
    threads: list[str] = []
    original = worker.task.run_batch

    def spy(payloads: Sequence[object]) -> list[object]:
        threads.append(threading.current_thread().name)
        return list(original(payloads))

    worker.task.run_batch = spy  # type: ignore[method-assign]
    results = await asyncio.gather(*(engine.classify([text]) for text in TEXTS))

    assert [r[0][0].label for r in results[:2]] == ["POSITIVE", "NEGATIVE"]
    assert worker.batches_run == 1
    assert threads == [threads[0]] and threads[0].startswith("model-sentiment")
    assert threads[0] != threading.current_thread().name


async def test_empty_text_is_refused(engine: InferenceEngine) -> None:
    with pytest.raises(InvalidInputError, match="no text"):
        await engine.classify(["   "])


async def test_a_model_that_fails_to_load_is_reported_and_others_keep_working(
    tiny_models: TinyModels,
) -> None:
    models = tiny_models.as_roles() | {"emotion": "/nonexistent/model-folder"}
    engine = InferenceEngine(EngineConfig(models=models, device="cpu"))
    try:
        with pytest.raises(ModelUnavailableError) as failure:
            await engine.classify(["i love this"], role="emotion", top_k=None)
        assert "emotion model isn't available" in failure.value.message
        assert "does not exist" in failure.value.message
        # Fails fast afterwards, without retrying the load on every request.
        with pytest.raises(ModelUnavailableError):
            await engine.classify(["hello"], role="emotion")
        assert (await engine.classify(["i love this"]))[0][0].label == "POSITIVE"
    finally:
        await engine.aclose()


async def test_missing_gguf_file_is_a_load_error(tiny_models: TinyModels) -> None:
    models = tiny_models.as_roles() | {"chat": "/nowhere/model.gguf"}
    engine = InferenceEngine(EngineConfig(models=models, device="cpu"))
    try:
        with pytest.raises(ModelUnavailableError, match="GGUF file"):
            await engine.worker("chat").ensure_loaded()
    finally:
        await engine.aclose()


# --- worker mechanics with a controllable task ---------------------------------------


@dataclass
class GateTask:
    """A task that blocks until released, and can simulate CUDA out-of-memory."""

    model_id: str = "gate"
    oom_above: int | None = None
    always_oom: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        self.gate = threading.Event()
        self.batches: list[list[int]] = []

    def load(self) -> None:
        pass

    def batch_key(self, payload: int) -> Hashable:
        return None

    def size(self, payload: int) -> int:
        return 1

    def run_batch(self, payloads: Sequence[int]) -> list[int | BaseException]:
        self.gate.wait(10)
        self.batches.append(list(payloads))
        if self.oom_above is not None and len(payloads) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("simulated")
        if any(p in self.always_oom for p in payloads):
            raise torch.cuda.OutOfMemoryError("simulated")
        return [p * 10 for p in payloads]


async def test_full_queue_answers_busy_with_a_retry_time() -> None:
    task = GateTask()
    worker: ModelWorker[int, int] = ModelWorker(
        "test", task, WorkerLimits(max_batch_size=1, max_wait_s=0, queue_limit=2, timeout_s=30)
    )
    first = asyncio.ensure_future(worker.submit(1))
    await asyncio.sleep(0.05)  # first is running, the queue is empty again
    queued = [asyncio.ensure_future(worker.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(BusyError) as busy:
        await worker.submit(4)
    assert "busy" in busy.value.message and busy.value.retry_after_s > 0
    task.gate.set()
    assert await first == 10
    assert await asyncio.gather(*queued) == [20, 30]
    await worker.aclose()


async def test_request_timeout_fails_only_that_request() -> None:
    task = GateTask()
    worker: ModelWorker[int, int] = ModelWorker(
        "test", task, WorkerLimits(max_batch_size=4, max_wait_s=0, timeout_s=0.2)
    )
    with pytest.raises(InferenceTimeoutError, match=r"longer than 0\.2 s"):
        await worker.submit(1)
    task.gate.set()
    assert await worker.submit(2) == 20
    await worker.aclose()


async def test_shutdown_fails_the_running_batch_instead_of_leaving_it_waiting() -> None:
    task = GateTask()
    worker: ModelWorker[int, int] = ModelWorker(
        "test", task, WorkerLimits(max_batch_size=1, max_wait_s=0, timeout_s=30)
    )
    running = asyncio.ensure_future(worker.submit(1))
    await asyncio.sleep(0.05)  # on the model thread, blocked on the gate
    closing = asyncio.ensure_future(worker.aclose())

    with pytest.raises(InferenceError, match="shutting down"):
        await asyncio.wait_for(running, 5)
    task.gate.set()
    await closing


async def test_out_of_memory_splits_the_batch_and_retries_once() -> None:
    task = GateTask(oom_above=2)
    task.gate.set()
    worker: ModelWorker[int, int] = ModelWorker(
        "test", task, WorkerLimits(max_batch_size=4, max_wait_s=0.05)
    )

    results = await asyncio.gather(*(worker.submit(n) for n in (1, 2, 3, 4)))

    assert results == [10, 20, 30, 40]
    assert task.batches == [[1, 2, 3, 4], [1, 2], [3, 4]]
    await worker.aclose()


async def test_out_of_memory_twice_fails_only_that_half() -> None:
    task = GateTask(always_oom=frozenset({3}))
    task.gate.set()
    worker: ModelWorker[int, int] = ModelWorker(
        "test", task, WorkerLimits(max_batch_size=4, max_wait_s=0.05)
    )

    results = await asyncio.gather(
        *(worker.submit(n) for n in (1, 2, 3, 4)), return_exceptions=True
    )

    assert results[:2] == [10, 20]
    assert all(isinstance(r, InferenceError) for r in results[2:])
    assert "out of memory" in str(results[2])
    assert await worker.submit(5) == 50  # the worker lives on
    await worker.aclose()


async def test_a_loaded_model_is_kept_out_of_later_garbage_collections(
    tiny_models: TinyModels,
) -> None:
    # Every full collection walked the loaded model's objects (some 400,000 with a real one)
    # holding the GIL: the event loop stalled 100-450 ms at a time under traffic.
    engine = InferenceEngine(EngineConfig(models=tiny_models.as_roles(), device="cpu"))
    try:
        frozen_before = gc.get_freeze_count()
        await engine.worker("sentiment").ensure_loaded()
        assert gc.get_freeze_count() > frozen_before
    finally:
        await engine.aclose()
