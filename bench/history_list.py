"""How fast the history list is with 10,000 conversations shared in one team.

    .venv/bin/python bench/history_list.py [--conversations 10000] [--messages 2] [--runs 30]

Makes a temporary SQLite database (PLAYGROUND_DATA_DIR in a temp dir, migrated), creates a team
of 5 with 10,000 shared conversations (bulk_create, two messages each), logs one member in with
the Django test Client and times the list page's server side (request to response, in process)
for several views of the list. Prints median and p95 per view, the query count, and PASS/FAIL
against the target: under 150 ms for the list page.

    .venv/bin/python bench/history_list.py --postgres postgres://postgres@127.0.0.1:5432/postgres

runs it on PostgreSQL instead, in a scratch database created next to the given one and dropped after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 150.0

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def scratch_postgres(url: str) -> tuple[str, callable]:
    """A new empty database on the server of `url`, and a function that drops it."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"hexgrid_bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}")), drop


def setup(database_url: str | None) -> None:
    os.environ["PLAYGROUND_DATA_DIR"] = tempfile.mkdtemp(prefix="hexgrid-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    os.environ["DATABASE_URL"] = database_url or ""
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(conversations: int, messages: int):
    from datetime import timedelta

    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from chat.models import Conversation, Endpoint, Message

    team = Group.objects.create(name="bench team")
    users = [User.objects.create_user(f"user{i}", password="x") for i in range(5)]
    for user in users:
        user.groups.add(team)
    endpoints = [
        Endpoint.objects.create(name=f"endpoint {model}", base_url="http://127.0.0.1:9/v1", model_id=model)
        for model in ("Qwen/Qwen3-8B", "meta-llama/Llama-3.3-70B-Instruct", "mistralai/Magistral-Small-2509")
    ]
    now = timezone.now()
    rows = [
        Conversation(
            owner=users[i % len(users)], team=team, visibility="team", endpoint=endpoints[i % len(endpoints)],
            title=f"Conversation number {i} about topic {i % 97}", options={"temperature": 0.7},
        )
        for i in range(conversations)
    ]
    Conversation.objects.bulk_create(rows, batch_size=1000)
    # Spread the activity over a year (auto_now set them all to now).
    ids = list(Conversation.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 1000):
        batch = Conversation.objects.filter(pk__in=ids[start:start + 1000])
        updates = []
        for c in batch:
            c.updated_at = now - timedelta(minutes=(c.pk * 53) % 525_600)
            updates.append(c)
        Conversation.objects.bulk_update(updates, ["updated_at"], batch_size=1000)
    message_rows = []
    for pk in ids:
        for position in range(messages):
            role = "user" if position % 2 == 0 else "assistant"
            text = f"message {position} of {pk}: the quick brown fox {pk % 1013} jumps"
            message_rows.append(Message(conversation_id=pk, position=position, role=role, content=text, text_index=text))
        if len(message_rows) >= 5000:
            Message.objects.bulk_create(message_rows)
            message_rows = []
    Message.objects.bulk_create(message_rows)
    from django.db import connection

    with connection.cursor() as cursor:  # planner statistics, as autovacuum/analyze would have them
        cursor.execute("ANALYZE")
    return users[0]


def time_view(client, params: dict, headers: dict, runs: int) -> tuple[list[float], int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get("/", params, headers=headers)  # warm up (templates, connection)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get("/", params, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as queries:
        client.get("/", params, headers=headers)
    return times, len(queries), response.content.count(b'<a href="/c/')


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=2, help="messages per conversation")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--postgres", metavar="URL", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    drop = None
    database_url = None
    if args.postgres:
        database_url, drop = scratch_postgres(args.postgres)
    setup(database_url)
    from django.db import connection
    from django.test import Client

    t0 = time.perf_counter()
    user = populate(args.conversations, args.messages)
    print(f"{connection.vendor}: {args.conversations:,} shared conversations, {args.messages} messages each "
          f"(created in {time.perf_counter() - t0:.1f} s); {args.runs} runs per view")
    client = Client()
    client.force_login(user)

    htmx = {"HX-Request": "true", "HX-Target": "history-results"}
    views = [  # label, query, headers, held to the target
        ("list page: Mine", {}, {}, True),
        ("list page: the team", {"scope": "team:bench team"}, {}, True),
        ("list page: all I can see", {"scope": "all"}, {}, True),
        ("list page: the team, page 200", {"scope": "team:bench team", "page": 200}, {}, True),
        ("list page: family + author filter", {"scope": "all", "family": "llama", "author": "user1"}, {}, True),
        ("htmx results only: the team, page 2", {"scope": "team:bench team", "page": 2}, htmx, True),
        ("search: title or message text", {"scope": "all", "q": "fox 17 jumps"}, {}, False),
    ]
    failed = False
    print(f"{'view':40} {'median':>9} {'p95':>9} {'queries':>8} {'rows':>5}")
    for label, params, headers, is_target in views:
        times, queries, rows = time_view(client, params, headers, args.runs)
        median, p95 = statistics.median(times), percentile(times, 95)
        verdict = ""
        if is_target:
            ok = p95 < TARGET_MS
            failed |= not ok
            verdict = "PASS" if ok else "FAIL"
        print(f"{label:40} {median:7.1f}ms {p95:7.1f}ms {queries:8} {rows:5}  {verdict}")
    print(f"target: list page p95 < {TARGET_MS:.0f} ms -> {'FAIL' if failed else 'PASS'}")
    if drop is not None:
        drop()
    else:
        from django.conf import settings

        Path(settings.DATABASES["default"]["NAME"]).unlink(missing_ok=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
