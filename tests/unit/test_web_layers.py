"""The web app is another front door beside the cogs: no Discord, and no SQL in the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_layers import imported_modules

WEB = Path(__file__).resolve().parents[2] / "bot" / "web"
# The page's modules; server.py is the web app's composition root (it builds the database
# engine when it runs without the bot, as bot/app.py does for the bot).
PAGE = sorted(path for path in WEB.glob("*.py") if path.name != "server.py")


@pytest.mark.parametrize("path", sorted(WEB.glob("*.py")), ids=lambda path: path.name)
def test_web_never_imports_discord(path: Path) -> None:
    assert {name for name in imported_modules(path) if name.split(".")[0] == "discord"} == set()


@pytest.mark.parametrize("path", PAGE, ids=lambda path: path.name)
def test_page_reads_through_services_never_sql(path: Path) -> None:
    forbidden = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] == "sqlalchemy"
        or name.startswith(("bot.storage.engine", "bot.storage.models", "bot.storage.repositories"))
    }
    assert forbidden == set()
