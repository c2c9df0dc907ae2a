"""Who may open the web app, ids typed into the dashboard, and the CLI's web command."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import InvalidInputError
from bot.settings import Settings
from bot.web.access import (
    WebSetupError,
    check_exposure,
    is_loopback,
    login_check,
    parse_id,
    web_channel_id,
)
from tests.unit.test_cli import run_cli


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_off_loopback_needs_a_password() -> None:
    check_exposure(Settings(web_host="127.0.0.1"))
    check_exposure(Settings(web_host="0.0.0.0", web_password="s3cret"))
    for password in (None, "", "   "):
        with pytest.raises(WebSetupError, match="WEB_PASSWORD"):
            check_exposure(Settings(web_host="0.0.0.0", web_password=password))


def test_login_checks_name_and_password() -> None:
    assert login_check(Settings(web_password=" ")) is None
    check = login_check(Settings(web_username="ops", web_password="pw"))
    assert check is not None
    assert check("ops", "pw")
    assert not check("ops", "pw ") and not check("admin", "pw") and not check("ops", "")


@given(st.text(max_size=200))
def test_session_channels_are_stable_positive_bigints(session: str) -> None:
    channel = web_channel_id(session)
    assert channel == web_channel_id(session)
    assert 0 < channel < 2**62


@given(st.text(max_size=40))
def test_parse_id_accepts_only_ids_and_says_why(text: str) -> None:
    refusal = None
    try:
        parsed = parse_id(text, "guild")
    except InvalidInputError as error:
        refusal, parsed = error.message, None
    if refusal is not None:
        assert "guild" in refusal  # the message names what was wrong
    elif parsed is None:
        assert not text.strip()
    else:
        assert 0 <= parsed < 2**63
        assert text.strip().split(" ", 1)[0] == str(parsed) or text.strip().startswith("0")


@given(st.integers(min_value=0, max_value=2**63 - 1), st.text(max_size=20))
def test_parse_id_reads_picker_choices(number: int, name: str) -> None:
    assert parse_id(f" {number} ({name})", "guild") == number


def test_cli_help_lists_web_and_run_web(tmp_path: Path) -> None:
    assert "web" in run_cli("--help", env={}, cwd=tmp_path).stdout
    assert "--web" in run_cli("run", "--help", env={}, cwd=tmp_path).stdout


def test_cli_refuses_to_serve_beyond_loopback_without_password(tmp_path: Path) -> None:
    result = run_cli("web", env={"WEB_HOST": "0.0.0.0", "WEB_PASSWORD": ""}, cwd=tmp_path)
    assert result.returncode == 2
    assert "WEB_PASSWORD" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_cli_web_with_an_unusable_database_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    url = f"sqlite+aiosqlite:///{tmp_path / 'file' / 'bot.db'}"  # a file where a folder must be
    result = run_cli("web", env={"DATABASE_URL": url, "WEB_PORT": "0"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot use the database" in result.stderr and "Traceback" not in result.stderr
