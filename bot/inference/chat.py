"""Chat: a system prompt plus history, trimmed to the model's window, batched generation."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from bot.errors import InvalidInputError
from bot.inference.device import DevicePlan
from bot.inference.generation import GenerativeModel, TextSink
from bot.inference.loading import ModelSource


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    max_new_tokens: int
    sink: TextSink | None = None  # called on the worker thread with each new piece of text


@dataclass(frozen=True, slots=True)
class ChatReply:
    text: str
    prompt_tokens: int
    turns_used: int  # how many non-system messages fitted in the window


# Seq2seq chat models (BlenderBot) were trained on turns joined this way.
_SEQ2SEQ_TURN_SEPARATOR = "  "


class ChatTask:
    """Chat-template causal LMs, and seq2seq chat models such as BlenderBot."""

    def __init__(self, source: ModelSource, plan: DevicePlan) -> None:
        self.source = source
        self.model_id = source.display_name
        self._plan = plan
        self.model: GenerativeModel | None = None

    def load(self) -> None:
        self.model = GenerativeModel(self.source, self._plan)

    def batch_key(self, payload: ChatRequest) -> Hashable:
        return payload.max_new_tokens

    def size(self, payload: ChatRequest) -> int:
        return 1

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts in the chat model's own tokenizer."""
        assert self.model is not None
        return [self.model.count_tokens(text) for text in texts]

    def run_batch(self, payloads: Sequence[ChatRequest]) -> list[ChatReply | BaseException]:
        assert self.model is not None
        model = self.model
        prompts: list[list[int]] = []
        fitted: list[int] = []
        results: list[ChatReply | BaseException | None] = []
        for payload in payloads:
            try:
                ids, used = self._prompt(payload)
            except InvalidInputError as error:
                results.append(error)
                continue
            results.append(None)
            prompts.append(ids)
            fitted.append(used)
        runnable = [
            payload for payload, result in zip(payloads, results, strict=True) if result is None
        ]
        texts = (
            model.generate(
                prompts,
                max_new_tokens=payloads[0].max_new_tokens,
                sinks=[payload.sink for payload in runnable],
                # Greedy: reproducible answers. No repetition penalty: transformers applies
                # it to prompt tokens too, which stops the model repeating facts it was told.
                do_sample=False,
                num_beams=1,
            )
            if prompts
            else []
        )
        replies = iter(zip(texts, prompts, fitted, strict=True))
        final: list[ChatReply | BaseException] = []
        for result in results:
            if result is not None:
                final.append(result)
            else:
                text, ids, used = next(replies)
                final.append(ChatReply(text, len(ids), used))
        return final

    def _prompt(self, payload: ChatRequest) -> tuple[list[int], int]:
        """Token ids of the longest recent history that leaves room for the answer."""
        assert self.model is not None
        # A decoder-only model writes its answer into the same window; seq2seq has its own.
        answer_room = 0 if self.model.is_seq2seq else payload.max_new_tokens
        budget = self.model.context_tokens - answer_room
        system = [m for m in payload.messages if m.role == "system"][:1]
        history = [m for m in payload.messages if m.role != "system"]
        if not history:
            raise InvalidInputError("There is nothing to answer.")
        # Drop the oldest turns first; the newest message always stays.
        for start in range(len(history)):
            ids = self._encode(system + history[start:])
            if len(ids) <= budget:
                return ids, len(history) - start
        raise InvalidInputError(
            f"That message is too long for the chat model ({len(ids)} tokens; "
            f"it reads at most {budget})."
        )

    def _encode(self, messages: Sequence[ChatMessage]) -> list[int]:
        assert self.model is not None
        model = self.model
        if model.has_chat_template and not model.is_seq2seq:
            return model.chat_prompt_ids([{"role": m.role, "content": m.content} for m in messages])
        # Seq2seq chat models see the turns only; a persona goes first as plain text.
        text = _SEQ2SEQ_TURN_SEPARATOR.join(m.content for m in messages)
        return list(model.tokenizer(text)["input_ids"])
