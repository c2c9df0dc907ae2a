"""Choosing the chat window: the same turns as re-encoding per dropped turn, with far less work."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import InvalidInputError
from bot.inference.chat import ChatMessage, ChatTask
from bot.inference.device import resolve_device
from bot.inference.loading import ModelSource
from bot.inference.window import longest_fitting_start
from tests.conftest import TinyModels
from tests.tiny_models import CORPUS


def first_fitting_by_scan(lengths: Sequence[int], budget: int) -> int | None:
    """The old way: try every start from the oldest turn on."""
    for start, length in enumerate(lengths):
        if length <= budget:
            return start
    return None


@st.composite
def prompts(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """Exact prompt lengths per start (never growing as turns drop), rough estimates, a budget."""
    turns = draw(st.lists(st.integers(1, 60), min_size=1, max_size=80))
    wrapping = draw(st.integers(0, 6))
    base = draw(st.integers(1, 40))
    lengths = [base + sum(t + wrapping for t in turns[start:]) for start in range(len(turns))]
    # Estimates may be off either way (templates, tokens merging across a boundary).
    errors = draw(st.lists(st.integers(-8, 8), min_size=len(turns), max_size=len(turns)))
    estimates = [max(0, t + e) for t, e in zip(turns, errors, strict=True)]
    budget = draw(st.integers(0, lengths[0] + 20))
    return lengths, estimates, budget


@given(prompts())
def test_choice_equals_scanning_every_start(case: tuple[list[int], list[int], int]) -> None:
    lengths, estimates, budget = case
    measured: list[int] = []

    def measure(start: int) -> int:
        measured.append(start)
        return lengths[start]

    assert longest_fitting_start(estimates, measure, budget) == first_fitting_by_scan(
        lengths, budget
    )
    # Galloping plus bisection: a handful of measurements, not one per turn.
    assert len(measured) <= 3 + 4 * max(1, len(lengths)).bit_length()


@given(st.lists(st.integers(1, 50), min_size=2, max_size=200), st.integers(0, 3000))
def test_exact_estimates_measure_at_most_three_prompts(turns: list[int], budget: int) -> None:
    lengths = [10 + sum(turns[start:]) for start in range(len(turns))]
    measured: list[int] = []

    def measure(start: int) -> int:
        measured.append(start)
        return lengths[start]

    assert longest_fitting_start(turns, measure, budget) == first_fitting_by_scan(lengths, budget)
    assert len(measured) <= 3


def test_no_turns_and_a_newest_turn_too_long_give_none() -> None:
    assert longest_fitting_start([], lambda start: 0, 100) is None
    assert longest_fitting_start([5, 500], lambda start: [510, 505][start], 100) is None


def _old_prompt(task: ChatTask, messages: Sequence[ChatMessage], max_new_tokens: int) -> list[int]:
    """The previous algorithm: encode the whole prompt once per dropped turn."""
    assert task.model is not None
    budget = task.model.context_tokens - max_new_tokens
    system = [m for m in messages if m.role == "system"][:1]
    history = [m for m in messages if m.role != "system"]
    for start in range(len(history)):
        ids = task._encode(system + history[start:])
        if len(ids) <= budget:
            return ids
    raise InvalidInputError("too long")


TRICKY = ["é", "🙂", "<|im_end|>", "<|im_start|>system", "\n", "  "]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[ChatMessage], int]:
    """A persona and up to 40 turns of corpus words, odd characters and forged control tokens."""
    words = st.lists(st.sampled_from(" ".join(CORPUS).split() + TRICKY), min_size=1, max_size=12)
    messages = [ChatMessage("system", " ".join(draw(words)))]
    for i in range(draw(st.integers(1, 40))):
        text = " ".join(draw(words))
        if i % 2 == 0:
            messages.append(ChatMessage("user", f"member{i % 3}: {text}"))
        else:
            messages.append(ChatMessage("assistant", text))
    return messages, draw(st.integers(1, 200))


@pytest.fixture(scope="module")
def chat_task(tiny_models: TinyModels) -> ChatTask:
    task = ChatTask(ModelSource.parse(tiny_models.chat), resolve_device("cpu"))
    task.load()
    return task


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_chat_prompt_is_the_one_the_old_algorithm_chose(
    chat_task: ChatTask, case: tuple[list[ChatMessage], int]
) -> None:
    messages, max_new_tokens = case
    try:
        expected = _old_prompt(chat_task, messages, max_new_tokens)
    except InvalidInputError:
        with pytest.raises(InvalidInputError, match="too long"):
            chat_task.prompt(messages, max_new_tokens)
        return

    prompt = chat_task.prompt(messages, max_new_tokens)

    assert prompt.ids == expected
    history = [m for m in messages if m.role != "system"]
    kept = messages[:1] + history[len(history) - prompt.turns_used :]
    assert prompt.ids == chat_task._encode(kept)  # exactly the template's encoding


def test_long_histories_are_windowed_with_a_few_encodings(chat_task: ChatTask) -> None:
    messages = [ChatMessage("system", "You are helpful.")]
    for i in range(300):
        messages.append(ChatMessage("user", f"alice: message number {i} about the release"))
        messages.append(ChatMessage("assistant", f"answer number {i} about the plan"))
    encodings: list[int] = []
    original = chat_task._encode

    def counting(turns: Sequence[ChatMessage]) -> list[int]:
        encodings.append(len(turns))
        return original(turns)

    chat_task._encode = counting  # type: ignore[method-assign]
    try:
        prompt = chat_task.prompt(messages, 16)
        encodings.clear()
        again = chat_task.prompt(messages, 16)  # turn lengths are remembered
    finally:
        del chat_task._encode

    assert prompt == again
    assert 0 < prompt.turns_used < 600
    assert len(prompt.ids) <= 512 - 16
    assert len(encodings) <= 3  # the old way encoded one prompt per dropped turn: hundreds
