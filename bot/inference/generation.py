"""Shared pieces of text generation: loading, batched ``generate()``, streaming per row."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bot.inference.device import DevicePlan
from bot.inference.loading import (
    ModelSource,
    context_limit,
    load_config,
    load_model,
    load_tokenizer,
)

TextSink = Callable[[str], None]


class GenerativeModel:
    """A tokenizer plus a seq2seq or causal LM, with batched left-padded generation."""

    def __init__(self, source: ModelSource, plan: DevicePlan) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        config = load_config(source)
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        # Decoder-only models must be padded on the left to generate in a batch.
        self.tokenizer = load_tokenizer(source, padding_side="right" if self.is_seq2seq else "left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        auto_class = AutoModelForSeq2SeqLM if self.is_seq2seq else AutoModelForCausalLM
        self.model = load_model(auto_class, source, plan)
        if self.model.generation_config.eos_token_id is None:
            # Without it generate() would never stop before max_new_tokens.
            self.model.generation_config.eos_token_id = self.tokenizer.eos_token_id
        self.context_tokens = context_limit(self.tokenizer, config)
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._device = self.model.device

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in this model's tokens."""
        # verbose=False: counting a text longer than the window is the point, not a mistake.
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def chat_prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a chat-template prompt; members' text cannot forge control tokens."""
        ids = self.tokenizer.apply_chat_template(
            list(messages),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            sanitize_control_tokens=True,
        )
        return list(ids)

    def generate(
        self,
        prompts: Sequence[list[int]],
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sinks: Sequence[TextSink | None] | None = None,
        cancelled: Sequence[threading.Event | None] | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Generate for a batch of token-id prompts; returns only the new text of each.

        A row whose ``cancelled`` event is set stops at the next token (its caller went away),
        and generation ends when every row has stopped.
        """
        batch = self.tokenizer.pad({"input_ids": list(prompts)}, return_tensors="pt")
        batch = {name: tensor.to(self._device) for name, tensor in batch.items()}
        # Never ask for more tokens than the model has positions for (the decoder's own,
        # for seq2seq; what the prompt leaves of the window, for causal LMs).
        used = 1 if self.is_seq2seq else batch["input_ids"].shape[1]
        max_new_tokens = max(1, min(max_new_tokens, self.context_tokens - used))
        min_new_tokens = min(min_new_tokens, max_new_tokens)
        streamer = _RowStreamer(self.tokenizer, sinks) if sinks and any(sinks) else None
        if cancelled and any(cancelled):
            generate_kwargs["stopping_criteria"] = _stop_cancelled_rows(cancelled)
        output = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens or None,
            pad_token_id=self.tokenizer.pad_token_id,
            streamer=streamer,
            **generate_kwargs,
        )
        new_tokens = output if self.is_seq2seq else output[:, batch["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def generate_ids(self, prompt: list[int], *, max_new_tokens: int) -> list[int]:
        """Greedy new token ids for one prompt (stop token included), as generate() makes them."""
        inputs = torch.tensor([prompt], device=self._device)
        with torch.inference_mode():
            output = self.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                do_sample=False,
                num_beams=1,
            )
        return [int(token) for token in output[0, len(prompt) :].tolist()]


def _stop_cancelled_rows(events: Sequence[threading.Event | None]) -> Any:
    """A stopping criterion for ``generate()``: rows whose caller has gone away are finished."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class CancelledRows(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            flags = [event is not None and event.is_set() for event in events]
            return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([CancelledRows()])


class _RowStreamer:
    """A ``generate()`` streamer for a batch: hands each row's new text to that row's sink."""

    def __init__(self, tokenizer: Any, sinks: Sequence[TextSink | None]) -> None:
        self._tokenizer = tokenizer
        self._sinks = list(sinks)
        self._tokens: list[list[int]] = [[] for _ in sinks]
        self._sent: list[str] = ["" for _ in sinks]
        self._finished = [False for _ in sinks]
        self._skip_next = True  # generate() first hands over the prompt (or decoder start)
        self._stop_ids = stop_token_ids(tokenizer)

    def put(self, value: torch.Tensor) -> None:
        if self._skip_next:
            self._skip_next = False
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self._finished[row]:
                continue
            if token in self._stop_ids:
                self._finished[row] = True
                continue
            self._tokens[row].append(token)
            self._emit(row)

    def end(self) -> None:
        """Nothing to flush: every decodable piece was sent as it came."""

    def _emit(self, row: int) -> None:
        sink = self._sinks[row]
        if sink is None:
            return
        text = self._tokenizer.decode(self._tokens[row], skip_special_tokens=True)
        # A multi-byte character split over tokens decodes to U+FFFD until complete.
        if text.endswith("\ufffd") or len(text) <= len(self._sent[row]):
            return
        sink(text[len(self._sent[row]) :])
        self._sent[row] = text


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Token ids that end an answer: the tokenizer's end and padding, the model's end tokens."""
    ids: set[Any] = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    configured = getattr(generation_config, "eos_token_id", None)
    ids |= set(configured) if isinstance(configured, list) else {configured}
    return {token for token in ids if isinstance(token, int) and token >= 0}
