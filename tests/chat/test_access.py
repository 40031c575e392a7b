"""Log-in is required on every URL except the login page and the health check."""

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Open on purpose: how would anyone log in otherwise; the container health check.
OPEN = {"login/", "admin/login/", "healthz"}
# POST-only views that answer 405 to a GET before anything is shown.
POST_ONLY = {"logout/", "admin/logout/"}


def sample_path(pattern: str) -> str:
    """A concrete path for a route or regex pattern, with plausible values for its parameters."""
    path = pattern.lstrip("^").rstrip("$").replace("\\Z", "")
    # Regex groups first (their names are in <...> too).
    path = re.sub(r"\(\?P<\w+>\[0-9a-f-\]\{36\}\)", str(uuid.uuid4()), path)  # a UUID by regex
    path = re.sub(r"\(\?P<\w+>([\w-]+)(?:\|[^)]*)?\)", r"\1", path)  # (?P<app_label>auth|chat) -> auth
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "x", path)
    path = re.sub(r"<uuid:\w+>", str(uuid.uuid4()), path)
    path = re.sub(r"<int:\w+>", "1", path)
    path = re.sub(r"<(?:\w+:)?\w+>", "x", path)
    return path.replace("\\", "")


def all_paths(resolver=None, prefix: str = "") -> list[str]:
    resolver = resolver or get_resolver()
    paths = []
    for entry in resolver.url_patterns:
        part = sample_path(str(entry.pattern))
        if isinstance(entry, URLResolver):
            paths += all_paths(entry, prefix + part)
        elif isinstance(entry, URLPattern):
            paths.append(prefix + part)
    return sorted(set(paths))


def test_the_url_list_is_not_trivially_empty():
    paths = all_paths()
    assert "admin/chat/endpoint/" in paths
    assert "" in paths and "healthz" in paths


@pytest.mark.parametrize("path", all_paths())
def test_anonymous_users_are_sent_to_log_in(client, db, path):
    response = client.get("/" + path)
    if path in OPEN:
        assert response.status_code == 200
    elif path in POST_ONLY:
        assert response.status_code in (302, 405)
    else:
        assert response.status_code == 302, path
        assert "login" in response["Location"]


def test_logged_in_user_sees_the_index(client, owner):
    client.force_login(owner)
    response = client.get("/")
    assert response.status_code == 200
    assert b"Conversations" in response.content


def test_healthz_reports_the_database(client, db):
    response = client.get("/healthz")
    assert response.json() == {"status": "ok"}


def test_non_staff_users_cannot_reach_the_endpoint_console(client, owner):
    client.force_login(owner)
    response = client.get("/admin/chat/endpoint/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_every_page_carries_a_strict_content_security_policy(client, owner):
    client.force_login(owner)
    policy = client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "img-src 'self' data:" in policy and "unsafe-eval" not in policy
