"""The protocol layer stays pure: no Django anywhere, httpx only in client.py and its transport."""

from __future__ import annotations

import ast
from pathlib import Path

import chat.upstream

PACKAGE = Path(chat.upstream.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_imports_django():
    for path in PACKAGE.rglob("*.py"):
        offenders = {m for m in imported_modules(path) if m.split(".")[0] == "django"}
        assert not offenders, f"{path.name} imports {offenders}"


def test_only_client_imports_httpx():
    importers = {p.name for p in PACKAGE.rglob("*.py") if any(m.split(".")[0] == "httpx" for m in imported_modules(p))}
    assert importers == {"client.py", "transport.py"}  # the client and the transport under it


def test_chat_package_init_is_empty():
    # Importing chat.upstream imports chat/__init__.py first: it must not pull Django in.
    assert (PACKAGE.parent / "__init__.py").read_text().strip() == ""


def test_public_api_is_sorted_and_complete():
    assert chat.upstream.__all__ == sorted(chat.upstream.__all__)
    for name in chat.upstream.__all__:
        assert hasattr(chat.upstream, name), name
