"""Summarization: seq2seq models via generate(), causal LMs via a prompt; long texts map-reduce.

A causal LM summarises on continuous batching (each part is one request in the running batch);
seq2seq models, and causal LMs the library cannot run, summarise in batched ``generate()``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import InferenceError
from bot.inference.continuous import ContinuousGenerator, ContinuousLimits, start_continuous
from bot.inference.device import DevicePlan
from bot.inference.generation import GenerativeModel
from bot.inference.loading import ModelSource
from bot.inference.splitting import pack, sentences

# Runs a function on the model's worker thread (tokenizing) and awaits its result.
ThreadCall = Callable[..., Awaitable[Any]]

_INSTRUCTION = "Summarize the following text in a few sentences.\n\n"
# Rounds of map-reduce before the remaining partial summaries are joined as they are.
MAX_REDUCE_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class SummarizeRequest:
    text: str
    min_length: int = 30
    max_length: int = 130
    # Set when the caller stops waiting: the remaining parts are not summarised.
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    chunks: int  # how many pieces the input was split into in the first round


class SummarizationTask:
    """Batches of texts -> summaries; a text longer than the window is split, never cut."""

    def __init__(
        self,
        source: ModelSource,
        plan: DevicePlan,
        max_batch_size: int,
        continuous: ContinuousLimits | None = None,
    ) -> None:
        self.source = source
        self.model_id = source.display_name
        self._plan = plan
        self._batch_size = max_batch_size
        self._continuous_limits = continuous
        self.model: GenerativeModel | None = None
        self.continuous: ContinuousGenerator | None = None

    def load(self) -> None:
        self.model = GenerativeModel(self.source, self._plan)
        self.continuous = start_continuous(self.model, self._continuous_limits, "summarization")

    def batch_key(self, payload: SummarizeRequest) -> Hashable:
        return (payload.min_length, payload.max_length)

    def size(self, payload: SummarizeRequest) -> int:
        return 1

    @property
    def chunk_tokens(self) -> int:
        """How many input tokens one summarization call reads."""
        assert self.model is not None
        reserve = 0 if self.model.is_seq2seq else self._prompt_overhead + 256
        return max(64, self.model.context_tokens - reserve - 8)

    def run_batch(self, payloads: Sequence[SummarizeRequest]) -> list[Summary | BaseException]:
        """Batched ``generate()``; a text whose caller has gone away is dropped between rounds."""
        low, high = payloads[0].min_length, payloads[0].max_length
        pieces = [self.split(payload.text) for payload in payloads]
        chunk_counts = [len(chunks) for chunks in pieces]
        for _ in range(MAX_REDUCE_ROUNDS):
            long = [i for i, p in enumerate(payloads) if _wanted(p) and len(pieces[i]) > 1]
            if not long:
                break
            # Map: every chunk of every long text in one batched pass; reduce: join them.
            partial = iter(self._summarize([c for i in long for c in pieces[i]], low, high))
            for i in long:
                pieces[i] = self.split("\n".join(next(partial) for _ in pieces[i]))
        # Final pass; a text still too long after every round keeps one summary per part.
        wanted = [i for i, payload in enumerate(payloads) if _wanted(payload)]
        finals = iter(self._summarize([c for i in wanted for c in pieces[i]], low, high))
        results: list[Summary | BaseException] = [_CANCELLED] * len(payloads)
        for i in wanted:
            results[i] = Summary("\n".join(next(finals) for _ in pieces[i]), chunk_counts[i])
        return results

    async def summarize_continuously(
        self, generator: ContinuousGenerator, request: SummarizeRequest, call: ThreadCall
    ) -> Summary:
        """The same map-reduce as ``run_batch``, each part one request on continuous batching.

        ``call`` runs tokenizing on the model's worker thread. If the caller goes away, the
        parts being generated are cancelled and no further part starts. ``min_length`` is a
        seq2seq notion the library has no per-request form of: a causal LM ends its summary
        where it sees fit, within ``max_length``.
        """
        pieces: list[str] = await call(self.split, request.text)
        chunk_count = len(pieces)
        for _ in range(MAX_REDUCE_ROUNDS):
            if len(pieces) == 1:
                break
            partial = await self._summarize_parts(generator, pieces, request, call)
            pieces = await call(self.split, "\n".join(partial))
        finals = await self._summarize_parts(generator, pieces, request, call)
        return Summary("\n".join(finals), chunk_count)

    async def _summarize_parts(
        self,
        generator: ContinuousGenerator,
        texts: list[str],
        request: SummarizeRequest,
        call: ThreadCall,
    ) -> list[str]:
        prompts: list[list[int]] = await call(lambda: [self._prompt_ids(t) for t in texts])
        # A TaskGroup cancels the other parts when one fails or the caller is cancelled.
        async with asyncio.TaskGroup() as group:
            parts = [
                group.create_task(generator.complete(prompt, request.max_length))
                for prompt in prompts
            ]
        return [part.result() for part in parts]

    def split(self, text: str) -> list[str]:
        """Pieces of ``text`` that each fit the model's window, cut at sentence ends."""
        assert self.model is not None
        limit = self.chunk_tokens
        return pack(self._sentences(text, limit), self.model.count_tokens, limit) or [text]

    def _sentences(self, text: str, limit: int) -> list[str]:
        assert self.model is not None
        tokenizer = self.model.tokenizer
        cut: list[str] = []
        for sentence in sentences(text):
            ids = tokenizer(sentence, add_special_tokens=False, verbose=False)["input_ids"]
            # A "sentence" longer than the window (no punctuation) is cut by tokens.
            for start in range(0, len(ids), limit - 1):
                cut.append(tokenizer.decode(ids[start : start + limit - 1]).strip())
        return cut

    @property
    def _prompt_overhead(self) -> int:
        assert self.model is not None
        return len(self._prompt_ids(""))

    def _prompt_ids(self, text: str) -> list[int]:
        assert self.model is not None
        model = self.model
        if model.is_seq2seq:
            return list(model.tokenizer(text, truncation=True)["input_ids"])
        if model.has_chat_template:
            return model.chat_prompt_ids([{"role": "user", "content": _INSTRUCTION + text}])
        return list(model.tokenizer(f"{_INSTRUCTION}{text}\n\nSummary:")["input_ids"])

    def _summarize(self, texts: list[str], min_length: int, max_length: int) -> list[str]:
        assert self.model is not None
        summaries: list[str] = []
        for start in range(0, len(texts), self._batch_size):
            prompts = [self._prompt_ids(text) for text in texts[start : start + self._batch_size]]
            summaries.extend(
                self.model.generate(prompts, max_new_tokens=max_length, min_new_tokens=min_length)
            )
        return summaries


_CANCELLED = InferenceError("The summary was cancelled.")


def _wanted(payload: SummarizeRequest) -> bool:
    return not payload.cancelled.is_set()
