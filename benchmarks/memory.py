"""Long memory with the real default model: a fact stated far beyond the window is recalled.

    python -m benchmarks.memory            # CPU; the bundled SmolLM2 GGUF chats and summarises

A member states a fact, then other members talk for longer than the conversation window
(``HISTORY_WINDOW`` turns), then someone asks about the fact. The conversation service runs
as in the bot (a temporary SQLite database, the summary refreshed after each answer); the
script prints the stored summary, the system prompt of the last answer and that answer, as
JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.inference.chat import ChatMessage
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.services.conversations import HISTORY_WINDOW, ConversationService, Speaker
from bot.settings import default_chat_model
from bot.storage import migrate
from bot.storage.engine import create_engine, create_session_factory
from bot.storage.repositories import ChannelSettingsStore, ConversationStore

FACT = "My cat is called Biscuit and she is orange."
CHATTER = (
    "did anyone watch the match last night?",
    "I'm thinking about learning to bake bread",
    "what's everyone playing this weekend?",
    "the new release fixed the login bug",
    "any tips for staying focused while studying?",
    "I finally finished that puzzle",
)
QUESTION = "What is the name of alice's cat?"


async def run(model: str, exchanges: int, max_new_tokens: int) -> dict[str, Any]:
    """Talk past the window and ask about the fact stated first."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'memory.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        database = create_engine(url)
        engine = InferenceEngine(
            EngineConfig(models={"chat": model, "summarization": model}, device="cpu")
        )
        service = ConversationService(
            engine,
            ConversationStore(create_session_factory(database)),
            ChannelSettingsStore(create_session_factory(database)),
            max_new_tokens=max_new_tokens,
        )
        assert service.memory is not None
        prompts: list[list[ChatMessage]] = []
        stream = engine.chat_stream

        def recording(messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
            prompts.append(list(messages))
            return stream(messages, **kwargs)

        engine.chat_stream = recording  # type: ignore[method-assign]
        alice, bob, carol = (
            Speaker(1, 10, 500 + i, n) for i, n in enumerate(["alice", "bob", "carol"])
        )
        started = time.perf_counter()
        try:
            await _say(service, alice, FACT)
            for i in range(exchanges):
                await _say(service, bob if i % 2 else carol, CHATTER[i % len(CHATTER)])
                await service.memory.idle()
            answer = await _say(service, carol, QUESTION)
            summary = await service.summary(1, 10)
        finally:
            service.close()
            await engine.aclose()
            await database.dispose()
    return {
        "model": model,
        "history_window_turns": HISTORY_WINDOW,
        "turns_before_the_question": 2 + 2 * exchanges,
        "summary": summary.content if summary else None,
        "summary_covers_turns": summary.turns_folded if summary else 0,
        "last_system_prompt": prompts[-1][0].content,
        "turns_in_last_prompt": len(prompts[-1]) - 1,
        "question": QUESTION,
        "answer": answer,
        "seconds": round(time.perf_counter() - started, 1),
    }


async def _say(service: ConversationService, speaker: Speaker, text: str) -> str:
    return "".join([piece async for piece in service.respond(speaker, text)]).strip()


def main(argv: Sequence[str] | None = None) -> None:
    """Print the run as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default=None, help="chat model (default: the bundled GGUF)")
    parser.add_argument("--exchanges", type=int, default=HISTORY_WINDOW // 2 + 2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    model = args.model or default_chat_model()
    print(json.dumps(asyncio.run(run(model, args.exchanges, args.max_new_tokens)), indent=2))


if __name__ == "__main__":
    main()
