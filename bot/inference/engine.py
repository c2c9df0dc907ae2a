"""The async face of inference: services await these methods; models run on their own threads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bot.errors import InvalidInputError
from bot.inference.chat import ChatMessage, ChatReply, ChatRequest, ChatTask
from bot.inference.classify import ClassifyRequest, LabelScore, TextClassificationTask
from bot.inference.continuous import ContinuousGenerator, ContinuousLimits
from bot.inference.device import DevicePlan, resolve_device
from bot.inference.footprint import (
    describe_bytes,
    estimate_load_s,
    footprint,
    measured_load_rate,
)
from bot.inference.loading import ModelSource
from bot.inference.remote import RemoteEndpoint, RemoteGenerator
from bot.inference.summarize import SummarizationTask, SummarizeRequest, Summary
from bot.inference.worker import NORMAL, ModelTask, ModelWorker, WorkerLimits
from bot.metrics import Metrics
from bot.settings import Settings

log = logging.getLogger(__name__)

ModelRole = Literal["sentiment", "emotion", "moderation", "summarization", "chat"]
ClassifierRole = Literal["sentiment", "emotion", "moderation"]
TaskFactory = Callable[[ModelSource, DevicePlan, "EngineConfig"], ModelTask[Any, Any]]

# Task name -> implementation; a model role names the task it runs.
TASKS: dict[str, TaskFactory] = {
    "text-classification": lambda source, plan, config: TextClassificationTask(
        source, plan, config.limits.max_batch_size
    ),
    "summarization": lambda source, plan, config: SummarizationTask(
        source, plan, config.limits.max_batch_size, config.continuous_limits
    ),
    "chat": lambda source, plan, config: ChatTask(source, plan, config.continuous_limits),
}
# The models WARMUP=true loads at start (the emotion model stays on first use).
WARMUP_ROLES: tuple[ModelRole, ...] = ("sentiment", "summarization", "chat")
# Model batches one worker run may take (the task splits them into model batches). A classifier
# run takes what is waiting (16 batches is the default queue limit), sorted by length: sorting
# a whole burst wastes less on padding than sorting it in slices.
ROUND_BATCHES = {"text-classification": 16, "summarization": 1, "chat": 1}

ROLE_TASKS: dict[ModelRole, str] = {
    "sentiment": "text-classification",
    "emotion": "text-classification",
    "moderation": "text-classification",
    "summarization": "summarization",
    "chat": "chat",
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Which model each role uses, where they run, and the worker limits."""

    models: dict[ModelRole, str]
    device: str = "auto"
    quantization: str = "none"
    limits: WorkerLimits = field(default_factory=WorkerLimits)
    # "auto": causal LMs generate on transformers' continuous batching where it runs;
    # "off": every model generates in batched generate() calls.
    continuous_batching: Literal["auto", "off"] = "auto"
    # Roles answered by a serving engine instead of in-process (chat and summarization).
    remote: dict[ModelRole, RemoteEndpoint] = field(default_factory=dict)

    @property
    def continuous_limits(self) -> ContinuousLimits | None:
        """Limits for continuous batching, or None when it is switched off."""
        if self.continuous_batching == "off":
            return None
        return ContinuousLimits(
            max_requests=self.limits.max_batch_size,
            queue_limit=self.limits.queue_limit,
            timeout_s=self.limits.timeout_s,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        """The engine part of the bot's settings."""
        return cls(
            models={
                "sentiment": settings.sentiment_model,
                "emotion": settings.emotion_model,
                "moderation": settings.moderation_model,
                "summarization": settings.summarization_model,
                "chat": settings.chat_model,
            },
            device=settings.device,
            quantization=settings.quantization,
            limits=WorkerLimits(
                max_batch_size=settings.inference_max_batch_size,
                max_wait_s=settings.inference_max_wait_ms / 1000,
                queue_limit=settings.inference_queue_limit,
                timeout_s=settings.inference_timeout_s,
            ),
            continuous_batching=settings.continuous_batching,
            remote=remote_endpoints(settings),
        )


def remote_endpoints(settings: Settings) -> dict[ModelRole, RemoteEndpoint]:
    """The roles with an API base, each with its model id on that server."""
    key = settings.inference_api_key.get_secret_value() if settings.inference_api_key else None
    bases: dict[ModelRole, tuple[str | None, str]] = {
        "chat": (settings.chat_api_base, settings.chat_model),
        "summarization": (settings.summarization_api_base, settings.summarization_model),
    }
    return {
        role: RemoteEndpoint(
            api_base=base,
            model=model,
            api_key=key,
            timeout_s=settings.inference_timeout_s,
            max_concurrent=settings.inference_max_batch_size,
            queue_limit=settings.inference_queue_limit,
        )
        for role, (base, model) in bases.items()
        if base is not None
    }


class InferenceEngine:
    """Loads each model on first use and runs it on its own worker."""

    def __init__(self, config: EngineConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self._plan: DevicePlan | None = None
        self._workers: dict[ModelRole, ModelWorker[Any, Any]] = {}
        self._remote = {
            role: RemoteGenerator(role, endpoint, self.metrics.role(role))
            for role, endpoint in config.remote.items()
        }

    @property
    def plan(self) -> DevicePlan:
        """The device plan, decided (and logged) once."""
        if self._plan is None:
            self._plan = resolve_device(self.config.device, self.config.quantization)
        return self._plan

    def worker(self, role: ModelRole) -> ModelWorker[Any, Any]:
        """The worker of a model role, created on first use (the model loads on first batch)."""
        if role not in self._workers:
            source = ModelSource.parse(self.config.models[role])
            kind = ROLE_TASKS[role]
            task = TASKS[kind](source, self.plan, self.config)
            limits = self.config.limits
            # A classifier takes several model batches per run, to sort them by length.
            limits = replace(limits, max_batch_size=limits.max_batch_size * ROUND_BATCHES[kind])
            self._workers[role] = ModelWorker(role, task, limits, self.metrics)
        return self._workers[role]

    def is_loaded(self, role: ModelRole) -> bool:
        """Whether the role's model is loaded (asking never starts a load)."""
        if role in self._remote:
            return True  # served elsewhere: nothing to load here
        worker = self._workers.get(role)
        return worker is not None and worker.is_loaded

    def estimated_load_s(self, role: ModelRole) -> float:
        """About how long until the role's model is loaded, download included.

        A guess from the size of its weights, at the load rate measured in this process
        when another model of the same format has loaded, less the time already spent.
        """
        found = footprint(self.config.models[role])
        rate = None
        for other, worker in self._workers.items():
            loaded = footprint(self.config.models[other])
            if worker.load_seconds and loaded.weights_format == found.weights_format:
                rate = measured_load_rate(loaded, worker.load_seconds) or rate
        estimate = estimate_load_s(found, rate)
        loading = self._workers.get(role)
        if loading is not None and loading.loading_since is not None:
            estimate -= time.monotonic() - loading.loading_since
        return max(1.0, estimate)

    async def ensure_loaded(self, role: ModelRole) -> None:
        """Load the role's model now if it is not loaded (raises ModelUnavailableError)."""
        if role in self._remote:
            return
        await self.worker(role).ensure_loaded()

    async def warmup(self, roles: Sequence[ModelRole] = WARMUP_ROLES) -> None:
        """Load models now instead of on the first request; failures are logged, not raised."""
        await asyncio.gather(
            *(self._warm(role) for role in roles if role not in self._remote),
            *(self._remote[role].counter() for role in roles if role in self._remote),
        )

    async def _warm(self, role: ModelRole) -> None:
        found = await asyncio.to_thread(footprint, self.config.models[role])
        fetch = ""
        if not found.on_disk:
            size = describe_bytes(found.size_bytes) if found.size_bytes else "size unknown"
            fetch = f", downloading it first ({size})"
        log.info("warm-up: loading the %s model %s%s", role, found.model, fetch)
        started = time.perf_counter()
        try:
            await self.ensure_loaded(role)
        except Exception as error:
            log.warning(
                "warm-up: the %s model failed after %.1f s: %s",
                role,
                time.perf_counter() - started,
                error,
            )
        else:
            log.info("warm-up: the %s model is ready (%.1f s)", role, time.perf_counter() - started)

    async def classify(
        self,
        texts: Sequence[str],
        *,
        role: ClassifierRole = "sentiment",
        top_k: int | None = 1,
        priority: int = NORMAL,
    ) -> list[list[LabelScore]]:
        """Labels with scores, best first, for each text (``top_k=None``: every label).

        A lower ``priority`` number is served first (see ``bot.inference.worker.URGENT``).
        """
        _require_text(texts)
        worker = self.worker(role)
        # Many texts go in pieces of one worker round each, so that urgent requests
        # arriving meanwhile are served between two pieces instead of after all of them.
        step = worker.limits.max_batch_size
        pieces = [
            asyncio.ensure_future(
                worker.submit(ClassifyRequest(tuple(texts[start : start + step]), top_k), priority)
            )
            for start in range(0, len(texts), step)
        ]
        try:
            results: list[list[list[LabelScore]]] = await asyncio.gather(*pieces)
        except BaseException:
            for piece in pieces:  # the other pieces are not needed any more
                piece.cancel()
            raise
        return [labels for result in results for labels in result]

    async def summarize(self, text: str, *, min_length: int = 30, max_length: int = 130) -> Summary:
        """A summary of ``text``; long texts are summarised in parts and then as a whole."""
        _require_text([text])
        if not 0 <= min_length <= max_length:
            raise InvalidInputError("The minimum length must be between 0 and the maximum length.")
        if remote := self._remote.get("summarization"):
            return await remote.summarize(text, max_length)
        request = SummarizeRequest(text, min_length, max_length)
        worker = self.worker("summarization")
        generator = await self._continuous(worker)
        if generator is not None:
            task: SummarizationTask = worker.task  # type: ignore[assignment]
            return await task.summarize_continuously(generator, request, worker.call)
        try:
            result: Summary = await worker.submit(request)
        finally:
            request.cancelled.set()  # if it is still running: nobody waits for the rest
        return result

    async def chat(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int = 256
    ) -> ChatReply:
        """The assistant's answer to a conversation."""
        if remote := self._remote.get("chat"):
            return await remote.chat(messages, max_new_tokens)
        worker = self.worker("chat")
        generator = await self._continuous(worker)
        if generator is not None:
            task: ChatTask = worker.task  # type: ignore[assignment]
            prompt = await worker.call(task.prompt, tuple(messages), max_new_tokens)
            text = await generator.complete(prompt.ids, max_new_tokens)
            return ChatReply(text, len(prompt.ids), prompt.turns_used)
        request = ChatRequest(tuple(messages), max_new_tokens)
        try:
            result: ChatReply = await worker.submit(request)
        finally:
            request.cancelled.set()
        return result

    async def chat_stream(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int = 256
    ) -> AsyncGenerator[str, None]:
        """The answer as it is generated, in pieces.

        Closing the iterator (the caller went away, timed out or was cancelled) stops the
        generation at its next token.
        """
        if remote := self._remote.get("chat"):
            async with contextlib.aclosing(remote.stream(messages, max_new_tokens)) as pieces:
                async for piece in pieces:
                    yield piece
            return
        worker = self.worker("chat")
        generator = await self._continuous(worker)
        if generator is not None:
            task: ChatTask = worker.task  # type: ignore[assignment]
            prompt = await worker.call(task.prompt, tuple(messages), max_new_tokens)
            async for piece in generator.stream(prompt.ids, max_new_tokens):
                yield piece
            return
        async for piece in self._batched_chat_stream(messages, max_new_tokens):
            yield piece

    async def _batched_chat_stream(
        self, messages: Sequence[ChatMessage], max_new_tokens: int
    ) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        def sink(text: str) -> None:  # on the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(pieces.put_nowait, text)

        request = ChatRequest(tuple(messages), max_new_tokens, sink)
        reply = asyncio.ensure_future(self.worker("chat").submit(request))
        started, first_piece = time.perf_counter(), True
        try:
            while not reply.done() or not pieces.empty():
                getter = asyncio.ensure_future(pieces.get())
                await asyncio.wait({getter, reply}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    if first_piece:
                        first_piece = False
                        elapsed = time.perf_counter() - started
                        self.metrics.role("chat").time_to_first_token.observe(elapsed)
                    yield getter.result()
                else:
                    getter.cancel()
            reply.result()  # raise the worker's error, if any
        finally:
            request.cancelled.set()
            reply.cancel()

    async def _continuous(self, worker: ModelWorker[Any, Any]) -> ContinuousGenerator | None:
        """The worker's continuous-batching generator, loading the model first; None: batched."""
        await worker.ensure_loaded()
        generator: ContinuousGenerator | None = getattr(worker.task, "continuous", None)
        if generator is not None and not generator.is_alive:
            log.error("%s: continuous batching stopped; using batched generate()", worker.role)
            worker.task.continuous = None  # type: ignore[attr-defined]
            return None
        if generator is not None:
            generator.metrics = self.metrics.role(worker.role)
        return generator

    async def chat_window(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int = 256
    ) -> int:
        """How many of the non-system messages (the newest) fit the chat model's window with
        room for the answer, as ``chat`` would choose them (raises InvalidInputError if none)."""
        if remote := self._remote.get("chat"):
            return (await remote.prompt(messages, max_new_tokens)).turns_used
        worker = self.worker("chat")
        task: ChatTask = worker.task  # type: ignore[assignment]
        prompt = await worker.call(task.prompt, tuple(messages), max_new_tokens)
        return prompt.turns_used

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts in the chat model's tokenizer (on the chat worker's thread)."""
        if remote := self._remote.get("chat"):
            return await remote.count_tokens(texts)
        worker = self.worker("chat")
        task: ChatTask = worker.task  # type: ignore[assignment]
        return await worker.call(task.count_tokens, list(texts))

    async def aclose(self) -> None:
        """Stop every worker and generation thread; each waits a bounded time."""
        generators = [getattr(w.task, "continuous", None) for w in self._workers.values()]
        await asyncio.gather(*(g.aclose() for g in generators if g is not None))
        await asyncio.gather(*(worker.aclose() for worker in self._workers.values()))
        self._workers.clear()
        await asyncio.gather(*(remote.aclose() for remote in self._remote.values()))


def _require_text(texts: Sequence[str]) -> None:
    if not texts or any(not text or not text.strip() for text in texts):
        raise InvalidInputError("There is no text to work on.")
