"""Chat: a system prompt plus history, trimmed to the model's window, then generated.

Causal LMs generate on transformers' continuous batching (``ContinuousGenerator``); seq2seq
chat models (BlenderBot), and causal LMs the library cannot run, use batched ``generate()``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from bot.errors import InvalidInputError
from bot.inference.continuous import ContinuousGenerator, ContinuousLimits, start_continuous
from bot.inference.device import DevicePlan
from bot.inference.generation import GenerativeModel, TextSink
from bot.inference.loading import ModelSource
from bot.inference.window import longest_fitting_start

# Token counts of recent message texts, per model: a channel's history is sent again with
# every message, so each turn is counted once, not once per answer.
TOKEN_COUNT_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    max_new_tokens: int
    sink: TextSink | None = None  # called on the worker thread with each new piece of text
    # Set when the caller stops waiting; generation of this row stops at the next token.
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    ids: list[int]
    turns_used: int  # how many non-system messages fitted in the window


@dataclass(frozen=True, slots=True)
class ChatReply:
    text: str
    prompt_tokens: int
    turns_used: int  # how many non-system messages fitted in the window


# Seq2seq chat models (BlenderBot) were trained on turns joined this way.
_SEQ2SEQ_TURN_SEPARATOR = "  "


class ChatTask:
    """Chat-template causal LMs, and seq2seq chat models such as BlenderBot."""

    def __init__(
        self, source: ModelSource, plan: DevicePlan, continuous: ContinuousLimits | None = None
    ) -> None:
        self.source = source
        self.model_id = source.display_name
        self._plan = plan
        self._continuous_limits = continuous
        self.model: GenerativeModel | None = None
        self.continuous: ContinuousGenerator | None = None
        self._token_counts: OrderedDict[str, int] = OrderedDict()
        self._role_overheads: dict[str, int] = {}

    def load(self) -> None:
        self.model = GenerativeModel(self.source, self._plan)
        self.continuous = start_continuous(self.model, self._continuous_limits, "chat")

    def batch_key(self, payload: ChatRequest) -> Hashable:
        return payload.max_new_tokens

    def size(self, payload: ChatRequest) -> int:
        return 1

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts in the chat model's own tokenizer."""
        assert self.model is not None
        return [self.model.count_tokens(text) for text in texts]

    def run_batch(self, payloads: Sequence[ChatRequest]) -> list[ChatReply | BaseException]:
        """Batched ``generate()`` (seq2seq models, or when continuous batching is off)."""
        assert self.model is not None
        prompts: list[ChatPrompt] = []
        runnable: list[ChatRequest] = []
        results: list[ChatReply | BaseException | None] = []
        for payload in payloads:
            try:
                prompts.append(self.prompt(payload.messages, payload.max_new_tokens))
            except InvalidInputError as error:
                results.append(error)
                continue
            results.append(None)
            runnable.append(payload)
        texts = (
            self.model.generate(
                [prompt.ids for prompt in prompts],
                max_new_tokens=payloads[0].max_new_tokens,
                sinks=[payload.sink for payload in runnable],
                cancelled=[payload.cancelled for payload in runnable],
                # Greedy: reproducible answers. No repetition penalty: transformers applies
                # it to prompt tokens too, which stops the model repeating facts it was told.
                do_sample=False,
                num_beams=1,
            )
            if prompts
            else []
        )
        replies = iter(zip(texts, prompts, strict=True))
        final: list[ChatReply | BaseException] = []
        for result in results:
            if result is not None:
                final.append(result)
            else:
                text, prompt = next(replies)
                final.append(ChatReply(text, len(prompt.ids), prompt.turns_used))
        return final

    def prompt(self, messages: Sequence[ChatMessage], max_new_tokens: int) -> ChatPrompt:
        """Token ids of the longest recent history that leaves room for the answer.

        Each turn's length is counted once (and remembered), so choosing the window takes a
        couple of exact encodings of the prompt, not one per dropped turn; the ids returned are
        always an exact encoding of the kept turns.
        """
        assert self.model is not None
        # A decoder-only model writes its answer into the same window; seq2seq has its own.
        answer_room = 0 if self.model.is_seq2seq else max_new_tokens
        budget = self.model.context_tokens - answer_room
        system = [m for m in messages if m.role == "system"][:1]
        history = [m for m in messages if m.role != "system"]
        if not history:
            raise InvalidInputError("There is nothing to answer.")
        encoded: dict[int, list[int]] = {}

        def measure(start: int) -> int:
            encoded[start] = self._encode(system + history[start:])
            return len(encoded[start])

        estimates = self._turn_estimates(history, system)
        start = longest_fitting_start(estimates, measure, budget)
        if start is None:
            raise InvalidInputError(
                f"That message is too long for the chat model ({len(encoded[len(history) - 1])} "
                f"tokens; it reads at most {budget})."
            )
        return ChatPrompt(encoded[start], len(history) - start)

    def _turn_estimates(self, history: list[ChatMessage], system: list[ChatMessage]) -> list[int]:
        """About how many prompt tokens each turn adds: its text plus the template's wrapping."""
        counts = self._content_tokens([m.content for m in history])
        return [
            count + self._role_overhead(m.role, system)
            for m, count in zip(history, counts, strict=True)
        ]

    def _content_tokens(self, texts: list[str]) -> list[int]:
        assert self.model is not None
        missing = list(dict.fromkeys(t for t in texts if t not in self._token_counts))
        if missing:
            ids = self.model.tokenizer(missing, add_special_tokens=False, verbose=False)
            for text, tokens in zip(missing, ids["input_ids"], strict=True):
                self._token_counts[text] = len(tokens)
        for text in texts:
            self._token_counts.move_to_end(text)
        counts = [self._token_counts[text] for text in texts]
        while len(self._token_counts) > TOKEN_COUNT_CACHE_SIZE:
            self._token_counts.popitem(last=False)
        return counts

    def _role_overhead(self, role: str, system: list[ChatMessage]) -> int:
        """Tokens the template wraps around one message of ``role`` (measured once per role)."""
        if role not in self._role_overheads:
            probe = ChatMessage(role, "hello")
            before = [*system, ChatMessage("user", "hi")]
            try:
                added = len(self._encode([*before, probe])) - len(self._encode(before))
                overhead = added - self._content_tokens([probe.content])[0]
            except Exception:  # a template that refuses this order: the estimate is only a hint
                overhead = 0
            self._role_overheads[role] = max(0, overhead)
        return self._role_overheads[role]

    def _encode(self, messages: Sequence[ChatMessage]) -> list[int]:
        assert self.model is not None
        model = self.model
        if model.has_chat_template and not model.is_seq2seq:
            return model.chat_prompt_ids([{"role": m.role, "content": m.content} for m in messages])
        # Seq2seq chat models see the turns only; a persona goes first as plain text.
        text = _SEQ2SEQ_TURN_SEPARATOR.join(m.content for m in messages)
        return list(model.tokenizer(text)["input_ids"])
