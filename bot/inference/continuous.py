"""Causal-LM generation on transformers' continuous batching: a request joins at the next step.

transformers' ``ContinuousBatchingManager`` (the engine behind ``transformers serve
--continuous-batching``) runs the model on its own thread over a paged KV cache. Every step it
decodes one token for each running request and fills the rest of its token budget with the
prompts of requests that arrived since; a request leaves the batch as soon as it finishes. So a
member who asks later starts getting an answer within a step or two instead of waiting for an
earlier batch to finish, and every request carries its own ``max_new_tokens``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import math
import queue
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bot.errors import BusyError, InferenceError, InferenceTimeoutError
from bot.inference.fairness import FairGate, current_tenant
from bot.inference.generation import GenerativeModel, stop_token_ids
from bot.metrics import Metrics, RoleMetrics

log = logging.getLogger(__name__)

# KV-cache geometry. The library sizes the cache from free memory unless told a number of
# blocks; on a CPU that is most of the RAM (about 10 GiB, and a 20 s first request). We size
# it from the model's window and our own limits instead.
PAGE_TOKENS = 64  # tokens per cache page; prefixes are shared in whole pages
TOKENS_PER_REQUEST = 1024  # prompt + answer planned per concurrent request
# Prompt tokens one step may read besides decoding (a longer prompt is read over several steps,
# so running answers never stall for long behind a newcomer's prompt).
STEP_TOKENS = {"cpu": 256, "cuda": 2048}
# How long start-up may wait for its check request, and shutdown for the generation thread.
START_CHECK_S = 120.0
STOP_WAIT_S = 10.0
_CHECK_TOKENS = 4


def _route_library_log() -> None:
    """The library's own logger prints INFO chatter to stderr; send WARNING up to ours instead."""
    library_log = logging.getLogger("ContinuousBatchingLogger")
    library_log.setLevel(logging.WARNING)
    for handler in list(library_log.handlers):
        library_log.removeHandler(handler)
    library_log.propagate = True


class ContinuousBatchingUnavailable(RuntimeError):
    """This model or device cannot run on continuous batching (the caller falls back)."""


@dataclass(frozen=True, slots=True)
class ContinuousLimits:
    """How many requests run together, how many may wait, and how long one may take."""

    max_requests: int = 16
    queue_limit: int = 256
    timeout_s: float = 120.0
    # Reuse the cached pages of a prompt that starts like an earlier one (a channel's system
    # prompt and history) instead of reading them again.
    prefix_sharing: bool = True


def cache_config(
    context_tokens: int, max_requests: int, device: torch.device, *, prefix_sharing: bool = True
) -> Any:
    """The library's config with a cache sized from the window and our limits, not free memory.

    The cache holds ``max_requests`` requests of up to ``TOKENS_PER_REQUEST`` tokens, and at
    least one request as long as the whole window (the library fails a request that cannot
    fit even alone). When it is full, new requests wait for running ones to finish.
    """
    from transformers import ContinuousBatchingConfig

    per_request = min(context_tokens, TOKENS_PER_REQUEST)
    tokens = max(context_tokens + PAGE_TOKENS, max_requests * per_request)
    step_tokens = STEP_TOKENS.get(device.type, STEP_TOKENS["cuda"])
    return ContinuousBatchingConfig(
        page_size=PAGE_TOKENS,
        num_blocks=math.ceil(tokens / PAGE_TOKENS),
        max_batch_tokens=max(step_tokens, max_requests),
        max_requests_per_batch=max_requests,
        allow_block_sharing=prefix_sharing,  # a channel's prompt starts like its last one
        max_queue_size=0,  # unbounded: admission is ours (BusyError), add_request never blocks
        # On a GPU a step of a small model is mostly kernel launches: replaying captured CUDA
        # graphs cuts them (the library leaves graphs off for attention that needs a mask).
        use_cuda_graph=True if device.type == "cuda" else None,
    )


class ContinuousGenerator:
    """One ``ContinuousBatchingManager`` for one causal LM, started at load, stopped at close."""

    def __init__(self, model: GenerativeModel, limits: ContinuousLimits, role: str) -> None:
        """Start the manager and check it answers like ``generate()`` (on the loading thread).

        Raises ContinuousBatchingUnavailable when the library rejects the model or device, its
        thread dies, or its answer to a check prompt differs from ``generate()``'s.
        """
        if model.is_seq2seq:
            raise ContinuousBatchingUnavailable("not a causal LM")
        self.role = role
        # The engine hands over the process's metrics (InferenceEngine._continuous).
        self.metrics: RoleMetrics = Metrics().role(role)
        self._model = model
        self._limits = limits
        self._stop_ids = stop_token_ids(model.tokenizer, model.model.generation_config)
        self._ids = itertools.count()
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self._seconds_per_token = 0.05
        # Requests beyond what one step runs wait here, guild by guild, not in the library's
        # first-come queue: one busy guild cannot hold every place in the batch.
        self._gate = FairGate(limits.max_requests)
        check_prompt = _check_prompt(model)
        # generate() first: the manager switches the model to its own attention on init.
        expected = model.generate_ids(check_prompt, max_new_tokens=_CHECK_TOKENS)
        config = copy.deepcopy(model.model.generation_config)
        config.do_sample, config.num_beams = False, 1  # greedy, as the batched path
        try:
            import transformers.generation.continuous_batching  # noqa: F401  (its logger)

            _route_library_log()
            self._manager = model.model.init_continuous_batching(
                generation_config=config,
                continuous_batching_config=cache_config(
                    model.context_tokens,
                    limits.max_requests,
                    model.model.device,
                    prefix_sharing=limits.prefix_sharing,
                ),
            )
            self._manager.start()
        except Exception as error:
            raise ContinuousBatchingUnavailable(_first_line(error)) from error
        try:
            answer = self._answer_blocking(check_prompt, _CHECK_TOKENS)
        except Exception:
            self.stop()
            raise
        if answer != expected:
            self.stop()
            raise ContinuousBatchingUnavailable(
                f"its greedy answer {answer} differs from generate()'s {expected}"
            )

    @property
    def is_alive(self) -> bool:
        """Whether the generation thread runs and has not died."""
        status = self._manager.background_thread_status
        return self._manager.is_running() and status.fatal_error is None

    @property
    def in_flight(self) -> int:
        """Requests queued or running."""
        return len(self._streams)

    async def stream(self, prompt: Sequence[int], max_new_tokens: int) -> AsyncIterator[str]:
        """The answer to ``prompt`` (token ids) in pieces of text, as it is generated.

        Closing the iterator early (the caller went away, timed out or was cancelled) cancels
        the request in the running batch, so it stops using the model at the next step.
        """
        decoder = _TextDecoder(self._model.tokenizer, self._stop_ids)
        outputs = self._outputs(prompt, max_new_tokens, streaming=True)
        async with contextlib.aclosing(outputs):
            async for output in outputs:
                piece = decoder.update(output.generated_tokens, final=output.is_finished())
                if piece:
                    yield piece

    async def complete(self, prompt: Sequence[int], max_new_tokens: int) -> str:
        """The whole answer to ``prompt``, stripped (as the batched path returns it)."""
        decoder = _TextDecoder(self._model.tokenizer, self._stop_ids)
        # Nobody reads the pieces: one output at the end instead of one per step.
        outputs = self._outputs(prompt, max_new_tokens, streaming=False)
        async with contextlib.aclosing(outputs):
            async for output in outputs:
                decoder.update(output.generated_tokens, final=output.is_finished())
        return decoder.text.strip()

    async def _outputs(
        self, prompt: Sequence[int], max_new_tokens: int, *, streaming: bool
    ) -> AsyncGenerator[Any, None]:
        """The library's outputs for one request, the last one finished; closing cancels it."""
        if not self.is_alive:
            raise InferenceError("The model failed on this request.")
        if len(self._streams) + self._gate.waiting >= self._limits.queue_limit:
            self.metrics.rejections.inc()
            raise BusyError(self.role, self._estimated_wait_s(max_new_tokens))
        max_new_tokens = max(1, min(max_new_tokens, self._model.context_tokens - len(prompt)))
        async with (
            self._gate.slot(current_tenant()),
            contextlib.aclosing(
                self._admitted(prompt, max_new_tokens, streaming=streaming)
            ) as outputs,
        ):
            async for output in outputs:
                yield output

    async def _admitted(
        self, prompt: Sequence[int], max_new_tokens: int, *, streaming: bool
    ) -> AsyncGenerator[Any, None]:
        """One request added to the running batch (it holds a slot of the gate)."""
        if not self.is_alive:
            raise InferenceError("The model failed on this request.")
        request_id = f"{self.role}-{next(self._ids)}"
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[request_id] = queue
        self.metrics.in_flight.set(len(self._streams))
        # The handler goes in first: a quick request may finish before add_request returns.
        self._manager.register_result_handler(request_id, queue.put_nowait)
        finished = first_token = False
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self._limits.timeout_s
        try:
            added = self._manager.add_request(
                list(prompt),
                request_id=request_id,
                max_new_tokens=max_new_tokens,
                streaming=streaming,
            )
            if added is None:  # the manager refused it: its thread is stopping or died
                raise InferenceError("The model failed on this request.")
            while not finished:
                output = await self._next_output(queue, deadline)
                finished = output.is_finished()
                elapsed = time.perf_counter() - started
                if streaming and not first_token and output.generated_tokens:
                    first_token = True
                    self.metrics.time_to_first_token.observe(elapsed)
                if finished:
                    tokens = len(output.generated_tokens)
                    self._record_speed(elapsed, tokens)
                    self.metrics.latency.observe(elapsed)
                    self.metrics.observe_generation(elapsed, tokens)
                yield output
        finally:
            self._streams.pop(request_id, None)
            self.metrics.in_flight.set(len(self._streams))
            if not finished:
                self._manager.cancel_request(request_id)
                self._forget_handler(request_id)
            self._drop_stray_outputs()

    async def aclose(self) -> None:
        """Fail what is waiting or running, then stop the generation thread (bounded)."""
        self._gate.close(InferenceError("The bot is shutting down."))
        for outputs in list(self._streams.values()):
            outputs.put_nowait(InferenceError("The bot is shutting down."))
        with_timeout = asyncio.wait_for(asyncio.to_thread(self.stop), STOP_WAIT_S + 1)
        try:
            await with_timeout
        except TimeoutError:
            log.warning("%s: generation thread still running after %g s", self.role, STOP_WAIT_S)

    def stop(self) -> None:
        """Stop the generation thread now (blocking, at most ``STOP_WAIT_S``)."""
        if self._manager.is_running():
            self._manager.stop(block=True, timeout=STOP_WAIT_S, hard_stop=True)

    async def _next_output(self, outputs: asyncio.Queue[Any], deadline: float) -> Any:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the caller's cancellation
        # when an output arrives at the same moment, and the request would run on unwanted.
        try:
            async with asyncio.timeout_at(deadline):
                output = await outputs.get()
        except TimeoutError:
            raise InferenceTimeoutError(self.role, self._limits.timeout_s) from None
        if isinstance(output, BaseException):
            raise output
        if output.error is not None:
            log.error("%s: generation failed: %s", self.role, output.error)
            raise InferenceError("The model failed on this request.")
        return output

    def _forget_handler(self, request_id: str) -> None:
        # A cancelled request gets no last output, so its handler would stay registered.
        router = getattr(self._manager, "output_router", None)
        handlers = getattr(router, "result_handlers", None)
        if router is not None and isinstance(handlers, dict):
            with router._lock:
                handlers.pop(request_id, None)

    def _drop_stray_outputs(self) -> None:
        # Every request of ours has a handler, so the library's shared queue only gets the last
        # output of a request cancelled during a step (it comes after its handler has gone).
        # Nobody reads that queue: left there, one output per cancelled request would pile up.
        strays = self._manager.output_router.output_queue
        with contextlib.suppress(queue.Empty):
            while True:
                strays.get_nowait()

    def _estimated_wait_s(self, max_new_tokens: int) -> float:
        rounds = (len(self._streams) + self._gate.waiting) / max(1, self._limits.max_requests)
        return rounds * max_new_tokens * self._seconds_per_token

    def _record_speed(self, seconds: float, tokens: int) -> None:
        if tokens:
            self._seconds_per_token = 0.8 * self._seconds_per_token + 0.2 * seconds / tokens

    def _answer_blocking(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        """One request through the manager from a thread (start-up check)."""
        request_id = self._manager.add_request(
            prompt, request_id="start-check", max_new_tokens=max_new_tokens
        )
        deadline = time.monotonic() + START_CHECK_S
        while request_id is not None and time.monotonic() < deadline:
            if self._manager.background_thread_status.fatal_error is not None:
                break
            output = self._manager.get_result(request_id=request_id, timeout=0.5)
            if output is None or not output.is_finished():
                continue
            if output.error is not None:
                raise ContinuousBatchingUnavailable(output.error.splitlines()[0][:200])
            return list(output.generated_tokens)
        fatal = self._manager.background_thread_status.fatal_error
        self.stop()
        reason = _first_line(fatal) if fatal is not None else "no answer to a check request"
        raise ContinuousBatchingUnavailable(reason)


def start_continuous(
    model: GenerativeModel, limits: ContinuousLimits | None, role: str
) -> ContinuousGenerator | None:
    """Continuous batching for a causal LM, or None (batched ``generate()``), said in one line."""
    if model.is_seq2seq:
        return None
    if limits is None:
        log.info("%s: continuous batching is off; using batched generate()", role)
        return None
    try:
        generator = ContinuousGenerator(model, limits, role)
    except Exception as error:  # whatever the library rejects, the batched path still works
        log.warning(
            "%s: continuous batching unavailable (%s); using batched generate()",
            role,
            _first_line(error),
        )
        return None
    log.info("%s: generating with continuous batching", role)
    return generator


class _TextDecoder:
    """Turns the growing list of generated token ids into new pieces of text."""

    def __init__(self, tokenizer: Any, stop_ids: set[int]) -> None:
        self._tokenizer = tokenizer
        self._stop_ids = stop_ids
        self.text = ""  # what has been decoded so far
        self.tokens: list[int] = []

    def update(self, generated: Sequence[int], *, final: bool) -> str:
        """The text added since the last call ('' while a character is incomplete)."""
        tokens: list[int] = []
        for token in generated:
            if token in self._stop_ids:
                break
            tokens.append(token)
        if len(tokens) == len(self.tokens) and not final:
            return ""
        self.tokens = tokens
        text: str = self._tokenizer.decode(tokens, skip_special_tokens=True)
        # A multi-byte character split over tokens decodes to U+FFFD until complete.
        if (text.endswith("\ufffd") and not final) or len(text) <= len(self.text):
            return ""
        piece, self.text = text[len(self.text) :], text
        return piece


def _check_prompt(model: GenerativeModel) -> list[int]:
    tokenizer = model.tokenizer
    if model.has_chat_template:
        return model.chat_prompt_ids([{"role": "user", "content": "Say hello."}])
    ids = list(tokenizer("Hello, how are you?")["input_ids"])
    return ids or [tokenizer.eos_token_id]


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]
