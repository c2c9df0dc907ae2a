"""How often the default chat model answers as if it were the member it answers.

    python -m benchmarks.speakers                # CPU, the default SmolLM2-135M-Instruct GGUF
    python -m benchmarks.speakers --model DIR    # another chat model

Ten single-message conversations, each from a different member, are answered greedily (48 new
tokens) with two prompt layouts:

- ``name_prefix``: the layout the bot used before - the persona as the system prompt and the
  member's message sent as ``name: text``;
- ``speaker_in_system``: the bot's layout (``bot.services.prompts``) - the member answered is
  named in the system prompt and their message goes in as written.

For each layout it counts the raw answers (before the bot's safety net strips a leading tag)
that open with a member's name followed by a colon, or with a bracketed name, and prints one
JSON object with the counts and the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.inference.chat import ChatMessage
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.services.conversations import DEFAULT_PERSONA
from bot.services.prompts import conversation_prompt
from bot.settings import default_chat_model
from bot.storage.records import Role, Turn

# Casual server messages, one per member.
PROMPTS: tuple[tuple[str, str], ...] = (
    ("mike", "hey everyone, what's up?"),
    ("nina", "anyone want to play minecraft tonight?"),
    ("oscar", "good morning!"),
    ("peggy", "i'm bored, say something funny"),
    ("quinn", "lol that was a great game yesterday"),
    ("rupert", "who wants pizza?"),
    ("sybil", "I just got a new puppy!"),
    ("trent", "ugh mondays"),
    ("ursula", "what do you think about pineapple on pizza?"),
    ("victor", "thanks for the help earlier"),
)
MAX_NEW_TOKENS = 48
# The persona the bot had while messages were sent as "name: text".
NAME_PREFIX_PERSONA = (
    "You are a helpful assistant in a Discord server. Each message starts with the sender's "
    "name. Answer in one or two short sentences."
)
Layout = Callable[[str, str], list[ChatMessage]]


def name_prefix(name: str, text: str) -> list[ChatMessage]:
    """The layout before: every member's message sent as ``name: text``."""
    return [ChatMessage("system", NAME_PREFIX_PERSONA), ChatMessage("user", f"{name}: {text}")]


def speaker_in_system(name: str, text: str) -> list[ChatMessage]:
    """The bot's layout, as the conversation service builds it."""
    turn = Turn(1, 1, 1, 1, name, Role.USER, text, 0, datetime.now(UTC))
    return conversation_prompt(DEFAULT_PERSONA, [turn])


LAYOUTS: dict[str, Layout] = {"name_prefix": name_prefix, "speaker_in_system": speaker_in_system}


def opens_with_member_name(answer: str, names: Sequence[str]) -> bool:
    """Whether ``answer`` starts like a member's message: ``name:`` or ``[name]``."""
    choice = "|".join(re.escape(name) for name in names)
    tag = rf"\s*(?:\*\*)?(?:\[\s*(?:{choice})\s*\]|(?:{choice})(?:\*\*)?\s*:)"
    return re.match(tag, answer, re.IGNORECASE) is not None


async def measure(engine: InferenceEngine, layout: Layout) -> list[str]:
    """The raw answers to the ten prompts under ``layout`` (generated concurrently)."""
    replies = await asyncio.gather(
        *(engine.chat(layout(name, text), max_new_tokens=MAX_NEW_TOKENS) for name, text in PROMPTS)
    )
    return [reply.text for reply in replies]


async def run(model: str, device: str) -> dict[str, Any]:
    """Counts and answers for every layout."""
    engine = InferenceEngine(EngineConfig(models={"chat": model}, device=device))
    names = [name for name, _ in PROMPTS]
    results: dict[str, Any] = {"model": model, "prompts": len(PROMPTS)}
    try:
        for label, layout in LAYOUTS.items():
            started = time.perf_counter()
            answers = await measure(engine, layout)
            results[label] = {
                "opens_with_member_name": sum(opens_with_member_name(a, names) for a in answers),
                "seconds": round(time.perf_counter() - started, 1),
                "answers": answers,
            }
    finally:
        await engine.aclose()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Print the measurement as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default=None, help="chat model (default: the bundled GGUF)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.model or default_chat_model(), args.device))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
