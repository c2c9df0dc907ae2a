"""docker-compose.yml starts a deployment the bot accepts: its settings, all shards once, one
database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
# ${NAME:-default} and ${NAME:?message}: what compose substitutes when NAME is not set.
_VARIABLE = re.compile(r"\$\{\w+(?::-(?P<default>[^}]*)|:\?[^}]*)\}")


def _unset_environment(value: str) -> str:
    """``value`` as compose gives it when no variable is set (a required one: "required")."""
    return _VARIABLE.sub(lambda m: "required" if m["default"] is None else m["default"], value)


def bot_services() -> dict[str, dict[str, str]]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return {
        name: {key: _unset_environment(str(v)) for key, v in service["environment"].items()}
        for name, service in services.items()
        if "SHARD_IDS" in (service.get("environment") or {})
    }


def test_every_shard_is_run_by_exactly_one_process_on_one_database() -> None:
    services = bot_services()
    settings = [
        Settings(**{key.lower(): value for key, value in env.items() if value != ""})  # type: ignore[arg-type]
        for env in services.values()
    ]

    assert len(services) >= 2
    [count] = {s.shard_count for s in settings}
    assert count is not None
    shards = sorted(shard for s in settings for shard in s.shard_ids or ())
    assert shards == list(range(count))
    assert len({s.database_url for s in settings}) == 1
    assert all(s.database_url.startswith("postgresql+asyncpg://") for s in settings)


def test_every_variable_given_to_the_bot_is_one_of_its_settings() -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name, env in bot_services().items():
        assert set(env) <= known, f"{name}: {set(env) - known} are not settings"
