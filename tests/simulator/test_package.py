"""The simulator package stands alone (no Django, no chat.upstream), and the
`simulate` management command serves it."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

import chat.simulator

PACKAGE = Path(chat.simulator.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
    return names


def test_no_django_and_no_upstream_imports():
    for path in PACKAGE.glob("*.py"):
        for name in _imports(path):
            assert not name.startswith(("django", "channels", "chat.upstream", "chat.models")), (path.name, name)


def test_docstring_documents_every_fault_header():
    doc = chat.simulator.__doc__
    source = (PACKAGE / "app.py").read_text()
    for header in ("x-sim-delay-first", "x-sim-delay-token", "x-sim-status", "x-sim-body", "x-sim-cut-after",
                   "x-sim-malformed-after", "x-sim-error-after", "x-sim-reset"):
        assert header in doc
        assert header in source or header.replace("x-sim-", "").replace("-", "_") in source


def test_simulate_command_runs_uvicorn(monkeypatch):
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(SIMULATOR_API_KEY="from-settings", SIMULATOR_TOKEN_DELAY=0.02)
    import uvicorn

    from chat.management.commands.simulate import Command

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    out = io.StringIO()
    command = Command(stdout=out)
    parser = command.create_parser("manage.py", "simulate")
    options = vars(parser.parse_args(["--port", "8123", "--token-delay", "0", "--no-auth"]))
    command.handle(**options)
    (app, kwargs), = calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    assert app.api_key is None and app.token_delay == 0
    assert "sim/qwen3" in out.getvalue() and "http://127.0.0.1:8123/v1" in out.getvalue()

    calls.clear()
    command.handle(**vars(parser.parse_args([])))
    (app, kwargs), = calls
    assert kwargs["port"] == 8001 and app.api_key == settings.SIMULATOR_API_KEY
    assert app.token_delay == getattr(settings, "SIMULATOR_TOKEN_DELAY", 0.0)
