"""One worker per model: a bounded queue, micro-batches, one thread that owns the model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch

from bot.errors import BusyError, InferenceError, InferenceTimeoutError, ModelUnavailableError
from bot.inference.fairness import PriorityFairQueue, current_tenant, current_watch
from bot.inference.loading import ModelLoadError, failure_reason, settle_heap
from bot.metrics import Metrics

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")
P_contra = TypeVar("P_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

# After a failed load, wait this long before trying again on the next request.
LOAD_RETRY_AFTER_S = 60.0
# At shutdown, how long the batch being run may take to finish.
SHUTDOWN_WAIT_S = 10.0

# Request priorities: a lower number runs first; equal ones keep their arrival order.
URGENT = -1  # e.g. moderation checks, which must never wait behind bulk work
NORMAL = 0


class ModelTask(Protocol[P_contra, R_co]):
    """What a worker runs. Every method is called on the worker's own thread."""

    model_id: str

    def load(self) -> None:
        """Load tokenizer and weights (raises ModelLoadError)."""

    def batch_key(self, payload: P_contra) -> Hashable:
        """Payloads with equal keys may share one batch."""

    def size(self, payload: P_contra) -> int:
        """How many batch slots a payload takes."""

    def run_batch(self, payloads: Sequence[P_contra]) -> Sequence[R_co | BaseException]:
        """One result (or error) per payload, in order."""


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """Batching and back-pressure settings of a worker."""

    max_batch_size: int = 16  # batch slots one run of the task takes
    max_wait_s: float = 0.005
    queue_limit: int = 256
    timeout_s: float = 120.0


@dataclass(slots=True)
class _Request(Generic[P, R]):
    payload: P
    key: Hashable
    size: int
    future: asyncio.Future[R]
    priority: int = NORMAL
    enqueued_at: float = field(default_factory=time.perf_counter)


class ModelWorker(Generic[P, R]):
    """Feeds one model's task batches of requests from a bounded asyncio queue."""

    def __init__(
        self,
        role: str,
        task: ModelTask[P, R],
        limits: WorkerLimits,
        metrics: Metrics | None = None,
    ) -> None:
        self.role = role
        self.task = task
        self.limits = limits
        self.metrics = (metrics or Metrics()).role(role)
        # Lower priority numbers first, guilds round-robin; the limit is enforced in submit().
        self._queue: PriorityFairQueue[_Request[P, R]] = PriorityFairQueue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{role}")
        self._loaded = False
        self._load_error: ModelLoadError | None = None
        self._load_failed_at = 0.0
        self._seconds_per_batch = 1.0
        self._runner: asyncio.Task[None] | None = None
        self._running: list[_Request[P, R]] = []  # the group on the model thread now
        self.batches_run = 0
        self.loading_since: float | None = None  # time.monotonic() of the load under way
        self.load_seconds: float | None = None  # how long the successful load took

    @property
    def is_loaded(self) -> bool:
        return self._loaded

    async def submit(self, payload: P, priority: int = NORMAL) -> R:
        """Queue one payload and wait for its result (raises a UserFacingError on failure).

        Requests of a lower ``priority`` number are batched first.
        """
        self._raise_if_recently_failed()
        self._ensure_running()
        if not self._has_room(priority):
            self.metrics.rejections.inc()
            raise BusyError(self.role, self._estimated_wait_s())
        loop = asyncio.get_running_loop()
        request: _Request[P, R] = _Request(
            payload,
            self.task.batch_key(payload),
            self.task.size(payload),
            loop.create_future(),
            priority,
        )
        ticket = self._queue.put_nowait(request, priority, current_tenant())
        self.metrics.queue_depth.set(self._queue.qsize())
        watch = current_watch()
        if watch is not None:
            watch.probe = lambda: self._place(self._queue.position(ticket, priority))
        try:
            result = await asyncio.wait_for(request.future, self.limits.timeout_s)
        except TimeoutError:
            # The cancelled future tells the batcher to skip it if it has not started.
            raise InferenceTimeoutError(self.role, self.limits.timeout_s) from None
        finally:
            if watch is not None:
                watch.probe = None
        self.metrics.latency.observe(time.perf_counter() - request.enqueued_at)
        return result

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` on the worker's thread, between batches (e.g. token counting)."""
        await self.ensure_loaded()
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def ensure_loaded(self) -> None:
        """Load the model now if it is not loaded (warm-up)."""
        if self._loaded:
            return
        self._raise_if_recently_failed()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_once)
        if self._load_error is not None:
            raise self._unavailable(self._load_error)

    async def aclose(self) -> None:
        """Stop batching and fail what is queued or running (its callers stop waiting)."""
        pending = list(self._running)  # before cancelling the batcher, which forgets it
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        self._fail(pending, InferenceError("The bot is shutting down."))
        self.metrics.queue_depth.set(0)
        # Let the batch on the thread finish (briefly), so no model work outlives the loop.
        finishing = asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finishing, SHUTDOWN_WAIT_S)

    def _ensure_running(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"batcher-{self.role}"
            )

    def _raise_if_recently_failed(self) -> None:
        error = self._load_error
        if error is not None and time.monotonic() - self._load_failed_at < LOAD_RETRY_AFTER_S:
            raise self._unavailable(error)

    def _unavailable(self, error: ModelLoadError) -> ModelUnavailableError:
        return ModelUnavailableError(self.role, error.model_id, error.reason)

    def _has_room(self, priority: int) -> bool:
        limit = self.limits.queue_limit
        if priority < NORMAL:  # urgent work has room of its own: a full queue still takes it
            limit += max(1, limit // 4)
        return self._queue.qsize() < limit

    def _place(self, place: int) -> tuple[int, float] | None:
        if place == 0:
            return None  # batched or running
        batches_ahead = math.ceil(place / self.limits.max_batch_size)
        running = 1 if self._running else 0
        return place, (batches_ahead + running) * self._seconds_per_batch

    def _estimated_wait_s(self) -> float:
        batches_ahead = self._queue.qsize() / self.limits.max_batch_size + 1
        return batches_ahead * self._seconds_per_batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect_batch()
            try:
                await self._execute(batch)
            except Exception:  # the batcher must outlive any single batch
                log.exception("%s worker: batch failed", self.role)
                self._fail(batch, InferenceError("The model failed on this request."))

    async def _collect_batch(self) -> list[_Request[P, R]]:
        first = await self._queue.get()
        batch, slots = [first], first.size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.max_wait_s
        while slots < self.limits.max_batch_size:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                request = self._queue.get_nowait()
            batch.append(request)
            slots += request.size
        self.metrics.queue_depth.set(self._queue.qsize())
        return batch

    async def _execute(self, batch: list[_Request[P, R]]) -> None:
        groups: dict[Hashable, list[_Request[P, R]]] = {}
        for request in batch:
            if not request.future.done():  # timed out or cancelled while queued
                groups.setdefault(request.key, []).append(request)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            started = time.perf_counter()
            payloads = [request.payload for request in group]
            self._running = group
            try:
                results = await loop.run_in_executor(self._executor, self._run_in_thread, payloads)
            finally:
                self._running = []
            elapsed = time.perf_counter() - started
            self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * elapsed
            self.batches_run += 1
            self.metrics.batch_size.observe(sum(request.size for request in group))
            self.metrics.batch_seconds.observe(elapsed)
            for request, result in zip(group, results, strict=True):
                if request.future.done():
                    continue
                if isinstance(result, BaseException):
                    request.future.set_exception(result)
                else:
                    request.future.set_result(result)

    def _fail(self, batch: list[_Request[P, R]], error: Exception) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(error)

    # --- on the worker thread -------------------------------------------------------

    def _load_once(self) -> None:
        if self._loaded:
            return
        self.loading_since = started = time.monotonic()
        try:
            self.task.load()
        except ModelLoadError as error:
            log.error("%s model failed to load: %s", self.role, error)
            self._load_error, self._load_failed_at = error, time.monotonic()
        except Exception as error:  # anything else from transformers is a load failure too
            log.exception("%s model failed to load", self.role)
            wrapped = ModelLoadError(self.task.model_id, failure_reason(error))
            self._load_error, self._load_failed_at = wrapped, time.monotonic()
        else:
            settle_heap()  # once per load, here, instead of in every later full collection
            self._loaded, self._load_error = True, None
            self.load_seconds = time.monotonic() - started
            log.info("%s model ready in %.1f s", self.role, self.load_seconds)
        finally:
            self.loading_since = None

    def _run_in_thread(self, payloads: list[P]) -> list[R | BaseException]:
        self._load_once()
        if self._load_error is not None:
            return [self._unavailable(self._load_error)] * len(payloads)
        return self._run_guarded(payloads, retry_on_oom=True)

    def _run_guarded(self, payloads: list[P], *, retry_on_oom: bool) -> list[R | BaseException]:
        try:
            with torch.inference_mode():
                return list(self.task.run_batch(payloads))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            log.warning("%s: CUDA out of memory on a batch of %d", self.role, len(payloads))
            if not retry_on_oom:
                error = InferenceError("The GPU ran out of memory on this request.")
                return [error] * len(payloads)
            half = max(1, len(payloads) // 2)
            return self._run_guarded(payloads[:half], retry_on_oom=False) + (
                self._run_guarded(payloads[half:], retry_on_oom=False) if payloads[half:] else []
            )
        except Exception:
            log.exception("%s: model error on a batch of %d", self.role, len(payloads))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return [InferenceError("The model failed on this request.")] * len(payloads)
