"""Fixtures shared by unit and end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from bot.inference.engine import EngineConfig, InferenceEngine, ModelRole
from bot.inference.worker import WorkerLimits
from bot.storage import migrate
from bot.storage.engine import SessionFactory, create_engine, create_session_factory


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite file (not yet migrated)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """A session factory on a migrated temporary database."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


@dataclass(frozen=True)
class TinyModels:
    sentiment: str
    emotion: str
    summarization: str
    chat: str

    def as_roles(self) -> dict[ModelRole, str]:
        return {
            "sentiment": self.sentiment,
            "emotion": self.emotion,
            "summarization": self.summarization,
            "chat": self.chat,
        }


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Tiny local models, built once per test run."""
    from tests import tiny_models as build

    hf_logging.disable_progress_bar()
    built = build.build_all(tmp_path_factory.mktemp("models"))
    return TinyModels(**{role: str(path) for role, path in built.items()})


@pytest.fixture
async def engine(tiny_models: TinyModels) -> AsyncIterator[InferenceEngine]:
    """An inference engine over the tiny models, on the CPU."""
    engine = InferenceEngine(
        EngineConfig(
            models=tiny_models.as_roles(),
            device="cpu",
            limits=WorkerLimits(max_batch_size=16, max_wait_s=0.01, queue_limit=64, timeout_s=60),
        )
    )
    yield engine
    await engine.aclose()
