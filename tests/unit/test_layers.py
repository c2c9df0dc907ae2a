"""The layering of DESIGN.md, checked on the source: cogs are Discord glue only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[2] / "bot"
COGS = sorted((BOT / "cogs").rglob("*.py"))
SERVICES = sorted((BOT / "services").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", COGS, ids=lambda path: str(path.relative_to(BOT)))
def test_cogs_never_import_sqlalchemy_or_storage_internals(path: Path) -> None:
    forbidden = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] == "sqlalchemy"
        or name.startswith(("bot.storage.engine", "bot.storage.models"))
    }
    assert forbidden == set()


@pytest.mark.parametrize("path", SERVICES, ids=lambda path: str(path.relative_to(BOT)))
def test_services_never_import_discord(path: Path) -> None:
    assert {name for name in imported_modules(path) if name.split(".")[0] == "discord"} == set()
