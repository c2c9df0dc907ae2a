"""Scaling out, measured side by side: two shard processes sharing one ``transformers serve``
against one process with its chat model in-process.

    python -m benchmarks.scale                         # SmolLM2-135M-Instruct GGUF, CPU
    python -m benchmarks.scale --requests 32 --rounds 5
    python -m benchmarks.scale --quick --model DIR     # a quick check (the tests use it)

Two setups answer the same ``--requests`` chat requests, all arriving at once, each a
conversation of a persona and one member's question (``--max-new-tokens`` each, greedy):

- in_process: one process whose ``InferenceEngine`` runs the chat model itself, on
  transformers' continuous batching; the requests go through ``engine.chat_stream``, the
  path the bot's conversation service takes.
- served: one ``transformers serve --continuous-batching --device cpu --cb-num-blocks 64``
  on 127.0.0.1, and two shard processes (``python -m benchmarks.scale --shard N``), each an
  ``InferenceEngine`` whose chat role points at that server (as ``CHAT_API_BASE`` makes it),
  each answering half of the requests through the same ``engine.chat_stream``.

The server gets as many torch threads as the in-process engine has. Every process is warmed
up (model loaded, one answer given) before anything is timed. Rounds alternate between the
setups; answers per second is the median over rounds (requests over the time from their
arrival to the last answer's end), time to first token the median and worst over every
request of every round (from its arrival to the first piece of its answer). Clocks are
``time.monotonic()``, one clock for every process on Linux. The script prints one JSON
object; a ratio is served over in_process, from the figures of this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from benchmarks.inference import _QUESTIONS
from benchmarks.serving import ServeProcess, servable_folder, transformers_serve
from bot.inference.chat import ChatMessage
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.loading import ModelSource, load_tokenizer
from bot.inference.remote import RemoteEndpoint
from bot.inference.worker import WorkerLimits
from bot.settings import default_chat_model

SHARDS = 2
REQUESTS = 16
ROUNDS = 3
MAX_NEW_TOKENS = 32
QUICK = {"requests": 4, "rounds": 1, "max_new_tokens": 8}
# The bot's defaults: 16 answers generated at once per process (INFERENCE_MAX_BATCH_SIZE).
MAX_BATCH_SIZE = 16
REQUEST_TIMEOUT_S = 600.0
# Time the shards get between being told a round's start time and that start.
START_LEAD_S = 0.3
SHARD_START_TIMEOUT_S = 300.0
SERVER_ARGS = ("--cb-max-batch-tokens", "256")  # the in-process engine's step budget on a CPU


def conversation(index: int) -> list[ChatMessage]:
    """Request ``index``: a persona naming the member, and one question (all differ)."""
    system = (
        "You are a friendly assistant in a Discord server. "
        f"You are talking to member{index}; answer briefly."
    )
    return [ChatMessage("system", system), ChatMessage("user", _QUESTIONS[index % len(_QUESTIONS)])]


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's answer and its times, in seconds from the round's start."""

    index: int
    text: str
    first_piece_s: float
    done_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "first_piece_s": self.first_piece_s,
            "done_s": self.done_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        return cls(int(data["index"]), str(data["text"]), data["first_piece_s"], data["done_s"])


async def answer(engine: InferenceEngine, index: int, start: float, max_new_tokens: int) -> Answer:
    """Wait for ``start`` (a ``time.monotonic()`` time), ask, and read the whole answer."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    first: float | None = None
    pieces: list[str] = []
    async for piece in engine.chat_stream(conversation(index), max_new_tokens=max_new_tokens):
        if first is None:
            first = time.monotonic() - start
        pieces.append(piece)
    done = time.monotonic() - start
    return Answer(index, "".join(pieces), done if first is None else first, done)


async def answer_all(
    engine: InferenceEngine, indices: Sequence[int], start: float, max_new_tokens: int
) -> list[Answer]:
    return list(await asyncio.gather(*(answer(engine, i, start, max_new_tokens) for i in indices)))


def limits() -> WorkerLimits:
    return WorkerLimits(max_batch_size=MAX_BATCH_SIZE, timeout_s=REQUEST_TIMEOUT_S)


# --- a shard process: an engine whose chat role is on the server --------------------------


async def run_shard(api_base: str, model: str, max_new_tokens: int) -> None:
    """Answer the rounds the parent sends on stdin, one JSON line each; results on stdout.

    Protocol: the shard prints ``{"ready": true}`` once warmed up; each line it reads is
    ``{"start": T, "indices": [...]}`` (answer those requests, all arriving at ``T``) and it
    prints ``{"answers": [...]}``; an empty line or end of input ends it.
    """
    endpoint = RemoteEndpoint(
        api_base,
        model,
        timeout_s=REQUEST_TIMEOUT_S,
        max_concurrent=MAX_BATCH_SIZE,
        queue_limit=limits().queue_limit,
    )
    engine = InferenceEngine(
        EngineConfig(
            models={"chat": model}, device="cpu", limits=limits(), remote={"chat": endpoint}
        )
    )
    try:
        await engine.warmup(("chat",))
        await answer(engine, 0, time.monotonic(), max_new_tokens)
        _say({"ready": True})
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            order = json.loads(line)
            answers = await answer_all(engine, order["indices"], order["start"], max_new_tokens)
            _say({"answers": [a.to_json() for a in answers]})
    finally:
        await engine.aclose()


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Shard:
    """The parent's handle on one shard process."""

    def __init__(self, number: int, server: ServeProcess, max_new_tokens: int, log: IO[bytes]):
        command = [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--shard",
            str(number),
            "--api-base",
            server.api_base,
            "--model",
            server.model,
            "--max-new-tokens",
            str(max_new_tokens),
        ]
        # A shard runs no model: one thread is plenty for its tokenizer.
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.number = number
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"shard {self.number} exited (status {self.process.wait()})")
        message: dict[str, Any] = json.loads(line)
        return message

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # end of input: the shard closes its engine and exits
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def served_round(shards: Sequence[Shard], requests: int) -> list[Answer]:
    """One round: the requests split between the shards, all arriving at one time."""
    start = time.monotonic() + START_LEAD_S
    for shard in shards:
        indices = list(range(shard.number, requests, len(shards)))
        shard.send({"start": start, "indices": indices})
    answers = [Answer.from_json(a) for shard in shards for a in shard.read()["answers"]]
    return sorted(answers, key=lambda a: a.index)


# --- the parent: both setups, rounds alternating -------------------------------------------


def summary(
    name: str, rounds: list[list[Answer]], count_tokens: Callable[[str], int]
) -> dict[str, Any]:
    """The figures of one setup over its rounds."""
    rates = [len(answers) / max(a.done_s for a in answers) for answers in rounds]
    first = [a.first_piece_s for answers in rounds for a in answers]
    tokens = [count_tokens(a.text) for answers in rounds for a in answers]
    seconds = [max(a.done_s for a in answers) for answers in rounds]
    return {
        # Requests answered in every round (each request has its own index).
        f"answered_{name}": min(len({a.index for a in answers}) for answers in rounds),
        f"nonempty_answers_{name}": min(sum(bool(a.text.strip()) for a in r) for r in rounds),
        f"answers_per_s_{name}": _figures(statistics.median(rates)),
        f"answers_per_s_{name}_by_round": [_figures(rate) for rate in rates],
        f"tokens_per_s_{name}": _figures(sum(tokens) / sum(seconds)),
        f"ttft_p50_s_{name}": _figures(statistics.median(first)),
        f"ttft_max_s_{name}": _figures(max(first)),
    }


def _figures(value: float, significant: int = 3) -> float:
    return float(f"{value:.{significant}g}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scale-") as folder:
        # Both setups run the same weights from the same files (a GGUF file dequantized).
        model = await asyncio.to_thread(servable_folder, args.model, Path(folder))
        local, served = await measure(args, model)
        tokenizer = load_tokenizer(ModelSource.parse(model))

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return figures(args, local, served, count_tokens)


async def measure(
    args: argparse.Namespace, model: str
) -> tuple[list[list[Answer]], list[list[Answer]]]:
    """The rounds of each setup, alternating: in-process first, then served."""
    threads = torch.get_num_threads()
    engine = InferenceEngine(EngineConfig(models={"chat": model}, device="cpu", limits=limits()))
    local: list[list[Answer]] = []
    served: list[list[Answer]] = []
    with (
        tempfile.TemporaryFile() as shard_log,
        transformers_serve(model, threads=threads, extra_args=SERVER_ARGS) as server,
    ):
        shards = [Shard(n, server, args.max_new_tokens, shard_log) for n in range(SHARDS)]
        try:
            await engine.ensure_loaded("chat")
            await answer(engine, 0, time.monotonic(), args.max_new_tokens)  # warm-up
            for shard in shards:
                await asyncio.wait_for(asyncio.to_thread(shard.read), SHARD_START_TIMEOUT_S)
            for _ in range(args.rounds):
                start = time.monotonic() + START_LEAD_S
                requests = range(args.requests)
                local.append(await answer_all(engine, requests, start, args.max_new_tokens))
                served.append(await asyncio.to_thread(served_round, shards, args.requests))
        except BaseException:
            shard_log.seek(0)
            sys.stderr.write(shard_log.read().decode(errors="replace")[-3000:])
            raise
        finally:
            for shard in shards:
                shard.stop()
            await engine.aclose()
    return local, served


def figures(
    args: argparse.Namespace,
    local: list[list[Answer]],
    served: list[list[Answer]],
    count_tokens: Callable[[str], int],
) -> dict[str, Any]:
    """The printed figures: each setup's, and served over in-process."""
    result: dict[str, Any] = {
        "model": Path(args.model).name,
        "requests": args.requests,
        "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens,
        "shards": SHARDS,
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "mean_answer_tokens": round(
            statistics.mean(count_tokens(a.text) for r in local + served for a in r), 1
        ),
        # Greedy on both sides: how many answers of the first round were the same text.
        "same_answers": sum(a.text == b.text for a, b in zip(local[0], served[0], strict=True)),
    }
    result |= summary("in_process", local, count_tokens)
    result |= summary("served", served, count_tokens)
    for figure in ("answers_per_s", "tokens_per_s", "ttft_p50_s", "ttft_max_s"):
        served_value = result[f"{figure}_served"]
        result[f"{figure}_served_over_in_process"] = round(
            served_value / result[f"{figure}_in_process"], 2
        )
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description="Two shards sharing one transformers serve vs one in-process engine.",
    )
    parser.add_argument("--model", default=default_chat_model(), help="chat model")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="requests per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per setup")
    parser.add_argument(
        "--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="tokens per answer at most"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run for tests: {', '.join(f'{k}={v}' for k, v in QUICK.items())}",
    )
    # A shard process (started by the parent, not by hand).
    parser.add_argument("--shard", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--api-base", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.requests < SHARDS or args.rounds < 1 or args.max_new_tokens < 1:
        parser.error(f"needs at least {SHARDS} requests, 1 round and 1 new token")
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    arguments = parse_args()
    if arguments.shard is not None:
        asyncio.run(run_shard(arguments.api_base, arguments.model, arguments.max_new_tokens))
    else:
        print(json.dumps(asyncio.run(main(arguments)), indent=2))
