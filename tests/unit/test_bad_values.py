"""Out-of-range input, empty model output, and texts that must not leak secrets or paths."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from transformers import BartForConditionalGeneration

from bot.errors import InvalidInputError, ModelUnavailableError
from bot.inference.engine import EngineConfig, InferenceEngine
from bot.inference.loading import ModelLoadError
from bot.inference.worker import ModelWorker, WorkerLimits
from bot.redaction import for_members, mask_url_passwords, safe_database_url, scrub_paths
from bot.services.sentiment import SentimentService
from bot.services.summaries import (
    EMPTY_DISCUSSION_SUMMARY,
    EMPTY_SUMMARY,
    MAX_SINCE,
    ChannelMessage,
    SummaryService,
    newest_within,
    parse_duration,
)
from bot.settings import Settings
from tests.conftest import TinyModels

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# --- /summarize since: ------------------------------------------------------------------


@given(st.text())
@example("99999999999999999999d")
@example("9" * 5000 + "d")
@example("9" * 30 + "w")
@example("1" + " " * 5000 + "x")
@example("٣d")  # a digit, but not an ASCII one
def test_parse_duration_raises_only_invalid_input(value: str) -> None:
    outcome: timedelta | InvalidInputError
    try:
        outcome = parse_duration(value)
    except InvalidInputError as error:  # anything else fails the test
        outcome = error
    if isinstance(outcome, InvalidInputError):
        assert len(outcome.message) < 200  # fits a Discord message, whatever was typed
    else:
        assert timedelta(0) < outcome <= MAX_SINCE


@given(
    st.lists(
        st.tuples(st.integers(0, 40_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=4
    ),
    st.booleans(),
)
def test_parse_duration_reads_back_what_was_written(
    parts: list[tuple[int, str]], upper: bool
) -> None:
    written = " ".join(f"{number}{unit}" for number, unit in parts)
    seconds = sum(number * UNITS[unit] for number, unit in parts)
    if not 0 < seconds <= MAX_SINCE.total_seconds():
        with pytest.raises(InvalidInputError):
            parse_duration(written)
        return

    assert parse_duration(written.upper() if upper else written) == timedelta(seconds=seconds)


# --- scrubbing --------------------------------------------------------------------------

segment = st.text(
    st.characters(codec="ascii", categories=["L", "N"], include_characters="-_."), min_size=1
).filter(lambda part: part.strip(".") != "")
secret = st.text(
    st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="'\""),
    min_size=1,
)


@given(
    st.sampled_from(["postgresql+asyncpg", "mysql+aiomysql", "sqlite+aiosqlite", "redis"]),
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    secret,
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"[a-z0-9_]{0,12}", fullmatch=True),
)
def test_url_passwords_are_masked(
    scheme: str, user: str, password: str, host: str, database: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}/{database}"
    expected = f"{scheme}://{user}:***@{host}/{database}"

    assert mask_url_passwords(url) == expected
    assert mask_url_passwords(f"could not connect to '{url}': refused") == (
        f"could not connect to '{expected}': refused"
    )
    assert mask_url_passwords(expected) == expected


def test_query_passwords_and_database_urls_are_masked() -> None:
    assert mask_url_passwords("postgresql://h/db?user=x&password=hunter2&ssl=1") == (
        "postgresql://h/db?user=x&password=***&ssl=1"
    )
    assert safe_database_url("postgresql+asyncpg://bot:hunter2@db/x") == (
        "postgresql+asyncpg://bot:***@db/x"
    )
    assert "hunter2" not in safe_database_url("postgresql+asyncpg://bot:hunter2@db:port/x")
    assert safe_database_url("sqlite+aiosqlite:///./data/bot.db") == (
        "sqlite+aiosqlite:///./data/bot.db"
    )


@given(
    st.sampled_from(["/", "~/", "./", "../", "C:\\"]),
    st.lists(segment, min_size=2, max_size=6),
    st.sampled_from(["{}", "'{}'", '"{}"', "({})", "{}: not found", "load {} failed"]),
)
def test_paths_are_cut_to_their_last_part(root: str, parts: list[str], template: str) -> None:
    separator = "\\" if root == "C:\\" else "/"
    path = root + separator.join(parts)
    text = "error in " + template.format(path)

    scrubbed = scrub_paths(text)

    assert scrubbed == "error in " + template.format(parts[-1])
    assert scrub_paths(scrubbed) == scrubbed


@pytest.mark.parametrize(
    "kept",
    [
        "use /chat and/or /summarize",
        "see https://huggingface.co/org/name/resolve/main/config.json",
        "model distilbert/distilbert-base-uncased is 1/2 loaded",
    ],
)
def test_hub_ids_urls_and_commands_are_not_paths(kept: str) -> None:
    assert scrub_paths(kept) == kept


def test_model_errors_shown_to_members_name_no_host_paths() -> None:
    home = "/home/operator/private-models/smol"
    reasons = [
        f"GGUF file {home}/SmolLM2.gguf does not exist",
        f"[Errno 2] No such file or directory: '{home}/My Folder/config.json'",
        "Incorrect path_or_model_id: '/srv/x/y'. Please provide the path to a directory",
    ]
    messages = [ModelUnavailableError("chat", home, reason).message for reason in reasons]

    assert all("/home" not in m and "/srv" not in m and "private-models" not in m for m in messages)
    assert "SmolLM2.gguf" in messages[0] and "config.json" in messages[1]
    assert for_members("redis://u:hunter2@h/0 at /var/lib/x/y") == "redis://u:***@h/0 at y"


class FailingTask:
    """A model task whose load fails with an exception that has no message at all."""

    model_id = "/opt/models/secret-checkpoint"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def load(self) -> None:
        raise self.error

    def batch_key(self, payload: str) -> str:
        return ""

    def size(self, payload: str) -> int:
        return 1

    def run_batch(self, payloads: Sequence[str]) -> list[str]:
        return list(payloads)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError(), "RuntimeError"),
        (ValueError("\n\n"), "ValueError"),
        (OSError("cannot read /opt/models/secret-checkpoint/model.safetensors"), "model.safe"),
        (
            ModelLoadError("/opt/models/x", "GGUF file /opt/models/x/m.gguf does not exist"),
            "m.gguf",
        ),
    ],
)
async def test_a_failed_load_becomes_model_unavailable_without_paths(
    error: Exception, shown: str
) -> None:
    worker: ModelWorker[str, str] = ModelWorker("chat", FailingTask(error), WorkerLimits())
    try:
        with pytest.raises(ModelUnavailableError) as raised:
            await worker.ensure_loaded()
    finally:
        await worker.aclose()

    assert shown in raised.value.message and "/opt" not in raised.value.message


# --- settings ---------------------------------------------------------------------------


def test_database_password_is_not_in_the_settings_repr() -> None:
    settings = Settings(_env_file=None, database_url="postgresql+asyncpg://bot:hunter2@db/x")  # type: ignore[call-arg]

    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert settings.database_url.endswith("hunter2@db/x")


# --- empty summaries --------------------------------------------------------------------


def build_silent_bart(tiny_bart: str, path: Path) -> Path:
    """The tiny BART, made to say nothing: padding while it must go on, then the end."""
    shutil.copytree(tiny_bart, path)
    model = BartForConditionalGeneration.from_pretrained(path)
    with torch.no_grad():
        model.final_logits_bias[0, model.config.eos_token_id] = 1000.0
        model.final_logits_bias[0, model.config.pad_token_id] = 500.0
    model.save_pretrained(path)
    return path


@pytest.fixture
async def silent_engine(tiny_models: TinyModels, tmp_path: Path) -> AsyncIterator[InferenceEngine]:
    models = tiny_models.as_roles()
    models["summarization"] = str(build_silent_bart(tiny_models.summarization, tmp_path / "bart"))
    engine = InferenceEngine(
        EngineConfig(models=models, device="cpu", limits=WorkerLimits(timeout_s=60))
    )
    yield engine
    await engine.aclose()


async def test_an_empty_summary_becomes_a_clear_sentence(silent_engine: InferenceEngine) -> None:
    service = SummaryService(silent_engine, SentimentService(silent_engine))
    raw = await silent_engine.summarize("we should ship the release on friday " * 3, min_length=0)
    assert raw.text == ""  # what the model gives

    summary = await service.summarize_text(
        "we should ship the release on friday " * 3, min_length=0
    )
    messages = [
        ChannelMessage(i, "ann", f"we should ship release {i} on friday", datetime.now(UTC))
        for i in range(10)
    ]
    channel = await service.summarize_messages(messages)

    assert summary.text == EMPTY_SUMMARY
    assert [b.text for b in channel.bullets] == [EMPTY_DISCUSSION_SUMMARY]
    assert channel.bullets[0].message_id == 0
    assert channel.mood.positive + channel.mood.negative == 10  # only the messages


async def test_a_minimum_above_the_maximum_is_a_friendly_error(engine: InferenceEngine) -> None:
    service = SummaryService(engine, SentimentService(engine))
    with pytest.raises(InvalidInputError, match="minimum length"):
        await service.summarize_text(
            "we should ship the release on friday " * 3, min_length=200, max_length=50
        )


# --- how much of a channel a summary reads ----------------------------------------------


@given(
    st.lists(st.text(max_size=60), max_size=30),
    st.integers(min_value=1, max_value=300),
)
def test_a_summary_reads_the_newest_messages_that_fit(contents: list[str], limit: int) -> None:
    now = datetime.now(UTC)
    messages = [ChannelMessage(i, "ann", text, now) for i, text in enumerate(contents)]

    kept, skipped = newest_within(messages, limit)

    assert skipped == len(messages) - len(kept)
    assert sum(len(m.content) for m in kept) <= limit
    assert [m.id for m in kept] == [m.id for m in messages[skipped:]]  # the newest, in order
    if messages:
        assert kept  # at least the newest one, cut to the limit if it alone is longer
        assert kept[-1].content == messages[-1].content[-limit:]
        older = messages[skipped - 1] if skipped else None
        if older is not None and len(kept) > 1:  # the next older one would not have fitted
            assert sum(len(m.content) for m in kept) + len(older.content) > limit
