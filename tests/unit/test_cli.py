from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, default_chat_model, get_settings

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE_"))}
    # This checkout's code, not whichever copy of the package is installed.
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), clean.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "db", "models"):
        assert command in result.stdout
    # The same two commands as the README's quick start, and where the token comes from.
    for text in ("make run", "make test", "https://discord.com/developers/applications"):
        assert text in result.stdout


def test_run_without_token_exits_with_one_line(tmp_path: Path) -> None:
    result = run_cli("run", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DISCORD_TOKEN" in result.stderr and "Traceback" not in result.stderr
    # Where to get one: the developer portal, the Bot page, Reset Token.
    assert "https://discord.com/developers/applications" in result.stderr
    assert "Bot > Reset Token" in result.stderr


def test_first_start_names_models_to_download_and_unreachable_discord_fails_cleanly(
    tmp_path: Path,
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        result = run_cli(
            "run",
            env={
                "DISCORD_TOKEN": "x",
                "DISCORD_API_BASE": f"http://127.0.0.1:{port}/api/v10",
                "HF_HOME": str(tmp_path / "empty-hf-home"),
                "HF_HUB_CACHE": str(tmp_path / "empty-hf-home" / "hub"),
            },
            cwd=tmp_path,
        )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot reach Discord at http://127.0.0.1:{port}/api/v10: ")
    [line] = [x for x in result.stderr.splitlines() if "not downloaded yet" in x]
    assert "distilbert/distilbert-base-uncased-finetuned-sst-2-english (about 268 MB)" in line
    assert "facebook/bart-large-cnn (about 1.6 GB)" in line


def test_wrong_setting_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", env={"DEVICE": "gpu"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: setting DEVICE: must be auto, cpu, cuda or cuda:N (got 'gpu')"
    )


def test_a_malformed_database_url_is_reported_without_its_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://bot:hunter2@db:notaport/bot"
    result = run_cli("db", "upgrade", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert "hunter2" not in result.stderr
    assert result.stderr.strip() == (
        "error: setting DATABASE_URL: is not a SQLAlchemy URL "
        "(e.g. sqlite+aiosqlite:///data/bot.db) "
        "(got 'postgresql+asyncpg://bot:***@db:notaport/bot')"
    )


def test_an_unreachable_database_at_start_is_one_line_without_its_password(
    tmp_path: Path,
) -> None:
    # Port 1 on the loopback: nothing listens, the connection is refused at once.
    env = {"DISCORD_TOKEN": "x", "DATABASE_URL": "postgresql+asyncpg://bot:hunter2@127.0.0.1:1/b"}
    result = run_cli("run", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "cannot use the database postgresql+asyncpg://bot:***@127.0.0.1:1/b" in error


def test_db_upgrade_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "bot.db") as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"conversation_turns", "guild_settings", "moderation_events"} <= names


def test_token_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "abc.def.ghi")
    settings = Settings()
    assert "abc.def.ghi" not in repr(settings)
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == "abc.def.ghi"


def test_get_settings_reports_wrong_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "loud")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="LOG_LEVEL"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_default_chat_model_is_the_packaged_gguf() -> None:
    assert default_chat_model().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
