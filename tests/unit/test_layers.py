"""The layering of DESIGN.md, checked on the source: cogs are Discord glue only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COGS = sorted((Path(__file__).resolve().parents[2] / "bot" / "cogs").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", COGS, ids=lambda path: path.name)
def test_cogs_never_import_sqlalchemy_or_storage_internals(path: Path) -> None:
    forbidden = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] == "sqlalchemy"
        or name.startswith(("bot.storage.engine", "bot.storage.models"))
    }
    assert forbidden == set()
