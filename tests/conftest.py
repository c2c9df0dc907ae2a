"""Fixtures shared by unit and end-to-end tests."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from bot.inference.engine import EngineConfig, InferenceEngine, ModelRole
from bot.inference.worker import WorkerLimits
from bot.storage import migrate
from bot.storage.engine import SessionFactory, create_engine, create_session_factory
from tests import postgres
from tests.serving import ServeProcess, transformers_serve

BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_backends: run the test on SQLite and on PostgreSQL (TEST_DATABASE_URL)",
    )
    config.addinivalue_line(
        "markers", "slow: runs the real default chat model (tens of seconds; -m 'not slow')"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything imported so far out of the garbage collector's sight. A full collection
    otherwise walks the half-million objects of torch, transformers and hypothesis, and the
    continuous-batching manager runs one on every stop: about 1.2 s per bot shut down."""
    gc.freeze()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_backends`` get ``database_url`` once per backend (unless the test
    picks its backends itself with ``parametrize("database_url", ..., indirect=True)``)."""
    definition = metafunc.definition
    chosen = any(
        "database_url" in str(marker.args[0]) for marker in definition.iter_markers("parametrize")
    )
    if (
        "database_url" in metafunc.fixturenames
        and definition.get_closest_marker("both_backends")
        and not chosen
    ):
        metafunc.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (not yet migrated): a SQLite file, or with the ``postgresql``
    parameter a new database on the server of TEST_DATABASE_URL, dropped afterwards."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        return
    with postgres.fresh_database(postgres.server_url()) as url:
        yield url


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
    moderation: str
    summarization: str
    chat: str

    def as_roles(self) -> dict[ModelRole, str]:
        return {
            "sentiment": self.sentiment,
            "emotion": self.emotion,
            "moderation": self.moderation,
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


@pytest.fixture(scope="session")
def chat_server(tiny_models: TinyModels) -> Iterator[ServeProcess]:
    """A real ``transformers serve`` of the tiny chat model on 127.0.0.1 (about 20 s to start)."""
    with transformers_serve(tiny_models.chat) as server:
        yield server
