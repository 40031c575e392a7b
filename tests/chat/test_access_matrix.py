"""The access-control matrix: every URL of the playground and every socket frame × every persona.

Personas: the owner; a teammate, on a conversation shared with their team and on a private one; a
member of another team; staff (a superuser in no team: staff see everything in the admin, nothing
extra in the playground); anonymous. Each cell's expected result is written in the tables below.

Rules the tables encode: whoever may not see a conversation gets 404 (never 403, so existence is
not revealed, and the answer is the same as for a UUID that does not exist); read-only viewers get
the same 404 on owner-only actions; anonymous users are sent to log in, or their socket is closed
with 4401. A refused request changes nothing. Playground pages and socket frames carry UUIDs,
never integer keys. A URL pattern missing from the tables fails the suite.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from channels.db import database_sync_to_async
from tests.sockets import Socket
from django.contrib.auth.models import AnonymousUser
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from chat.forms import family_defaults
from chat.models import ApiKey, Completion, Conversation, Endpoint, Message

# --- the HTTP matrix ---------------------------------------------------------------------------------

OK = "200"
SEES = "200, lists the conversation"
BLIND = "200, does not list it"
NF = "404"
LOGIN = "302 to log-in"
MOVED = "302 elsewhere"
NA = "405"
BAD = "400"

COLUMNS = [
    ("owner", "shared"), ("owner", "private"),
    ("teammate", "shared"), ("teammate", "private"),
    ("outsider", "shared"), ("outsider", "private"),
    ("staff", "shared"), ("staff", "private"),
    ("anonymous", "shared"), ("anonymous", "private"),
]

# label, URL name, method, htmx request?, expected per column (see COLUMNS)
#                                                                      owner       teammate    outsider    staff       anonymous
#                                                                      sh     pr   sh     pr   sh     pr   sh     pr   sh     pr
HTTP = [
    ("history: mine",               "index",                  "GET",  0, [SEES, SEES, BLIND, BLIND, BLIND, BLIND, BLIND, BLIND, LOGIN, LOGIN]),
    ("history: all I can see",      "index?scope=all",        "GET",  0, [SEES, SEES, SEES, BLIND, BLIND, BLIND, BLIND, BLIND, LOGIN, LOGIN]),
    ("history: the red team",       "index?scope=team",       "GET",  0, [SEES, BLIND, SEES, BLIND, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("history: search (htmx)",      "index?search",           "GET",  1, [SEES, SEES, SEES, BLIND, BLIND, BLIND, BLIND, BLIND, LOGIN, LOGIN]),
    ("history: by author (htmx)",   "index?author",           "GET",  1, [SEES, SEES, SEES, BLIND, BLIND, BLIND, BLIND, BLIND, LOGIN, LOGIN]),
    ("new conversation",            "conversation_new",       "POST", 0, [MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, LOGIN, LOGIN]),
    ("new conversation (GET)",      "conversation_new",       "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("import a cURL command",       "conversation_import",    "POST", 0, [MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, LOGIN, LOGIN]),
    ("import (GET)",                "conversation_import",    "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("conversation page",           "conversation",           "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("conversation page (POST)",    "conversation",           "POST", 0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("settings panel",              "conversation_settings",  "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("settings panel (GET)",        "conversation_settings",  "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("preset",                      "conversation_preset",    "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("preset (GET)",                "conversation_preset",    "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("add a message",               "message_add",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("add a message (GET)",         "message_add",            "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("tool result",                 "tool_result",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("tool result (GET)",           "tool_result",            "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("pick a choice",               "message_pick",           "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("pick a choice (GET)",         "message_pick",           "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("switch a branch",             "message_show",           "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("switch a branch (GET)",       "message_show",           "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("next-request preview",        "conversation_next_request", "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("next-request preview (GET)",  "conversation_next_request", "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("edit a message in place",     "message_edit",           "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("edit in place (GET)",         "message_edit",           "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("remove a message",            "message_delete",         "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("remove a message (GET)",      "message_delete",         "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("View code",                   "completion_code",        "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("View code (htmx)",            "completion_code",        "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("inspector",                   "completion_inspect",     "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("inspector (htmx)",            "completion_inspect",     "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("rename",                      "conversation_title",     "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("rename (no htmx)",            "conversation_title",     "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("rename (GET)",                "conversation_title",     "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("share / unshare",             "conversation_visibility", "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("share (GET)",                 "conversation_visibility", "GET", 0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("delete: confirmation page",   "conversation_delete",    "GET",  0, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("delete",                      "conversation_delete",    "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("fork: form",                  "conversation_fork",      "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("fork",                        "conversation_fork",      "POST", 0, [MOVED, MOVED, MOVED, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("export JSON",                 "conversation_export_json", "GET", 0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("export JSON (POST)",          "conversation_export_json", "POST", 0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("export Markdown",             "conversation_export_markdown", "GET", 0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    # Server insight (issue 17): the meter and the next prompt take the panel's values (owner only), like the preview.
    ("token meter",                 "token_meter",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("token meter (GET)",           "token_meter",            "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("what the model will see",     "next_prompt",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("what the model will see (GET)", "next_prompt",          "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("what the model saw",          "completion_prompt",      "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("what the model saw (page)",   "completion_prompt",      "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("server load",                 "endpoint_load",          "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("health check",                "healthz",                "GET",  0, [OK, OK, OK, OK, OK, OK, OK, OK, OK, OK]),
    # The prompt library (issue 16): prompts, presets and test sets of alice's, shared with red team or private
    # (the `world` has one of each per column); use in a conversation follows the conversation's rules.
    ("library page",                "library",                "GET",  0, [OK, OK, OK, OK, OK, OK, OK, OK, LOGIN, LOGIN]),
    ("new prompt",                  "prompt_new",             "POST", 0, [MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, LOGIN, LOGIN]),
    ("new prompt (GET)",            "prompt_new",             "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("new test set",                "testset_new",            "POST", 0, [MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, LOGIN, LOGIN]),
    ("share a prompt",              "item_visibility",        "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("rename a test set",           "item_rename",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("delete a preset",             "item_delete",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("duplicate a prompt",          "item_duplicate",         "POST", 0, [MOVED, MOVED, MOVED, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("prompt page",                 "prompt",                 "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("prompt editor rows",          "prompt_editor",          "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("prompt variables (live)",     "prompt_variables",       "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("save a prompt version",       "prompt_save",            "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("prompt settings",             "prompt_settings",        "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("diff two versions",           "prompt_diff",            "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("test set page",               "testset",                "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("import rows",                 "testset_import",         "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("new row inputs",              "testset_row_new",        "GET",  1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("add a row",                   "testset_row_add",        "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("a row",                       "testset_row",            "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("edit a row",                  "testset_row?edit",       "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("delete a row",                "testset_row_delete",     "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("add a column",                "testset_column_add",     "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("delete a column",             "testset_column_delete",  "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("save settings as preset",     "preset_save",            "POST", 1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("apply a preset",              "preset_apply",           "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("use a prompt: its form",      "use_prompt_form",        "GET",  1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("use a prompt",                "use_prompt",             "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("a preset on a compare pane",  "compare_pane_preset",    "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    # Comparisons (issue 15): alice's comparison per column (two panes, one answered turn); the page,
    # export, fork and delete are the conversation rows'. Replay on… starts from the conversation's completion.
    ("new comparison: form",        "compare_new",            "GET",  0, [OK, OK, OK, OK, OK, OK, OK, OK, LOGIN, LOGIN]),
    ("new comparison",              "compare_new",            "POST", 0, [MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, MOVED, LOGIN, LOGIN]),
    ("add a pane",                  "compare_pane_add",       "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("add a pane (GET)",            "compare_pane_add",       "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("sweep",                       "compare_sweep",          "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("remove a pane",               "compare_pane_remove",    "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("shared settings",             "compare_settings",       "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("diff two panes",              "compare_diff",           "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("continue with an answer",     "compare_continue",       "POST", 1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("replay on…: form",            "completion_replay",      "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("replay on…",                  "completion_replay",      "POST", 0, [MOVED, MOVED, MOVED, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    # Batch runs (issue 16): alice's run per column (the column's prompt version × its test set on one
    # endpoint, queued, not run); a new run from the column's prompt and test set needs both to be visible.
    ("batch runs",                  "batch_list",             "GET",  0, [OK, OK, OK, OK, OK, OK, OK, OK, LOGIN, LOGIN]),
    ("new batch run: form",         "batch_new",              "GET",  0, [OK, OK, OK, OK, OK, OK, OK, OK, LOGIN, LOGIN]),
    ("new batch run",               "batch_new",              "POST", 0, [MOVED, MOVED, MOVED, BAD, BAD, BAD, BAD, BAD, LOGIN, LOGIN]),
    ("batch run page",              "batch_run",              "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("batch results table",         "batch_results",          "GET",  1, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("batch results (POST)",        "batch_results",          "POST", 1, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("cancel a batch run",          "batch_cancel",           "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("cancel (GET)",                "batch_cancel",           "GET",  0, [NA, NA, NA, NA, NA, NA, NA, NA, LOGIN, LOGIN]),
    ("delete a batch run",          "batch_delete",           "POST", 0, [MOVED, MOVED, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("rate a result",               "batch_review",           "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("compare two runs",            "batch_compare",          "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("export a run",                "batch_export",           "GET",  0, [OK, OK, OK, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
    ("a test set's checks",         "testset_checks",         "POST", 1, [OK, OK, NF, NF, NF, NF, NF, NF, LOGIN, LOGIN]),
]

# Patterns outside the app, and where they are covered.
OUTSIDE_THE_APP = {
    "login": "tests/test_login.py, tests/chat/test_access.py (open)",
    "logout": "tests/chat/test_access.py (POST only)",
}
COVERED_ELSEWHERE: dict[str, str] = {}
ADMIN_NAMESPACE = "admin"  # staff only: tests/chat/test_access.py, test_admin.py and test_staff_see_everything_in_the_admin


def url_names(resolver=None, namespace: str = "") -> set[str]:
    """Every named URL pattern, as "namespace:name"; unnamed ones as their route (so they cannot hide)."""
    resolver = resolver or get_resolver()
    names = set()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = ":".join(filter(None, [namespace, entry.namespace or ""]))
            names |= url_names(entry, inner)
        elif isinstance(entry, URLPattern):
            name = entry.name or f"(unnamed) {entry.pattern}"
            names.add(f"{namespace}:{name}" if namespace else name)
    return names


def test_the_matrix_lists_every_url_pattern():
    names = url_names()
    app = {n.split(":", 1)[1] for n in names if n.startswith("chat:")}
    covered = {row[1].split("?")[0] for row in HTTP} | set(COVERED_ELSEWHERE)
    assert app - covered == set(), "add these URL patterns to the access matrix"
    assert covered - app == set(), "the matrix lists patterns that no longer exist"
    others = {n for n in names if not n.startswith(("chat:", f"{ADMIN_NAMESPACE}:"))}
    assert others == set(OUTSIDE_THE_APP), "a URL pattern outside chat/ and admin/ is not covered"


def test_every_row_has_a_cell_per_column():
    for row in HTTP:
        assert len(row[4]) == len(COLUMNS), row[0]


@pytest.fixture
def world(owner, teammate, outsider, staff, team):
    """Two conversations of alice's (shared with red team, private) with everything the URLs point at."""
    endpoint = Endpoint.objects.create(name="qwen", base_url="http://127.0.0.1:9/v1", model_id="Qwen/Qwen3-8B")
    conversations = {}
    for state in ("shared", "private"):
        c = Conversation.objects.create(
            owner=owner, endpoint=endpoint, options=family_defaults(endpoint), title=f"{state} plan",
            team=team if state == "shared" else None, visibility="team" if state == "shared" else "private",
        )
        completion = Completion.objects.create(conversation=c, endpoint=endpoint, user=owner, request_body={"model": "Qwen/Qwen3-8B", "messages": []})
        Message.objects.create(conversation=c, position=0, role="user", content="What is the weather?")
        Message.objects.create(
            conversation=c, position=1, role="assistant", content="", completion=completion, finish_reason="tool_calls",
            tool_calls=[{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        )
        conversations[state] = c
    personas = {"owner": owner, "teammate": teammate, "outsider": outsider, "staff": staff, "anonymous": None}
    library = library_world(owner, team)
    return {"endpoint": endpoint, "conversations": conversations, "personas": personas, "library": library,
            "compare": compare_world(owner, team, endpoint), "batch": batch_world(owner, team, endpoint, library)}


def batch_world(owner, team, endpoint, library) -> dict:
    """Per column state, a queued batch run of alice's: the column's prompt v2 × its test set."""
    from chat import batch

    runs = {}
    for state in ("shared", "private"):
        lib = library[state]
        runs[state] = batch.create_run(
            owner, version=lib["prompt"].versions.get(number=2), test_set=lib["testset"], endpoints=[endpoint], concurrency=2,
            visibility="team" if state == "shared" else "private", team=team if state == "shared" else None,
        )
    return runs


def batch_request(route: str, world, state: str) -> tuple[str, dict, dict] | None:
    """The path, query and POST data of a batch run row (None for the other rows)."""
    run, lib = world["batch"][state], world["library"][state]
    routes = {  # name: (args, query, data)
        "batch_list": ([], {}, {}),
        "batch_new": ([], {}, {"version": lib["prompt"].versions.get(number=2).pk, "test_set": str(lib["testset"].public_id),
                               "endpoints": [world["endpoint"].pk], "concurrency": 2}),
        "batch_run": ([run.public_id], {}, {}),
        "batch_results": ([run.public_id], {}, {}),
        "batch_cancel": ([run.public_id], {}, {}),
        "batch_delete": ([run.public_id], {}, {}),
        "batch_review": ([run.public_id, run.results.first().public_id], {}, {"rating": "up", "note": "fine"}),
        "batch_compare": ([run.public_id], {}, {}),  # the page and its picker (a run to compare with: test_batch_views.py)
        "batch_export": ([run.public_id, "csv"], {}, {}),
        "testset_checks": ([lib["testset"].public_id], {}, {"checks": '[{"type": "contains", "value": "sun"}]'}),
    }
    name = route.split("?")[0]
    if name not in routes:
        return None
    args, query, data = routes[name]
    return reverse(f"chat:{name}", args=args), query, data


def compare_world(owner, team, endpoint) -> dict:
    """Per column state, a comparison of alice's: two panes, one message answered by both."""
    from chat import compare

    comparisons = {}
    for state in ("shared", "private"):
        comparison = compare.new_comparison(owner, [(endpoint, {}), (endpoint, {"temperature": 1.0})], title=f"{state} comparison")
        if state == "shared":
            comparison.team, comparison.visibility = team, "team"
            comparison.save()
        question = Message.objects.create(conversation=comparison, position=0, role="user", content="Which?")
        for pane in comparison.panes.all():
            completion = Completion.objects.create(conversation=comparison, endpoint=endpoint, user=owner, request_body={"model": "m"})
            Message.objects.create(conversation=comparison, parent=question, position=1, role="assistant", content=f"pane {pane.position}",
                                   pane=pane, completion=completion)
        comparisons[state] = comparison
    return comparisons


def library_world(owner, team) -> dict:
    """Per column state, a prompt with two versions, a test set with a row and a preset of alice's."""
    from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet

    library = {}
    for state in ("shared", "private"):
        sharing = {"team": team, "visibility": "team"} if state == "shared" else {}
        prompt = Prompt.objects.create(owner=owner, name=f"{state} prompt", **sharing)
        for number, text in ((1, "Weather in {{city}}?"), (2, "Weather in {{city}} now?")):
            PromptVersion.objects.create(prompt=prompt, number=number, messages=[{"role": "user", "content": text}])
        testset = TestSet.objects.create(owner=owner, name=f"{state} cases", variables=["city"], **sharing)
        TestCase.objects.create(test_set=testset, position=0, values={"city": "Oslo"})
        preset = Preset.objects.create(owner=owner, name=f"{state} preset", values={"options": {"temperature": 0.5}}, **sharing)
        comparison = Conversation.objects.create(owner=owner, kind="compare", title=f"{state} comparison", **sharing)
        pane = comparison.panes.create(position=0)
        library[state] = {"prompt": prompt, "testset": testset, "preset": preset, "comparison": comparison, "pane": pane}
    return library


def library_request(route: str, world, state: str) -> tuple[str, dict, dict] | None:
    """The path, query and POST data of a prompt library row (None for the other rows)."""
    name = route.split("?")[0]
    lib, c = world["library"][state], world["conversations"][state]
    prompt, testset, preset = lib["prompt"], lib["testset"], lib["preset"]
    routes = {  # name: (args, query, data)
        "library": ([], {}, {}),
        "prompt_new": ([], {}, {"name": "New prompt"}),
        "testset_new": ([], {}, {"name": "New set", "text": "city\nBergen\n"}),
        "item_visibility": (["prompt", prompt.public_id], {}, {"share": ""}),
        "item_rename": (["testset", testset.public_id], {}, {"name": "Renamed"}),
        "item_delete": (["preset", preset.public_id], {}, {}),
        "item_duplicate": (["prompt", prompt.public_id], {}, {}),
        "prompt": ([prompt.public_id], {}, {}),
        "prompt_editor": ([prompt.public_id], {}, {"role": ["user"], "content": ["Hi {{x}}"], "add": "1"}),
        "prompt_variables": ([prompt.public_id], {}, {"role": ["user"], "content": ["Hi {{x}}"]}),
        "prompt_save": ([prompt.public_id], {}, {"role": ["user"], "content": ["Changed {{city}}"], "note": "n"}),
        "prompt_settings": ([prompt.public_id], {}, {"name": "Renamed prompt", "description": "", "preset": ""}),
        "prompt_diff": ([prompt.public_id], {"a": 1, "b": 2}, {}),
        "testset": ([testset.public_id], {}, {}),
        "testset_import": ([testset.public_id], {}, {"text": "city\nBergen\n"}),
        "testset_row_new": ([testset.public_id], {}, {}),
        "testset_row_add": ([testset.public_id], {}, {"var_city": "Bergen", "expected": ""}),
        "testset_row": ([testset.public_id, 0], {}, {"var_city": "Rome", "expected": "x"}),
        "testset_row_delete": ([testset.public_id, 0], {}, {}),
        "testset_column_add": ([testset.public_id], {}, {"name": "month", "value": "May"}),
        "testset_column_delete": ([testset.public_id], {}, {"column": "city"}),
        "preset_save": ([c.public_id], {}, {"name": "My copy"}),
        "preset_apply": ([c.public_id], {}, {"preset": str(preset.public_id)}),
        "use_prompt_form": ([c.public_id], {"prompt": str(prompt.public_id)}, {}),
        "use_prompt": ([c.public_id], {}, {"prompt": str(prompt.public_id), "var_city": "Oslo"}),
        "compare_pane_preset": ([lib["comparison"].public_id, lib["pane"].public_id], {}, {"preset": str(preset.public_id)}),
    }
    if name not in routes:
        return None
    args, query, data = routes[name]
    return reverse(f"chat:{name}", args=args), query, data


INDEX_QUERIES = {
    "index": {}, "index?scope=all": {"scope": "all"}, "index?scope=team": {"scope": "team:red team"},
    "index?search": {"scope": "all", "q": "PLAN"}, "index?author": {"scope": "all", "author": "alice"},
}
CURL = """curl http://x/v1/chat/completions -d '{"model": "Qwen/Qwen3-8B", "messages": [{"role": "user", "content": "hi"}]}'"""


def compare_request(route: str, world, state: str) -> tuple[str, dict, dict] | None:
    """The path, query and POST data of a comparison row (None for the other rows)."""
    comparison, endpoint = world["compare"][state], world["endpoint"]
    panes = list(comparison.panes.all())
    routes = {  # name: (args, query, data)
        "compare_new": ([], {}, {"endpoint_0": endpoint.pk, "endpoint_1": endpoint.pk, "overrides_1": "seed=2"}),
        "compare_pane_add": ([comparison.public_id], {}, {"pane-endpoint": endpoint.pk, "pane-overrides": "seed=3"}),
        "compare_sweep": ([comparison.public_id], {}, {"sweep-endpoint": endpoint.pk, "sweep-parameter": "seed", "sweep-values": "1..2"}),
        "compare_pane_remove": ([comparison.public_id, panes[-1].public_id], {}, {}),
        "compare_settings": ([comparison.public_id], {}, {"system_prompt": "Be brief.", "options": "max_tokens=50"}),
        "compare_diff": ([comparison.public_id], {"a": str(panes[0].public_id), "b": str(panes[1].public_id)}, {}),
        "compare_continue": ([comparison.public_id, comparison.messages.filter(pane=panes[0]).get().public_id], {}, {"target": "new"}),
    }
    name = route.split("?")[0]
    if name not in routes:
        return None
    args, query, data = routes[name]
    return reverse(f"chat:{name}", args=args), query, data


def request_for(route: str, world, state: str) -> tuple[str, dict, dict]:
    """The path, query and POST data of one row, aimed at the conversation in `state`."""
    if (library := library_request(route, world, state)) is not None:
        return library
    if (comparison := compare_request(route, world, state)) is not None:
        return comparison
    if (batch_run := batch_request(route, world, state)) is not None:
        return batch_run
    c = world["conversations"][state]
    name = route.split("?")[0]
    if name in ("index", "conversation_new", "conversation_import", "healthz"):
        args = []
    elif name in ("tool_result", "message_pick", "message_show"):
        args = [c.public_id, c.messages.get(role="assistant").public_id]
    elif name in ("message_edit", "message_delete"):
        args = [c.public_id, c.messages.get(role="user").public_id]
    elif name.startswith("completion_"):
        args = [c.completions.get().public_id]
    else:
        args = [c.public_id]
    data = {
        "conversation_new": {"endpoint": world["endpoint"].pk},
        "conversation_import": {"command": CURL},
        "conversation_preset": {"preset": "thinking"},
        "message_add": {"role": "user", "content": "another question"},
        "tool_result": {"tool_call_id": "call_1", "content": '{"temp": 21}'},
        "message_edit": {"content": "What is the weather in Oslo?"},
        "conversation_next_request": {"content": "and in Bergen?"},
        "conversation_title": {"title": "Renamed"},
        "conversation_visibility": {"share": ""},
        "conversation_fork": {"endpoint": "qwen"},
        "completion_replay": {"endpoint": world["endpoint"].pk},
    }.get(name, {})
    return reverse(f"chat:{name}", args=args), INDEX_QUERIES.get(route, {}), data


def snapshot() -> tuple:
    """Everything a refused request must leave as it was."""
    conversations = [
        (c.public_id, c.owner_id, c.title, c.visibility, c.team_id, c.options, c.system_prompt, c.tools, c.response_format)
        for c in Conversation.objects.order_by("pk")
    ]
    messages = list(Message.objects.order_by("pk").values_list("public_id", "is_active", "content", "role"))
    return conversations, messages


PK_IN_URL = re.compile(r'(?:href|action|hx-get|hx-post|hx-put|hx-patch|hx-delete|ws-connect|src)="(/(?!static/)[^"]*)"')


def assert_no_integer_keys(html: str) -> None:
    for url in PK_IN_URL.findall(html):
        assert not re.search(r"/\d+(?:[/?#]|$)", url), f"integer key in {url}"


def check(response, expected: str, title: str) -> None:
    status = response.status_code
    if expected == LOGIN:
        assert status == 302 and response["Location"].startswith(reverse("login")), (status, response.get("Location"))
    elif expected == MOVED:
        assert status == 302 and not response["Location"].startswith(reverse("login")), (status, response.get("Location"))
    elif expected in (SEES, BLIND):
        assert status == 200
        # The sidebar lists the viewer's own recent conversations on every page (never anyone
        # else's: test_the_sidebar_lists_only_the_viewers_own_conversations); the cell is about the rest.
        page = re.sub(r'<aside id="sidebar".*?</aside>', "", response.content.decode(), flags=re.S)
        assert (title in page) == (expected == SEES)
    else:
        assert status == int(expected), (status, response.content[:300])


CELLS = [
    pytest.param(row, column, id=f"{row[0]} | {column[0]}/{column[1]}")
    for row in HTTP for column in COLUMNS
]


@pytest.mark.parametrize("row, column", CELLS)
def test_http_cell(client, world, row, column):
    label, route, method, htmx, expectations = row
    persona, state = column
    expected = expectations[COLUMNS.index(column)]
    user = world["personas"][persona]
    if user is not None:
        client.force_login(user)
    path, query, data = request_for(route, world, state)
    headers = {"HX-Request": "true", "HX-Target": "history-results"} if htmx else {}
    before = snapshot()
    if method == "GET":
        response = client.get(path, query, headers=headers)
    else:
        response = client.post(path, data, headers=headers)
    check(response, expected, title=world["conversations"][state].title)
    if expected in (NF, NA, LOGIN, BAD, SEES, BLIND) or method == "GET":
        assert snapshot() == before, "a refused or read-only request changed something"
    if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
        assert_no_integer_keys(response.content.decode())


@pytest.mark.parametrize("persona", ["owner", "teammate", "outsider", "staff"])
def test_a_404_is_the_same_for_a_uuid_that_does_not_exist(client, world, persona):
    """Nobody can tell a conversation they may not see from one that does not exist."""
    client.force_login(world["personas"][persona])
    private = world["conversations"]["private"]
    real_ids = [str(private.public_id), str(private.completions.get().public_id)]
    for label, route, method, htmx, _ in HTTP:
        path, query, data = request_for(route, world, "private")
        ghost = path
        for real in real_ids:
            ghost = ghost.replace(real, str(uuid.uuid4()))
        if ghost == path:
            continue
        send = client.get if method == "GET" else client.post
        ghost_status = send(ghost, data).status_code
        assert ghost_status in (404, 405), label
        if persona != "owner":  # the owner's real requests would change things; theirs are refused
            assert send(path, data).status_code == ghost_status, label


def test_staff_see_everything_in_the_admin(client, world, staff, outsider):
    client.force_login(staff)
    page = client.get("/admin/chat/conversation/").content.decode()
    assert "shared plan" in page and "private plan" in page
    private = world["conversations"]["private"]
    assert client.get(f"/admin/chat/conversation/{private.pk}/change/").status_code == 200
    client.force_login(outsider)
    assert client.get("/admin/chat/conversation/").status_code == 302  # to the admin log-in


@pytest.mark.parametrize("persona", ["teammate", "outsider", "staff"])
def test_the_sidebar_lists_only_the_viewers_own_conversations(client, world, persona):
    user = world["personas"][persona]
    own = Conversation.objects.create(owner=user, title=f"{persona}'s own")
    Message.objects.create(conversation=own, position=0, role="user", content="Hi")  # (only used ones are listed)
    client.force_login(user)
    for path in ("/", "/?scope=all", reverse("chat:conversation", args=[world["conversations"]["shared"].public_id])):
        response = client.get(path)
        if response.status_code != 200:
            continue  # (the outsider's 404 has the sidebar too: checked by the same regex below)
        sidebar = re.search(r'<aside id="sidebar".*?</aside>', response.content.decode(), flags=re.S).group(0)
        assert f"{persona}&#x27;s own" in sidebar and "plan" not in sidebar
    sidebar = re.search(r'<aside id="sidebar".*?</aside>', client.get("/no/such/page/").content.decode(), flags=re.S).group(0)
    assert "plan" not in sidebar


def test_pages_carry_uuids_not_integer_keys(client, world, owner):
    """The pages an owner sees most, with forks and shares, link by UUID only."""
    client.force_login(owner)
    c = world["conversations"]["shared"]
    client.post(reverse("chat:conversation_fork", args=[c.public_id]), {"endpoint": "qwen"})
    fork = Conversation.objects.get(forked_from=c)
    for path in ("/", "/?scope=all", reverse("chat:conversation", args=[c.public_id]), reverse("chat:conversation", args=[fork.public_id]),
                 reverse("chat:conversation_fork", args=[c.public_id]), reverse("chat:conversation_delete", args=[c.public_id])):
        html = client.get(path).content.decode()
        assert_no_integer_keys(html)
        assert re.findall(r'href="(/c/[^"]*)"', html) or path.startswith(f"/c/{c.public_id}/")
    assert f'href="/c/{c.public_id}/"' in client.get(reverse("chat:conversation", args=[fork.public_id])).content.decode()


# --- the socket matrix ----------------------------------------------------------------------------------

ACCEPTED = "accepted: carried out"
SNAPSHOT = "accepted: the page's messages"
READ_ONLY = "refused inline: read-only"
REFUSED_4403 = "socket refused at connect (4403)"
REFUSED_4401 = "socket refused at connect (4401)"

# frame, expected per column (see COLUMNS)
#                          owner                 teammate                   outsider                     staff                        anonymous
#                          sh        pr          sh         pr              sh            pr             sh            pr             sh            pr
SOCKET = [
    ("connect",    [ACCEPTED, ACCEPTED, ACCEPTED, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4401, REFUSED_4401]),
    ("send",       [ACCEPTED, ACCEPTED, READ_ONLY, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4401, REFUSED_4401]),
    ("stop",       [ACCEPTED, ACCEPTED, READ_ONLY, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4401, REFUSED_4401]),
    ("regenerate", [ACCEPTED, ACCEPTED, READ_ONLY, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4401, REFUSED_4401]),
    ("edit",       [ACCEPTED, ACCEPTED, READ_ONLY, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4401, REFUSED_4401]),
    ("resync",     [SNAPSHOT, SNAPSHOT, SNAPSHOT, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4403, REFUSED_4401, REFUSED_4401]),
]

KEY = "sim-matrix-key-77"


@pytest.fixture(scope="module")
def sim():
    from chat.simulator import make_simulator
    from tests.servers import FaultInjector, serve_asgi

    injector = FaultInjector(make_simulator(api_key=KEY, token_delay=0.0))
    with serve_asgi(injector) as url:
        injector.url = url + "/v1"
        yield injector


@pytest.fixture
def live_world(world, sim):
    """The same world, with the conversations on a simulator endpoint and a finished first exchange."""
    key = ApiKey(name="matrix key")
    key.set_secret(KEY)
    key.save()
    endpoint = world["endpoint"]
    endpoint.base_url, endpoint.model_id, endpoint.api_key = sim.url, "sim/qwen3", key
    endpoint.save()
    for c in world["conversations"].values():
        c.messages.filter(role="assistant").update(content="Sunny.", tool_calls=None, finish_reason="stop")
    sim.headers = {}
    return world


async def open_socket(user, conversation):
    from playground.asgi import application

    communicator = Socket(
        application, f"/ws/conversations/{conversation.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    )
    communicator.scope["user"] = user or AnonymousUser()
    connected, code = await communicator.connect()
    return communicator, connected, code


async def frames_until_idle(ws, timeout=10) -> list[str]:
    frames = []
    while True:
        frame = await ws.receive_from(timeout=timeout)
        frames.append(frame)
        if 'data-state="idle"' in frame:
            return frames


def frame_for(kind: str, conversation: Conversation) -> dict:
    user_message = conversation.messages.get(role="user", position=0)
    return {
        "connect": None,
        "send": {"action": "send", "content": "And tomorrow?"},
        "stop": {"action": "stop"},
        "regenerate": {"action": "regenerate"},
        "edit": {"action": "edit", "message": str(user_message.public_id), "content": "What is the weather in Oslo?"},
        "resync": {"action": "resync"},
    }[kind]


def assert_no_integer_keys_in_frames(frames: list[str], world) -> None:
    pks = {str(pk) for pk in Message.objects.values_list("pk", flat=True)}
    for frame in frames:
        assert_no_integer_keys(frame)
        for found in re.findall(r'id="msg-([^"-]+)', frame):
            assert found not in pks, "a message id carries an integer key"


SOCKET_CELLS = [
    pytest.param(kind, expectations, column, id=f"{kind} | {column[0]}/{column[1]}")
    for kind, expectations in SOCKET for column in COLUMNS
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind, expectations, column", SOCKET_CELLS)
async def test_socket_cell(live_world, sim, kind, expectations, column):
    persona, state = column
    expected = expectations[COLUMNS.index(column)]
    user = live_world["personas"][persona]
    conversation = live_world["conversations"][state]
    frame = await database_sync_to_async(frame_for)(kind, conversation)
    before = await database_sync_to_async(snapshot)()
    if kind == "stop":
        sim.headers = {"x-sim-delay-token": "0.05"}  # a run long enough to be stopped
    ws, connected, code = await open_socket(user, conversation)
    if expected in (REFUSED_4403, REFUSED_4401):
        assert not connected and code == (4403 if expected == REFUSED_4403 else 4401)
        assert await database_sync_to_async(snapshot)() == before
        return
    assert connected
    frames = [await ws.receive_from()]  # the snapshot every viewer starts with
    assert 'id="messages"' in frames[0]
    try:
        if kind == "connect":
            pass
        elif expected == READ_ONLY:
            await ws.send_to(text_data=json.dumps(frame))
            frames.append(await ws.receive_from())
            assert 'id="frame-error"' in frames[-1] and "read-only" in frames[-1]
            assert await database_sync_to_async(snapshot)() == before
        elif kind == "resync":
            await ws.send_to(text_data=json.dumps(frame))
            frames.append(await ws.receive_from())
            assert 'id="messages"' in frames[-1] and "What is the weather?" in frames[-1]
        elif kind == "stop":
            await ws.send_to(text_data=json.dumps({"action": "send", "content": "Tell me a long story"}))
            frames.append(await ws.receive_from())
            await ws.send_to(text_data=json.dumps(frame))
            frames += await frames_until_idle(ws)
            reply = await database_sync_to_async(lambda: conversation.messages.filter(role="assistant").latest("created_at"))()
            assert reply.status == "cancelled"
        else:
            await ws.send_to(text_data=json.dumps(frame))
            frames += await frames_until_idle(ws)
            reply = await database_sync_to_async(lambda: conversation.messages.filter(role="assistant").latest("created_at"))()
            assert reply.status == "complete" and reply.content
            if kind == "edit":
                assert await database_sync_to_async(lambda: conversation.messages.filter(content="What is the weather in Oslo?", is_active=True).exists())()
    finally:
        await ws.disconnect()
    await database_sync_to_async(assert_no_integer_keys_in_frames)(frames, live_world)


@pytest.mark.django_db(transaction=True)
async def test_an_edit_frame_cannot_name_a_message_of_another_conversation(live_world, outsider):
    """Client-sent ids are looked up among the conversation's own shown messages only."""
    owner = live_world["personas"]["owner"]
    theirs = await database_sync_to_async(Conversation.objects.create)(owner=outsider, title="theirs")
    foreign = await database_sync_to_async(Message.objects.create)(conversation=theirs, position=0, role="user", content="secret")
    ws, connected, _ = await open_socket(owner, live_world["conversations"]["private"])
    await ws.receive_from()
    before = await database_sync_to_async(snapshot)()
    await ws.send_to(text_data=json.dumps({"action": "edit", "message": str(foreign.public_id), "content": "mine now"}))
    error = await ws.receive_from()
    assert "cannot be edited" in error and "secret" not in error
    assert await database_sync_to_async(snapshot)() == before
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_unsharing_closes_the_teammates_socket_and_empties_their_page(live_world, client):
    """Access is re-checked when the owner unshares: the teammate's live view goes blank and closes."""
    owner, teammate = live_world["personas"]["owner"], live_world["personas"]["teammate"]
    shared = live_world["conversations"]["shared"]
    mate, _, _ = await open_socket(teammate, shared)
    mine, _, _ = await open_socket(owner, shared)
    await mate.receive_from()
    await mine.receive_from()

    def unshare():
        client.force_login(owner)
        return client.post(reverse("chat:conversation_visibility", args=[shared.public_id]), {"share": ""}, headers={"HX-Request": "true"})

    assert (await database_sync_to_async(unshare)()).status_code == 200
    frame = await mate.receive_from()
    assert "no longer available" in frame and "What is the weather?" not in frame
    assert (await mate.receive_output())["type"] == "websocket.close"
    assert await mine.receive_nothing()  # the owner keeps watching
    await mine.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deleting_closes_every_viewers_socket(live_world, client):
    owner, teammate = live_world["personas"]["owner"], live_world["personas"]["teammate"]
    shared = live_world["conversations"]["shared"]
    mate, _, _ = await open_socket(teammate, shared)
    await mate.receive_from()

    def delete():
        client.force_login(owner)
        return client.post(reverse("chat:conversation_delete", args=[shared.public_id]))

    assert (await database_sync_to_async(delete)()).status_code == 302
    assert "no longer available" in await mate.receive_from()
    assert (await mate.receive_output())["type"] == "websocket.close"
    assert not await database_sync_to_async(Conversation.objects.filter(public_id=shared.public_id).exists)()
