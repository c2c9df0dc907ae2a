"""Summarization: seq2seq models via generate(), causal LMs via a prompt; long texts map-reduce."""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from bot.inference.device import DevicePlan
from bot.inference.generation import GenerativeModel
from bot.inference.loading import ModelSource

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_INSTRUCTION = "Summarize the following text in a few sentences.\n\n"
# Rounds of map-reduce before the remaining partial summaries are joined as they are.
MAX_REDUCE_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class SummarizeRequest:
    text: str
    min_length: int = 30
    max_length: int = 130


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    chunks: int  # how many pieces the input was split into in the first round


class SummarizationTask:
    """Batches of texts -> summaries; a text longer than the window is split, never cut."""

    def __init__(self, source: ModelSource, plan: DevicePlan, max_batch_size: int) -> None:
        self.source = source
        self.model_id = source.display_name
        self._plan = plan
        self._batch_size = max_batch_size
        self.model: GenerativeModel | None = None

    def load(self) -> None:
        self.model = GenerativeModel(self.source, self._plan)

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
        low, high = payloads[0].min_length, payloads[0].max_length
        pieces = [self.split(payload.text) for payload in payloads]
        chunk_counts = [len(chunks) for chunks in pieces]
        for _ in range(MAX_REDUCE_ROUNDS):
            if all(len(chunks) == 1 for chunks in pieces):
                break
            # Map: every chunk of every long text in one batched pass; reduce: join them.
            partial = iter(
                self._summarize([c for cs in pieces if len(cs) > 1 for c in cs], low, high)
            )
            pieces = [
                chunks if len(chunks) == 1 else self.split("\n".join(next(partial) for _ in chunks))
                for chunks in pieces
            ]
        # Final pass; a text still too long after every round keeps one summary per part.
        finals = iter(self._summarize([c for chunks in pieces for c in chunks], low, high))
        return [
            Summary("\n".join(next(finals) for _ in chunks), count)
            for chunks, count in zip(pieces, chunk_counts, strict=True)
        ]

    def split(self, text: str) -> list[str]:
        """Pieces of ``text`` that each fit the model's window, cut at sentence ends."""
        assert self.model is not None
        limit = self.chunk_tokens
        chunks: list[str] = []
        current: list[str] = []
        current_tokens = 0
        for sentence in self._sentences(text, limit):
            tokens = self.model.count_tokens(sentence) + 1
            if current and current_tokens + tokens > limit:
                chunks.append(" ".join(current))
                current, current_tokens = [], 0
            current.append(sentence)
            current_tokens += tokens
        if current:
            chunks.append(" ".join(current))
        return chunks or [text]

    def _sentences(self, text: str, limit: int) -> list[str]:
        assert self.model is not None
        tokenizer = self.model.tokenizer
        sentences: list[str] = []
        for sentence in filter(None, (s.strip() for s in _SENTENCE_END.split(text))):
            ids = tokenizer(sentence, add_special_tokens=False, verbose=False)["input_ids"]
            # A "sentence" longer than the window (no punctuation) is cut by tokens.
            for start in range(0, len(ids), limit - 1):
                sentences.append(tokenizer.decode(ids[start : start + limit - 1]).strip())
        return sentences

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
