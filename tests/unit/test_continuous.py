"""Causal-LM generation on transformers' continuous batching, and the fallback to generate()."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bot.errors import BusyError, InferenceError, InferenceTimeoutError
from bot.inference.chat import ChatMessage, ChatTask
from bot.inference.continuous import ContinuousGenerator
from bot.inference.engine import EngineConfig, InferenceEngine, ModelRole
from bot.inference.worker import WorkerLimits
from tests.conftest import TinyModels
from tests.unit.causal_models import build_endless_llama, build_mamba

QUESTIONS = ["hello there", "what is the plan", "thank you so much", "see you tomorrow"]
LONG_TEXT = " ".join(
    f"Point {i}: the team discussed release {i} and agreed to ship it on day {i}."
    for i in range(40)
)


@pytest.fixture(scope="module")
def endless_model(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_endless_llama(tmp_path_factory.mktemp("endless"), tiny_models.chat)


@pytest.fixture(scope="module")
def rejected_model(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_mamba(tmp_path_factory.mktemp("mamba"), tiny_models.chat)


def make_engine(
    chat: str, *, summarization: str | None = None, mode: str = "auto", **limits: Any
) -> InferenceEngine:
    models: dict[ModelRole, str] = {"chat": chat}
    if summarization is not None:
        models["summarization"] = summarization
    values: dict[str, Any] = {"max_batch_size": 8, "timeout_s": 60} | limits
    return InferenceEngine(
        EngineConfig(
            models=models,
            device="cpu",
            limits=WorkerLimits(**values),
            continuous_batching=mode,  # type: ignore[arg-type]
        )
    )


@pytest.fixture
async def endless(endless_model: str) -> AsyncIterator[InferenceEngine]:
    engine = make_engine(endless_model)
    yield engine
    await engine.aclose()


async def generator_of(engine: InferenceEngine, role: ModelRole = "chat") -> ContinuousGenerator:
    worker = engine.worker(role)
    await worker.ensure_loaded()
    generator = getattr(worker.task, "continuous", None)
    assert isinstance(generator, ContinuousGenerator)
    return generator


def conversation(question: str) -> list[ChatMessage]:
    return [ChatMessage("system", "You are helpful."), ChatMessage("user", question)]


def reference_answers(path: str, prompts: list[list[int]], max_new_tokens: list[int]) -> list[str]:
    """What transformers' own greedy generate() answers, one prompt at a time."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    answers = []
    for prompt, limit in zip(prompts, max_new_tokens, strict=True):
        output = model.generate(
            torch.tensor([prompt]), max_new_tokens=limit, do_sample=False, num_beams=1
        )
        answers.append(tokenizer.decode(output[0, len(prompt) :], skip_special_tokens=True))
    return [answer.strip() for answer in answers]


async def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


class StepCounter:
    """Counts the model's forward passes: each step of the running batch is one."""

    def __init__(self, generator: ContinuousGenerator) -> None:
        self.steps = 0
        self._hook = generator._model.model.register_forward_hook(self._count)

    def _count(self, *_: Any) -> None:  # on the generation thread
        self.steps += 1

    def close(self) -> None:
        self._hook.remove()


# Steps a cancelled request may still take: the one running when it was cancelled, and the one
# the generation thread may have started before it read the cancellation (an uncancelled
# request of these tests would take hundreds more).
STEPS_AFTER_CANCEL = 10


async def idle(generator: ContinuousGenerator, timeout: float = 10) -> bool:
    """Wait until the manager runs and waits for nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processor = generator._manager.batch_processor
        pending = processor is not None and processor.scheduler.has_pending_requests()
        queued = not generator._manager.input_queue.empty()
        if generator.in_flight == 0 and not pending and not queued:
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize("which", ["trained", "endless"])
async def test_greedy_answers_are_those_of_generate_each_with_its_own_length(
    which: str, tiny_models: TinyModels, endless_model: str
) -> None:
    path = tiny_models.chat if which == "trained" else endless_model
    engine = make_engine(path)
    limits = [5, 12, 30, 64]
    worker = engine.worker("chat")
    try:
        generator = await generator_of(engine)
        task = worker.task
        assert isinstance(task, ChatTask)
        prompts = [task.prompt(conversation(q), 64).ids for q in QUESTIONS]
        replies = await asyncio.gather(
            *(
                engine.chat(conversation(q), max_new_tokens=limit)
                for q, limit in zip(QUESTIONS, limits, strict=True)
            )
        )
    finally:
        await engine.aclose()

    assert [r.text for r in replies] == reference_answers(path, prompts, limits)
    assert worker.batches_run == 0  # none went through batched generate()
    assert generator.in_flight == 0


async def test_a_later_request_does_not_wait_for_an_earlier_one(
    endless: InferenceEngine,
) -> None:
    await generator_of(endless)
    finished: dict[str, float] = {}
    first_piece = asyncio.Event()

    async def long_answer() -> None:
        async for _ in endless.chat_stream(conversation("tell me everything"), max_new_tokens=400):
            first_piece.set()
        finished["long"] = time.perf_counter()

    long = asyncio.create_task(long_answer())
    await first_piece.wait()
    asked = time.perf_counter()
    reply = await endless.chat(conversation("quick one"), max_new_tokens=4)
    finished["short"] = time.perf_counter()
    await long

    assert reply.text
    assert finished["short"] < finished["long"]  # it joined the running batch
    assert finished["short"] - asked < (finished["long"] - asked) / 4


async def test_closing_the_stream_cancels_the_request(endless: InferenceEngine) -> None:
    generator = await generator_of(endless)
    counter = StepCounter(generator)
    stream = endless.chat_stream(conversation("tell me everything"), max_new_tokens=400)
    pieces = [await anext(stream), await anext(stream)]

    await stream.aclose()  # the caller went away
    steps_at_close = counter.steps

    assert all(pieces)
    assert await idle(generator, timeout=5)
    assert counter.steps - steps_at_close <= STEPS_AFTER_CANCEL  # it left the running batch
    assert generator._manager.output_router.result_handlers == {}


async def test_cancelled_requests_leave_nothing_behind(endless: InferenceEngine) -> None:
    generator = await generator_of(endless)
    router = generator._manager.output_router
    for _ in range(3):
        streams = [endless.chat_stream(conversation(q), max_new_tokens=400) for q in QUESTIONS]
        for stream in streams:
            await anext(stream)
        for stream in streams:  # each closed while the others keep the batch stepping
            await anext(stream)
            await stream.aclose()
    assert await idle(generator, timeout=5)
    assert (await endless.chat(conversation("next"), max_new_tokens=2)).text

    # No handler and no output nobody will read (the last output of a request cancelled
    # during a step comes after its handler has gone).
    assert router.result_handlers == {}
    assert router.output_queue.empty()


async def test_cancelling_the_caller_cancels_the_request(endless: InferenceEngine) -> None:
    generator = await generator_of(endless)
    counter = StepCounter(generator)

    async def consume() -> None:
        async for _ in endless.chat_stream(conversation("go on"), max_new_tokens=400):
            pass

    caller = asyncio.create_task(consume())
    await wait_until(lambda: counter.steps > 2)  # it is generating
    caller.cancel()

    with pytest.raises(asyncio.CancelledError):
        await caller
    steps_at_cancel = counter.steps
    assert await idle(generator, timeout=5)
    assert counter.steps - steps_at_cancel <= STEPS_AFTER_CANCEL


async def test_a_request_past_its_timeout_is_cancelled(endless_model: str) -> None:
    engine = make_engine(endless_model, timeout_s=0.3)
    try:
        generator = await generator_of(engine)
        counter = StepCounter(generator)
        with pytest.raises(InferenceTimeoutError):
            await engine.chat(conversation("go on and on"), max_new_tokens=400)
        steps_at_timeout = counter.steps
        assert await idle(generator, timeout=5)
        assert counter.steps - steps_at_timeout <= STEPS_AFTER_CANCEL
        reply = await engine.chat(conversation("short"), max_new_tokens=2)  # still serving
    finally:
        await engine.aclose()
    assert reply.text


async def test_too_many_waiting_requests_are_told_to_come_back(endless_model: str) -> None:
    engine = make_engine(endless_model, queue_limit=2)
    try:
        await generator_of(engine)
        streams = [engine.chat_stream(conversation(q), max_new_tokens=400) for q in QUESTIONS[:2]]
        for stream in streams:
            await anext(stream)
        with pytest.raises(BusyError, match="busy"):
            await engine.chat(conversation("me too"), max_new_tokens=4)
        for stream in streams:
            await stream.aclose()
        assert (await engine.chat(conversation("now"), max_new_tokens=2)).text
    finally:
        await engine.aclose()


async def test_shutdown_fails_open_answers_and_stops_the_thread(endless_model: str) -> None:
    engine = make_engine(endless_model)
    generator = await generator_of(engine)

    async def consume() -> int:
        count = 0
        async for _ in engine.chat_stream(conversation("go on"), max_new_tokens=400):
            count += 1
        return count

    caller = asyncio.create_task(consume())
    await wait_until(lambda: generator.in_flight > 0)
    started = time.perf_counter()
    await engine.aclose()
    closed_in = time.perf_counter() - started

    with pytest.raises(InferenceError, match="shutting down"):
        await caller
    assert not generator.is_alive
    assert generator._manager._generation_thread is None  # joined, not left running
    assert closed_in < 15


async def test_setting_off_generates_in_batches(
    tiny_models: TinyModels, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(tiny_models.chat, mode="off")
    caplog.set_level(logging.INFO, logger="bot.inference.continuous")
    worker = engine.worker("chat")
    try:
        await worker.ensure_loaded()
        replies = await asyncio.gather(
            *(engine.chat(conversation(q), max_new_tokens=8) for q in QUESTIONS)
        )
    finally:
        await engine.aclose()

    assert isinstance(worker.task, ChatTask) and worker.task.continuous is None
    assert all(reply.text for reply in replies)
    assert worker.batches_run == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.inference.continuous"]
    assert lines == ["chat: continuous batching is off; using batched generate()"]


async def test_a_model_the_library_rejects_falls_back_with_one_log_line(
    rejected_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(rejected_model)
    caplog.set_level(logging.INFO, logger="bot.inference.continuous")
    worker = engine.worker("chat")
    try:
        reply = await engine.chat(conversation("hello there"), max_new_tokens=6)
        streamed = [p async for p in engine.chat_stream(conversation("hi"), max_new_tokens=6)]
    finally:
        await engine.aclose()

    assert isinstance(worker.task, ChatTask) and worker.task.continuous is None
    assert reply.text and streamed
    assert worker.batches_run == 2
    lines = [r for r in caplog.records if r.name == "bot.inference.continuous"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "continuous batching unavailable" in lines[0].getMessage()
    assert "using batched generate()" in lines[0].getMessage()


async def test_causal_lm_summaries_run_each_part_on_continuous_batching(
    endless_model: str,
) -> None:
    engine = make_engine(endless_model, summarization=endless_model)
    worker = engine.worker("summarization")
    try:
        generator = await generator_of(engine, "summarization")
        added: list[int] = []
        add = generator._manager.add_request

        def counting(*args: Any, **kwargs: Any) -> Any:
            added.append(len(args[0]))
            return add(*args, **kwargs)

        generator._manager.add_request = counting  # type: ignore[method-assign]
        summary = await engine.summarize(LONG_TEXT, min_length=2, max_length=8)
    finally:
        await engine.aclose()

    assert summary.chunks > 1
    assert summary.text
    assert len(added) == summary.chunks + 1  # every part, then the joined parts
    assert worker.batches_run == 0


async def test_a_cancelled_summary_stops_between_parts(endless_model: str) -> None:
    engine = make_engine(endless_model, summarization=endless_model)
    try:
        generator = await generator_of(engine, "summarization")
        added: list[float] = []
        add = generator._manager.add_request

        def counting(*args: Any, **kwargs: Any) -> Any:
            added.append(time.perf_counter())
            return add(*args, **kwargs)

        generator._manager.add_request = counting  # type: ignore[method-assign]
        counter = StepCounter(generator)
        summary = asyncio.create_task(engine.summarize(LONG_TEXT, min_length=2, max_length=400))
        await wait_until(lambda: generator.in_flight > 0 and counter.steps > 2)
        parts = len(added)
        summary.cancel()
        with pytest.raises(asyncio.CancelledError):
            await summary
        steps_at_cancel = counter.steps
        assert await idle(generator, timeout=5)
        await asyncio.sleep(0.3)
    finally:
        await engine.aclose()

    assert parts > 1
    assert len(added) == parts  # nothing started after the caller went away
    assert counter.steps - steps_at_cancel <= STEPS_AFTER_CANCEL  # the running parts stopped
