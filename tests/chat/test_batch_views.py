"""Batch run pages and files: who may see and change what, the form's messages, exports, compare,
and the progress socket."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from chat import batch
from chat.models import BatchRun, TestCase
from playground.asgi import application
from tests.chat.test_batch import endpoints, make_endpoint, make_test_set, make_version, results, run_now, sim  # noqa: F401
from tests.conftest import PASSWORD
from tests.sockets import Socket

pytestmark = pytest.mark.django_db(transaction=True)


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def finished(owner, team, endpoints):
    test_set = make_test_set(owner, 3)
    run = batch.create_run(owner, version=make_version(owner), test_set=test_set, endpoints=endpoints, concurrency=4,
                           visibility="team", team=team)
    run_now(run)
    run.refresh_from_db()
    return run


def test_the_run_page_shows_every_result_to_the_owner_and_the_team_and_404s_anyone_else(client, owner, teammate, outsider, finished):
    url = reverse("chat:batch_run", args=[finished.public_id])
    page = login(client, owner).get(url).content.decode()
    assert page.count('class="batch-cell"') == 6 and page.count('<span class="badge pass">pass</span>') == 6
    assert "View code" in page and 'id="batch-bar" max="6" value="6"' in page and "pass rate <b>100%</b> (3/3)" in page
    assert 'ws-connect="/ws/batch/' in page and 'name="rating"' in page  # the owner rates
    client.logout()
    page = login(client, teammate).get(url).content.decode()
    assert page.count('class="batch-cell"') == 6 and 'name="rating"' not in page and "batch-cancel" not in page
    for name in ("batch_cancel",):
        assert client.post(reverse(f"chat:{name}", args=[finished.public_id])).status_code == 404
    cell = finished.results.first()
    assert client.post(reverse("chat:batch_review", args=[finished.public_id, cell.public_id]), {"rating": "up"}).status_code == 404
    client.logout()
    login(client, outsider)
    for target in (url, reverse("chat:batch_export", args=[finished.public_id, "csv"]),
                   reverse("chat:batch_compare", args=[finished.public_id]),
                   reverse("chat:completion_code", args=[cell.completion.public_id])):
        assert client.get(target).status_code == 404
    assert finished.name not in client.get(reverse("chat:batch_list")).content.decode()


def test_a_cell_is_rated_and_annotated_and_the_same_rating_again_clears_it(client, owner, finished):
    login(client, owner)
    cell = finished.results.order_by("pk").first()
    url = reverse("chat:batch_review", args=[finished.public_id, cell.public_id])
    response = client.post(url, {"rating": "down"}, HTTP_HX_REQUEST="true")
    assert 'aria-pressed="true" aria-label="Bad answer"' in response.content.decode()
    client.post(url, {"note": "  <b>too vague</b> "})
    cell.refresh_from_db()
    assert cell.rating == -1 and cell.note == "<b>too vague</b>"
    assert "&lt;b&gt;too vague&lt;/b&gt;" in client.get(reverse("chat:batch_run", args=[finished.public_id])).content.decode()
    client.post(url, {"rating": "down"})
    cell.refresh_from_db()
    assert cell.rating is None
    response = client.post(url, {"note": "x" * 2001})
    assert "at most 2000 characters" in response.content.decode()
    cell.refresh_from_db()
    assert cell.note == "<b>too vague</b>"  # nothing lost


def test_the_form_names_the_bad_row_and_starts_nothing(client, owner, endpoints):
    login(client, owner)
    version, test_set = make_version(owner), make_test_set(owner, 4)
    TestCase.objects.filter(test_set=test_set, position=2).update(values={"city": "Rome", "unit": "celsius", "extra": "x"})
    response = client.post(reverse("chat:batch_new"), {"version": version.pk, "test_set": test_set.public_id,
                                                        "endpoints": [endpoints[0].pk], "concurrency": 4})
    assert response.status_code == 400
    assert "Row 3: The variable &#x27;extra&#x27; is not used by the prompt." in response.content.decode()
    assert not BatchRun.objects.exists()
    response = client.post(reverse("chat:batch_new"), {"version": version.pk, "test_set": test_set.public_id, "concurrency": 99})
    text = response.content.decode()
    assert "Pick at least one endpoint." in text and "less than or equal to 64" in text


def test_the_form_starts_a_run_and_lands_on_its_page(client, owner, team, endpoints):
    login(client, owner)
    version, test_set = make_version(owner), make_test_set(owner, 2)
    form = client.get(reverse("chat:batch_new") + f"?version={version.pk}&test_set={test_set.public_id}").content.decode()
    assert f'<option value="{version.pk}" selected>Weather v1</option>' in form
    response = client.post(reverse("chat:batch_new"), {"version": version.pk, "test_set": test_set.public_id,
                                                        "endpoints": [e.pk for e in endpoints], "concurrency": 3, "share": team.pk})
    run = BatchRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("chat:batch_run", args=[run.public_id])
    assert run.concurrency == 3 and run.visibility == "team" and run.team == team and run.status == "queued"
    assert run.conversation.visibility == "team" and run.conversation.team == team and run.results.count() == 4


def test_exports_hold_every_result_and_no_formula_or_key(client, owner, finished):
    from tests.chat.test_batch import KEY

    login(client, owner)
    cell = finished.results.order_by("pk").first()
    cell.note = "=HYPERLINK(\"http://evil\")"
    cell.save()
    response = client.get(reverse("chat:batch_export", args=[finished.public_id, "csv"]))
    assert response["Content-Disposition"] == f'attachment; filename="batch-{finished.public_id}.csv"'
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6 and {r["passed"] for r in rows} == {"true"}
    assert rows[0]["note"] == "'=HYPERLINK(\"http://evil\")" and rows[0]["checks"] == 'Contains "{{city}}": pass'
    assert json.loads(rows[0]["values"]) == cell.values and rows[0]["answer"] == cell.message.text
    lines = b"".join(client.get(reverse("chat:batch_export", args=[finished.public_id, "jsonl"])).streaming_content).decode().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 6 and first["completion_tokens"] > 0 and first["ttft_ms"] is not None and first["checks"][0]["passed"]
    assert KEY not in text and KEY not in "".join(lines)


def test_compare_gives_the_pass_rate_delta_and_the_rows_whose_result_changed(client, owner, endpoints, finished):
    version = finished.prompt_version
    test_set = finished.test_set
    test_set.checks = [{"kind": "contains", "value": "Paris"}]  # only row 1 (Paris) passes now
    test_set.save()
    second = batch.create_run(owner, version=version, test_set=test_set, endpoints=endpoints, concurrency=4)
    run_now(second)
    login(client, owner)
    page = client.get(reverse("chat:batch_compare", args=[finished.public_id]) + f"?with={second.public_id}").content.decode()
    assert 'id="overall-delta">-67 pts' in page  # A is the earlier run, whichever page it is asked from
    assert page.count('class="changed-row"') == 4  # rows 2 and 3 on both endpoints broke
    assert 'data-row="2" data-change="broke"' in page and 'data-row="1" data-change' not in page
    assert client.get(reverse("chat:batch_compare", args=[finished.public_id]) + "?with=not-a-uuid").status_code == 404


async def test_the_progress_socket_sends_the_bar_and_the_table_once_the_run_ends(owner, outsider, finished):
    socket = Socket(application, f"/ws/batch/{finished.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    socket.scope["user"] = owner
    connected, _ = await socket.connect()
    assert connected
    frame = await socket.receive_from(timeout=5)
    assert 'id="batch-progress"' in frame and 'hx-swap-oob="outerHTML"' in frame and 'value="6"' in frame
    assert 'id="batch-results"' in frame  # finished: the whole table, then nothing more
    await socket.disconnect()
    stranger = Socket(application, f"/ws/batch/{finished.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    stranger.scope["user"] = outsider
    connected, code = await stranger.connect()
    assert not connected and code == 4403


async def test_the_socket_shows_progress_while_the_run_goes_on(owner, endpoints, sim):
    sim.app.token_delay = 0.03
    run = await database_sync_to_async(batch.create_run)(owner, version=await database_sync_to_async(make_version)(owner),
                                                          test_set=await database_sync_to_async(make_test_set)(owner, 6),
                                                          endpoints=endpoints[:1], concurrency=2)
    socket = Socket(application, f"/ws/batch/{run.public_id}/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    socket.scope["user"] = owner
    assert (await socket.connect())[0]
    first = await socket.receive_from(timeout=5)
    assert 'value="0"' in first and "waiting for a worker" in first
    worker = asyncio.create_task(batch.Runner(run.pk).run())
    seen = []
    while 'aria-labelledby="progress-heading" data-status="done"' not in (seen[-1] if seen else ""):
        seen.append(await socket.receive_from(timeout=20))
    await worker
    counts = [int(f.split('id="batch-finished">')[1].split("<")[0]) for f in seen]
    assert counts == sorted(counts) and counts[-1] == 6 and len(set(counts)) >= 2  # it moved, live
    assert 'id="batch-results"' in seen[-1]
    await socket.disconnect()


def test_the_test_set_page_edits_its_checks_and_starts_a_batch(client, owner, teammate, team):
    test_set = make_test_set(owner, 2, checks=[])
    page = reverse("chat:testset", args=[test_set.public_id])
    url = reverse("chat:testset_checks", args=[test_set.public_id])
    login(client, owner)
    text = client.get(page).content.decode()
    assert "No checks yet" in text and f'href="/batch/new?test_set={test_set.public_id}"' in text
    response = client.post(url, {"checks": '[{"kind": "contains", "value": "{{city}}"}, {"kind": "json"}]'})
    assert "Checks saved" in response.content.decode() and "Contains &quot;{{city}}&quot;" in response.content.decode()
    test_set.refresh_from_db()
    assert test_set.checks == [{"kind": "contains", "value": "{{city}}"}, {"kind": "json"}]
    for bad, message in (('[{"kind": "contains"}', "Not valid JSON"), ('[{"kind": "regex", "pattern": "("}]', "Check 1 (regex)")):
        text = client.post(url, {"checks": bad}).content.decode()
        assert message in text and "Nothing was saved." in text
    test_set.refresh_from_db()
    assert len(test_set.checks) == 2  # nothing lost
    test_set.visibility, test_set.team = "team", team
    test_set.save()
    client.logout()
    login(client, teammate)
    assert "Edit the checks" not in client.get(page).content.decode()
    assert client.post(url, {"checks": "[]"}).status_code == 404


def test_a_run_is_in_the_history_and_its_search_and_opens_as_the_run(client, owner, outsider, finished):
    login(client, owner)
    page = client.get(reverse("chat:index") + "?scope=mine&q=Lima").content.decode()
    conversation = finished.conversation
    assert f'href="/c/{conversation.public_id}/"' in page and "batch run</span>" in page
    response = client.get(reverse("chat:conversation", args=[conversation.public_id]))
    assert response.status_code == 302 and response["Location"] == reverse("chat:batch_run", args=[finished.public_id])
    client.logout()
    login(client, outsider)
    assert f"/c/{conversation.public_id}/" not in client.get(reverse("chat:index") + "?scope=all&q=Lima").content.decode()
    assert client.get(reverse("chat:conversation", args=[conversation.public_id])).status_code == 404


def test_only_the_owner_deletes_a_run_and_everything_of_it_goes(client, owner, teammate, finished):
    from chat.models import Completion, Conversation

    url = reverse("chat:batch_delete", args=[finished.public_id])
    login(client, teammate)
    assert client.post(url).status_code == 404
    client.logout()
    login(client, owner)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("chat:batch_list")
    assert not BatchRun.objects.filter(pk=finished.pk).exists()
    assert not Conversation.objects.filter(pk=finished.conversation_id).exists()
    assert not Completion.objects.filter(conversation_id=finished.conversation_id).exists()


async def test_a_batch_runs_conversation_takes_no_send_from_a_socket(owner, finished):
    """Its answers come from the worker: a frame sent to its conversation socket is refused and saves nothing."""
    conversation = await database_sync_to_async(lambda: finished.conversation)()
    before = await conversation.messages.acount(), await conversation.completions.acount()
    socket = Socket(application, f"/ws/conversations/{conversation.public_id}/",
                    headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
    socket.scope["user"] = owner
    connected, _ = await socket.connect()
    assert connected
    await socket.receive_from()  # the snapshot
    for action in ("send", "regenerate"):
        await socket.send_to(text_data=json.dumps({"action": action, "content": "sneaked in", "HEADERS": {"HX-Request": "true"}}))
        assert "batch run" in await socket.receive_from()
    await asyncio.sleep(0.2)
    assert (await conversation.messages.acount(), await conversation.completions.acount()) == before
    await socket.disconnect()


def test_a_run_is_in_the_history_as_soon_as_it_is_started(client, owner, team, endpoints):
    """Before any row is answered (queued, or its worker not yet at it), the history lists it."""
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 2), endpoints=endpoints, concurrency=2)
    assert not run.conversation.messages.exists()
    page = login(client, owner).get(reverse("chat:index")).content.decode()
    assert f'href="/c/{run.conversation.public_id}/"' in page and "batch run</span>" in page
