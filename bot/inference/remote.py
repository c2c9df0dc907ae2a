"""Models on a serving engine: a role answered by an OpenAI-compatible server over HTTP.

vLLM, TGI, llama.cpp's server, Ollama and ``transformers serve`` all speak
``POST {base}/chat/completions``. Answers stream as server-sent events (``data: {json}``
lines); some servers end the stream with ``data: [DONE]``, others just close it, and both
are accepted. The same admission rules as the in-process path apply: at most
``max_concurrent`` requests of a role are sent at once (the rest wait in arrival order), and
beyond ``queue_limit`` waiting or running ones a member gets ``BusyError`` at once.

History is trimmed before sending, as in-process: with the server's tokenizer when the model
id can be loaded locally (a local directory, or a hub id already in the cache), otherwise
with an estimate that errs on the long side (see ``estimate_tokens``) and a safety margin on
the window (``ESTIMATE_MARGIN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from bot.errors import (
    BusyError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    UserFacingError,
)
from bot.inference.chat import ChatMessage, ChatReply
from bot.inference.splitting import pack, sentences
from bot.inference.summarize import _INSTRUCTION, MAX_REDUCE_ROUNDS, Summary
from bot.inference.window import longest_fitting_start
from bot.metrics import Metrics, RoleMetrics
from bot.redaction import mask_url_passwords

log = logging.getLogger(__name__)

# Statuses that mean "busy or restarting, try again": rate limited, bad gateway, overloaded,
# gateway timeout. Other errors are not retried (a 400 stays a 400).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 4  # the first try and three retries
BACKOFF_FIRST_S = 0.5  # then 1, 2 s (each with up to 50 % jitter), or what Retry-After says
BACKOFF_MAX_S = 8.0
CONNECT_TIMEOUT_S = 5.0
# Without the server's tokenizer: the window assumed when the model's config cannot be read,
# and the share of it that the estimate may fill (the rest is the safety margin).
DEFAULT_CONTEXT_TOKENS = 2048
ESTIMATE_MARGIN = 0.8
# Tokens a chat template wraps around one message (role markers, separators: 4 to 6 in
# ChatML and Llama 3), and around the whole prompt (the assistant's opening).
MESSAGE_OVERHEAD_TOKENS = 8
PROMPT_OVERHEAD_TOKENS = 8
# Characters per token assumed for ASCII text: English averages about 4 in the BPE
# vocabularies of current chat models, so 3 over-counts by about a third. Any other
# character counts as 2 tokens (CJK characters are 1 to 2, emoji 1 to 3 byte-level tokens).
ASCII_CHARS_PER_TOKEN = 3
NON_ASCII_TOKENS = 2
# Members' text must not be read as a template's control tokens (a forged "<|im_start|>system"
# turn): the in-process path tokenizes them as plain text; here they are broken up with a
# zero-width space before sending. These spellings are always broken up, the local tokenizer's
# own special tokens too when it loads (ChatML and Llama 3 "<|...|>", Llama 2 and Mistral,
# Gemma).
ZWSP = "\u200b"
COMMON_CONTROL_TOKENS = (
    "<|",
    "|>",
    "[INST]",
    "[/INST]",
    "<s>",
    "</s>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
)
_ERROR_BODY_CHARS = 300
# A server that ignores max_tokens is cut off: each streamed piece holds at least one token,
# and no token is this many characters long.
MAX_CHARS_PER_TOKEN = 16
# An error answer's body is only read for the log: at most this much, for at most this long
# (and never past the request's deadline), then the connection is closed.
ERROR_BODY_BYTES = 1024
ERROR_BODY_WAIT_S = 2.0


class ServerUnavailableError(InferenceError):
    """The serving engine of a role cannot be reached or stays overloaded."""

    def __init__(self, model_role: str) -> None:
        super().__init__(
            f"The {model_role} model's server isn't answering right now - please try again "
            "in a few minutes. The bot's operator has been told."
        )
        self.model_role = model_role


@dataclass(frozen=True, slots=True)
class RemoteEndpoint:
    """Where a role's model is served: the API base (``http://host:8000/v1``) and model id."""

    api_base: str
    model: str
    api_key: str | None = field(default=None, repr=False)  # sent as a bearer token
    timeout_s: float = 120.0  # one request, first byte to last
    max_concurrent: int = 16  # requests of this role sent at once
    queue_limit: int = 256  # requests of this role waiting or running

    @property
    def url(self) -> str:
        return self.api_base.rstrip("/") + "/chat/completions"


@dataclass(frozen=True, slots=True)
class Trimmed:
    """The messages sent, with their counted (or estimated) length."""

    messages: list[ChatMessage]
    prompt_tokens: int
    turns_used: int  # how many non-system messages fitted


def estimate_tokens(text: str) -> int:
    """A token count for ``text`` that errs on the long side (no tokenizer at hand).

    ASCII characters count one token per ``ASCII_CHARS_PER_TOKEN``, every other character
    ``NON_ASCII_TOKENS``. Never less than one token for a non-empty text, and never smaller
    for a longer text that starts with this one.
    """
    ascii_chars = sum(1 for char in text if char.isascii())
    other = len(text) - ascii_chars
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + other * NON_ASCII_TOKENS


def defuse_control_tokens(text: str, markers: Sequence[str]) -> str:
    """``text`` with every marker (two characters or more) broken by a zero-width space.

    Only a zero-width space is added, so the text reads the same; no marker is left, even
    where occurrences overlap (``aaa`` with the marker ``aa``).
    """
    for marker in markers:
        if len(marker) < 2 or ZWSP in marker:
            continue
        broken = marker[0] + ZWSP + marker[1:]
        while marker in text:
            text = text.replace(marker, broken)
    return text


def trim_history(
    messages: Sequence[ChatMessage], count: Callable[[str], int], budget: int
) -> list[ChatMessage]:
    """The first system message plus the longest run of newest other messages within ``budget``.

    Each message costs ``count(content) + MESSAGE_OVERHEAD_TOKENS``, the prompt
    ``PROMPT_OVERHEAD_TOKENS`` more. Raises InvalidInputError when not even the newest
    message fits (or there is none).
    """
    system = [m for m in messages if m.role == "system"][:1]
    history = [m for m in messages if m.role != "system"]
    if not history:
        raise InvalidInputError("There is nothing to answer.")
    used = PROMPT_OVERHEAD_TOKENS + sum(count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in system)
    start = len(history)
    while start > 0:
        cost = count(history[start - 1].content) + MESSAGE_OVERHEAD_TOKENS
        if used + cost > budget:
            break
        used += cost
        start -= 1
    if start == len(history):
        raise InvalidInputError(
            f"That message is too long for the chat model (it reads at most {budget} tokens)."
        )
    return system + history[start:]


class TokenCounter:
    """Counts tokens with the served model's tokenizer if it loads locally, else estimates."""

    def __init__(self, tokenizer: Any | None, context_tokens: int) -> None:
        self._tokenizer = tokenizer
        self.context_tokens = context_tokens
        own: list[str] = []
        if tokenizer is not None:
            added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
            own = [t.content for t in added.values() if getattr(t, "special", False)]
            own += [t for t in getattr(tokenizer, "all_special_tokens", []) if isinstance(t, str)]
        # Longest first: a whole token is broken up before a shorter one inside it.
        self.control_tokens = sorted({*COMMON_CONTROL_TOKENS, *own}, key=len, reverse=True)

    def defuse(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The messages with no control token left in their text (and valid UTF-8)."""
        return [
            ChatMessage(m.role, defuse_control_tokens(_encodable(m.content), self.control_tokens))
            for m in messages
        ]

    @property
    def exact(self) -> bool:
        return self._tokenizer is not None

    @classmethod
    def load(cls, model_id: str) -> TokenCounter:
        """The tokenizer and window of ``model_id`` from local files only (blocking)."""
        from transformers import AutoConfig, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=True)
        except Exception as error:  # not on this host: estimate (with a margin) instead
            log.info(
                "%s: no local tokenizer (%s); estimating token counts",
                model_id,
                str(error).splitlines()[0][:200] if str(error) else type(error).__name__,
            )
            return cls(None, DEFAULT_CONTEXT_TOKENS)
        context = None
        with contextlib.suppress(Exception):
            config = AutoConfig.from_pretrained(model_id, local_files_only=True)
            context = getattr(config, "max_position_embeddings", None)
        if not isinstance(context, int):
            limit = getattr(tokenizer, "model_max_length", None)
            # Tokenizers without a limit report a huge sentinel.
            context = limit if isinstance(limit, int) and limit < 10**7 else DEFAULT_CONTEXT_TOKENS
        return cls(tokenizer, context)

    def fit(self, messages: Sequence[ChatMessage], budget: int) -> Trimmed:
        """The persona and the newest turns whose prompt fits ``budget`` tokens.

        With a local tokenizer that has a chat template the prompt is measured exactly, as the
        in-process path does (the estimates only choose where to look); otherwise each message
        is counted with ``count`` plus the template allowances.
        """
        messages = [ChatMessage(m.role, _encodable(m.content)) for m in messages]
        if self._tokenizer is None or not getattr(self._tokenizer, "chat_template", None):
            kept = trim_history(messages, self.count, budget)
            tokens = PROMPT_OVERHEAD_TOKENS + sum(
                self.count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in kept
            )
            return Trimmed(kept, tokens, sum(1 for m in kept if m.role != "system"))
        system = [m for m in messages if m.role == "system"][:1]
        history = [m for m in messages if m.role != "system"]
        if not history:
            raise InvalidInputError("There is nothing to answer.")
        lengths: dict[int, int] = {}

        def measure(start: int) -> int:
            lengths[start] = self._prompt_length(system + history[start:])
            return lengths[start]

        estimates = [self.count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in history]
        start = longest_fitting_start(estimates, measure, budget)
        if start is None:
            raise InvalidInputError(
                f"That message is too long for the chat model ({lengths[len(history) - 1]} "
                f"tokens; it reads at most {budget})."
            )
        return Trimmed(system + history[start:], lengths[start], len(history) - start)

    def _prompt_length(self, messages: Sequence[ChatMessage]) -> int:
        assert self._tokenizer is not None
        ids = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return len(ids)

    def count(self, text: str) -> int:
        if self._tokenizer is None:
            return estimate_tokens(text)
        ids = self._tokenizer(_encodable(text), add_special_tokens=False, verbose=False)
        return len(ids["input_ids"])

    @property
    def prompt_budget(self) -> int:
        """Tokens a prompt and its answer may use together."""
        if self.exact:
            return self.context_tokens
        return int(self.context_tokens * ESTIMATE_MARGIN)


class RemoteGenerator:
    """One role's client of a serving engine (one HTTP session, opened on first use)."""

    def __init__(
        self, role: str, endpoint: RemoteEndpoint, metrics: RoleMetrics | None = None
    ) -> None:
        self.role = role
        self.endpoint = endpoint
        self.metrics = metrics or Metrics().role(role)  # the engine hands over the process's
        self._base = loggable_url(endpoint.api_base)
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(endpoint.max_concurrent)
        self._admitted = 0
        self._counter: TokenCounter | None = None
        self._counter_lock = asyncio.Lock()
        self._seconds_per_request = 2.0
        self._closed = False
        self._closing = asyncio.Event()  # set by aclose(): retries stop waiting

    @property
    def in_flight(self) -> int:
        """Requests waiting or running."""
        return self._admitted

    async def counter(self) -> TokenCounter:
        """The token counter, loaded once (off the event loop)."""
        async with self._counter_lock:
            if self._counter is None:
                self._counter = await asyncio.to_thread(TokenCounter.load, self.endpoint.model)
        return self._counter

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counter = await self.counter()
        return await asyncio.to_thread(lambda: [counter.count(text) for text in texts])

    async def prompt(self, messages: Sequence[ChatMessage], max_new_tokens: int) -> Trimmed:
        """The messages that fit the window with room for the answer."""
        counter = await self.counter()
        budget = counter.prompt_budget - max_new_tokens
        return await asyncio.to_thread(lambda: counter.fit(counter.defuse(messages), budget))

    async def stream(
        self, messages: Sequence[ChatMessage], max_new_tokens: int
    ) -> AsyncGenerator[str, None]:
        """The answer in pieces as the server sends them; closing the iterator ends the request."""
        trimmed = await self.prompt(messages, max_new_tokens)
        body = {
            "messages": [{"role": m.role, "content": m.content} for m in trimmed.messages],
            "max_tokens": max_new_tokens,
            "stream": True,
        }
        pieces = self._request(body, streaming=True)
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                yield piece

    async def chat(self, messages: Sequence[ChatMessage], max_new_tokens: int) -> ChatReply:
        """The whole answer, stripped."""
        trimmed = await self.prompt(messages, max_new_tokens)
        text = await self._complete(trimmed.messages, max_new_tokens)
        return ChatReply(text, trimmed.prompt_tokens, trimmed.turns_used)

    async def summarize(self, text: str, max_length: int) -> Summary:
        """A summary of ``text``: parts that fit the window are summarised, then their summaries."""
        counter = await self.counter()
        overhead = counter.count(_INSTRUCTION) + MESSAGE_OVERHEAD_TOKENS + PROMPT_OVERHEAD_TOKENS
        limit = max(32, counter.prompt_budget - max_length - overhead)
        [defused] = counter.defuse([ChatMessage("user", text)])
        pieces = await asyncio.to_thread(split_text, defused.content, counter.count, limit)
        chunk_count = len(pieces)
        for _ in range(MAX_REDUCE_ROUNDS):
            if len(pieces) == 1:
                break
            partial = await self._summarize_parts(pieces, max_length)
            pieces = await asyncio.to_thread(split_text, "\n".join(partial), counter.count, limit)
        finals = await self._summarize_parts(pieces, max_length)
        return Summary("\n".join(finals), chunk_count)

    async def _summarize_parts(self, texts: list[str], max_length: int) -> list[str]:
        """Each part summarised, all at once; the first failure ends the others.

        The task group gathers failures in an ExceptionGroup; the member is shown the first
        one (a user-facing one if any: the server is down, busy, too slow).
        """
        try:
            async with asyncio.TaskGroup() as group:
                parts = [
                    group.create_task(
                        self._complete([ChatMessage("user", _INSTRUCTION + text)], max_length)
                    )
                    for text in texts
                ]
        except ExceptionGroup as failed:
            raise _first_failure(failed) from None
        return [part.result() for part in parts]

    async def _complete(self, messages: Sequence[ChatMessage], max_new_tokens: int) -> str:
        body = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_new_tokens,
            "stream": True,  # the same parser for both; a long answer never hits a read timeout
        }
        pieces: list[str] = []
        stream = self._request(body, streaming=False)
        async with contextlib.aclosing(stream):
            async for piece in stream:
                pieces.append(piece)
        return "".join(pieces).strip()

    async def _request(self, body: dict[str, Any], *, streaming: bool) -> AsyncGenerator[str, None]:
        """One streamed chat completion, admitted, retried while busy, within the time limit.

        ``streaming``: the caller shows pieces as they come (its first-token time is recorded).
        """
        if self._closed:
            raise _shutting_down()
        if self._admitted >= self.endpoint.queue_limit:
            self.metrics.rejections.inc()
            raise BusyError(self.role, self._estimated_wait_s())
        self._admitted += 1
        self.metrics.in_flight.set(self._admitted)
        admitted = time.perf_counter()
        first_piece = streaming
        try:
            async with self._slots:
                if self._closed:  # shut down while this request waited for a slot
                    raise _shutting_down()
                loop = asyncio.get_running_loop()
                started = loop.time()
                deadline = started + self.endpoint.timeout_s
                response = await self._open({"model": self.endpoint.model, **body}, deadline)
                max_tokens = int(body["max_tokens"])
                pieces = chars = 0
                cut = False
                try:
                    events = _events(response.content)
                    async with contextlib.aclosing(events):
                        while True:
                            # The limit covers each wait for the server, never the caller's
                            # own work between two pieces.
                            try:
                                async with asyncio.timeout_at(deadline):
                                    event = await anext(events, None)
                            except Exception as error:
                                if self._closed:  # aclose() closed the connection under us
                                    raise _shutting_down() from None
                                if isinstance(error, TimeoutError) and not isinstance(
                                    error,
                                    aiohttp.ClientError,  # aiohttp's read timeout
                                ):
                                    raise InferenceTimeoutError(
                                        self.role, self.endpoint.timeout_s
                                    ) from None
                                if isinstance(error, HttpProcessingError):  # a line too long
                                    raise self._unreadable(error) from None
                                if not isinstance(error, aiohttp.ClientError):
                                    raise
                                log.error(  # the connection broke
                                    "%s: the server at %s stopped mid-answer (%s: %s)",
                                    self.role,
                                    self._base,
                                    type(error).__name__,
                                    error,
                                )
                                raise ServerUnavailableError(self.role) from None
                            if event is None:
                                break
                            piece = self._piece(event)
                            if not piece:
                                continue
                            pieces += 1
                            room = max_tokens * MAX_CHARS_PER_TOKEN - chars
                            if pieces > max_tokens or len(piece) > room:
                                # The server ignores max_tokens: keep what fits, stop it.
                                if pieces <= max_tokens and room > 0:
                                    yield piece[:room]
                                log.warning(
                                    "%s: the server at %s sent more than max_tokens (%d); "
                                    "the answer was cut there",
                                    self.role,
                                    self._base,
                                    max_tokens,
                                )
                                cut = True
                                break
                            chars += len(piece)
                            if first_piece:
                                first_piece = False
                                self.metrics.time_to_first_token.observe(
                                    time.perf_counter() - admitted
                                )
                            yield piece
                    if not cut:
                        response.release()  # read to the end: the connection can be reused
                finally:
                    response.close()  # stopped early: closing tells the server to stop
                self._seconds_per_request = 0.8 * self._seconds_per_request + 0.2 * (
                    loop.time() - started
                )
                self.metrics.latency.observe(time.perf_counter() - admitted)
        finally:
            self._admitted -= 1
            self.metrics.in_flight.set(self._admitted)

    async def _open(self, body: dict[str, Any], deadline: float) -> aiohttp.ClientResponse:
        """The response to ``body`` once the server accepts it (status 200).

        Connection failures and busy statuses are retried with exponential backoff and jitter
        (or after the server's Retry-After); other statuses fail at once.
        """
        session = self._get_session()
        headers = {"Accept": "text/event-stream"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        loop = asyncio.get_running_loop()
        for attempt in range(MAX_ATTEMPTS):
            retry_after: float | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    response = await session.post(self.endpoint.url, json=body, headers=headers)
            except Exception as error:
                if self._closed:  # aclose() closed the session under us
                    raise _shutting_down() from None
                # aiohttp's connect and read timeouts are TimeoutErrors too, but they mean the
                # server is unreachable (retried), not that our own deadline passed.
                if isinstance(error, TimeoutError) and not isinstance(error, aiohttp.ClientError):
                    raise InferenceTimeoutError(self.role, self.endpoint.timeout_s) from None
                if not isinstance(error, aiohttp.ClientError):
                    raise
                reason = f"{type(error).__name__}: {error}"
            else:
                if response.status == 200:
                    return response
                detail = await _error_body(response, deadline)
                reason = f"HTTP {response.status}: {detail}"
                if response.status not in RETRY_STATUSES:
                    log.error("%s: the server refused a request (%s)", self.role, reason)
                    raise InferenceError(f"The {self.role} model's server refused this request.")
                retry_after = _retry_after(response.headers.get("Retry-After"))
            delay = retry_after if retry_after is not None else _backoff(attempt)
            if attempt == MAX_ATTEMPTS - 1 or loop.time() + delay > deadline:
                log.error(
                    "%s: the server at %s is not answering (%s)",
                    self.role,
                    self._base,
                    reason,
                )
                raise ServerUnavailableError(self.role)
            log.warning("%s: %s; retrying in %.1f s", self.role, reason, delay)
            with contextlib.suppress(TimeoutError):  # the wait ends early at shutdown
                async with asyncio.timeout(delay):
                    await self._closing.wait()
            if self._closed:
                raise _shutting_down()
        raise AssertionError("unreachable")  # pragma: no cover

    def _piece(self, event: dict[str, Any]) -> str:
        if "error" in event:
            log.error("%s: the server failed mid-answer: %s", self.role, event["error"])
            raise InferenceError(f"The {self.role} model failed on this request.")
        choices = event.get("choices") or [{}]
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._unreadable(f"choices is {_shape(choices)}")
        delta = choices[0].get("delta") or choices[0].get("message") or {}
        if not isinstance(delta, dict):
            raise self._unreadable(f"the delta is {_shape(delta)}")
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    def _unreadable(self, reason: object) -> InferenceError:
        """The error for an answer that is not an OpenAI-style stream (logged once, here)."""
        log.error(
            "%s: the server at %s sent an answer that cannot be read (%.200s)",
            self.role,
            self._base,
            reason,
        )
        return InferenceError(f"The {self.role} model's server sent an answer I can't read.")

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:  # never a new session after aclose()
            raise _shutting_down()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=CONNECT_TIMEOUT_S, sock_read=self.endpoint.timeout_s
                ),
                raise_for_status=False,
            )
        return self._session

    def _estimated_wait_s(self) -> float:
        rounds = self._admitted / max(1, self.endpoint.max_concurrent)
        return rounds * self._seconds_per_request

    async def aclose(self) -> None:
        """Close the connections; answers under way end with "The bot is shutting down"."""
        self._closed = True
        self._closing.set()
        if self._session is not None:
            await self._session.close()
            self._session = None


def loggable_url(url: str) -> str:
    """``url`` as it may be logged: no password, no query string or fragment."""
    return re.sub(r"[?#].*", "", mask_url_passwords(url))


def _encodable(text: str) -> str:
    """``text`` with lone surrogates (which JSON escapes can carry) replaced: tokenizers and
    servers take only valid UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _first_failure(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first user-facing error in ``group`` (nested groups too), else its first error."""
    leaves: list[Exception] = []

    def walk(inner: BaseExceptionGroup[Exception]) -> None:
        for error in inner.exceptions:
            if isinstance(error, BaseExceptionGroup):
                walk(error)
            else:
                leaves.append(error)

    walk(group)
    return next((e for e in leaves if isinstance(e, UserFacingError)), leaves[0])


def _shape(value: object) -> str:
    """What a JSON value is, for the log (not its content)."""
    return (
        f"a {type(value).__name__}"
        if not isinstance(value, list)
        else "a list of " + (type(value[0]).__name__ if value else "nothing")
    )


def _shutting_down() -> InferenceError:
    return InferenceError("The bot is shutting down.")


def split_text(text: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Pieces of ``text`` of at most ``limit`` tokens each, cut at sentence ends where possible."""
    return pack(_cut_long(sentences(text), count, limit), count, limit) or [text]


def _cut_long(parts: list[str], count: Callable[[str], int], limit: int) -> list[str]:
    cut: list[str] = []
    for sentence in parts:
        # A "sentence" longer than a part (no punctuation) is cut into shorter runs of text.
        while count(sentence) >= limit and len(sentence) > 1:
            size = max(1, len(sentence) * (limit - 1) // (2 * count(sentence)))
            cut.append(sentence[:size])
            sentence = sentence[size:]
        cut.append(sentence)
    return cut


async def _events(content: aiohttp.StreamReader) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON payloads of a server-sent event stream, until ``[DONE]`` or the end."""
    warned = False
    async for raw in content:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            if not warned:  # once per answer: a server may send nothing else
                log.warning("ignoring a stream line that is not JSON: %.100s", data)
                warned = True
            continue
        if isinstance(event, dict):
            yield event


async def _error_body(response: aiohttp.ClientResponse, deadline: float) -> str:
    """The start of an error answer's body (for the log), read briefly; the response is closed."""
    data = b""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(min(deadline, loop.time() + ERROR_BODY_WAIT_S)):
            while len(data) < ERROR_BODY_BYTES:
                chunk = await response.content.read(ERROR_BODY_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
    except (TimeoutError, aiohttp.ClientError, ValueError):
        pass  # what came is enough for the log
    finally:
        if response.content.at_eof():
            response.release()  # read to the end: the connection can be reused
        else:
            response.close()  # more is coming (or stalled): closing ends it
    return data.decode("utf-8", errors="replace").strip()[:_ERROR_BODY_CHARS]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in seconds (dates are ignored), capped."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, BACKOFF_MAX_S)


def _backoff(attempt: int) -> float:
    base: float = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt)
    return base * (1 + random.random() / 2)  # jitter, not a secret
