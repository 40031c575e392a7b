"""Shared fixtures: personas (owner, teammate, outsider, staff, anonymous) and a real simulator server.

Tests talk to real HTTP servers on 127.0.0.1 (tests/servers.py), never to mocks.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from tests.servers import serve_asgi

PASSWORD = "correct horse battery staple"


def pytest_configure(config):
    """A test database file of this run's own, so parallel runs never clobber each other."""
    import os
    import tempfile

    from django.conf import settings

    database = settings.DATABASES["default"]
    database["CONN_MAX_AGE"] = 0  # no connection outlives a test (the test database can be dropped)
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["TEST"]["NAME"] = os.path.join(tempfile.mkdtemp(prefix="hexgrid-test-"), "test.sqlite3")


def pytest_collection_modifyitems(config, items):
    """Browser tests last: Playwright's sync API must not share a session phase with async tests."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(autouse=True, scope="session")
def _fast_hasher():
    """MD5 for speed; session-wide, so the forked live server agrees with the tests."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def team(db) -> Group:
    return Group.objects.create(name="red team")


@pytest.fixture
def other_team(db) -> Group:
    return Group.objects.create(name="blue team")


@pytest.fixture
def owner(db, team) -> User:
    user = User.objects.create_user("alice", password=PASSWORD)
    user.groups.add(team)
    return user


@pytest.fixture
def teammate(db, team) -> User:
    user = User.objects.create_user("bob", password=PASSWORD)
    user.groups.add(team)
    return user


@pytest.fixture
def outsider(db, other_team) -> User:
    user = User.objects.create_user("charlie", password=PASSWORD)
    user.groups.add(other_team)
    return user


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def simulator_app():
    from chat.simulator import make_simulator

    return make_simulator(api_key="sim-test-key-1234")


@pytest.fixture
def simulator(simulator_app):
    """A simulator on a real socket; yields its /v1 base URL. Its API key is sim-test-key-1234."""
    with serve_asgi(simulator_app) as url:
        yield url + "/v1"
