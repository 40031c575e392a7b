"""Batch runs against the simulator on a real socket: the engine (chat.batch) in this process.

Each row is a CompletionRun saved with its result; rows are claimed once, bounded per endpoint,
cancelled on Cancel, put back on a worker's stop, and taken up again after a worker died.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from chat import batch
from chat.models import ApiKey, BatchResult, BatchRun, Completion, Endpoint, Message, Prompt, PromptVersion, TestCase, TestSet
from chat.simulator import make_simulator
from tests.servers import serve_asgi

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sim-batch-key-77"
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Dakar"]


class Counting:
    """The simulator, counting the chat requests in flight per model (the concurrency bound)."""

    def __init__(self, app) -> None:
        self.app, self.inflight, self.peak, self.bodies = app, {}, {}, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            return await self.app(scope, receive, send)
        chunks = []

        async def recorded():
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        model = None
        try:
            first = await recorded()
            body = json.loads(b"".join(chunks) or b"{}")
            self.bodies.append(body)
            model = body.get("model")
            self.inflight[model] = self.inflight.get(model, 0) + 1
            self.peak[model] = max(self.peak.get(model, 0), self.inflight[model])
            replay = [first]

            async def again():
                return replay.pop() if replay else await receive()
            await self.app(scope, again, send)
        finally:
            if model is not None:
                self.inflight[model] -= 1


@pytest.fixture
def sim():
    counting = Counting(make_simulator(api_key=KEY, token_delay=0.01))
    with serve_asgi(counting) as url:
        counting.url = url + "/v1"
        yield counting


def make_endpoint(url: str, model: str) -> Endpoint:
    key = ApiKey(name=f"batch-{model}")
    key.set_secret(KEY)
    key.save()
    return Endpoint.objects.create(name=f"Sim {model}", base_url=url, model_id=model, api_key=key)


@pytest.fixture
def endpoints(sim):
    return [make_endpoint(sim.url, "sim/qwen3"), make_endpoint(sim.url, "sim/llama-3.3")]


def make_version(owner, messages=None, values=None) -> PromptVersion:
    prompt = Prompt.objects.create(owner=owner, name="Weather")
    return PromptVersion.objects.create(
        prompt=prompt, number=1, created_by=owner,
        messages=messages or [{"role": "user", "content": "What is the weather in {{city}}? Answer in {{unit}}."}],
        values=values or {"system_prompt": "Be brief.", "options": {"max_tokens": 60}},
    )


def make_test_set(owner, rows: int, checks=None) -> TestSet:
    test_set = TestSet.objects.create(owner=owner, name=f"{rows} cities", variables=["city", "unit"],
                                      checks=checks if checks is not None else [{"kind": "contains", "value": "{{city}}"}])
    TestCase.objects.bulk_create([
        TestCase(test_set=test_set, position=i, values={"city": CITIES[i % len(CITIES)], "unit": "celsius"}, expected="")
        for i in range(rows)
    ])
    return test_set


def run_now(run: BatchRun) -> str:
    return asyncio.run(batch.Runner(run.pk).run())


def results(run: BatchRun) -> list[BatchResult]:
    return list(run.results.select_related("completion", "message").order_by("position", "endpoint_index"))


def test_every_row_runs_once_on_every_endpoint_as_an_ordinary_completion(owner, endpoints, sim):
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 6), endpoints=endpoints, concurrency=2)
    assert DBTaskResult.objects.filter(status="READY", args_kwargs__kwargs__run_id=run.pk).count() == 1  # queued with the run
    assert run_now(run) == "12 rows"

    run.refresh_from_db()
    assert run.status == "done" and run.finished_at and run.leases == {}
    rows = results(run)
    assert len(rows) == 12 and all(r.status == "done" for r in rows)
    assert len(sim.bodies) == 12  # no row twice
    assert sim.peak == {"sim/qwen3": 2, "sim/llama-3.3": 2}  # bounded per endpoint
    for row in rows:
        body = row.completion.request_body
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"What is the weather in {row.values['city']}? Answer in celsius."},
        ]
        assert body["model"] == endpoints[row.endpoint_index].model_id and body["stream"] is True
        assert body in sim.bodies  # exactly what went out
        assert row.completion.status == "complete" and row.completion.ttft_ms is not None
        assert row.message.status == "complete" and row.message.content and row.message.conversation_id == run.conversation_id
        assert row.checks == [{"label": 'Contains "{{city}}"', "passed": row.values["city"] in row.message.content,
                               "detail": "" if row.values["city"] in row.message.content else f"{row.values['city']!r} not in the answer"}]
        assert row.passed is True  # the simulator's answer names the city asked about
    # The hidden conversation holds each row's rendered messages and its answer.
    assert run.conversation.kind == "batch" and run.conversation.messages.count() == 12 * 3
    assert Completion.objects.filter(conversation=run.conversation).count() == 12
    progress = batch.progress(run)
    assert progress["finished"] == progress["total"] == 12 and progress["percent"] == 100
    assert [(e["finished"], e["passed"], e["pass_rate"]) for e in progress["endpoints"]] == [(6, 6, 1.0), (6, 6, 1.0)]


def test_checks_fail_with_a_reason_and_errors_count_as_failures(owner, endpoints, sim):
    test_set = make_test_set(owner, 2, checks=[{"kind": "regex", "pattern": r"^\d+$"}, {"kind": "json"}])
    bad = make_endpoint("http://127.0.0.1:9/v1", "sim/none")  # nothing listens there
    run = batch.create_run(owner, version=make_version(owner), test_set=test_set, endpoints=[endpoints[0], bad], concurrency=4)
    run_now(run)
    rows = results(run)
    ok = [r for r in rows if r.endpoint_index == 0]
    assert all(r.passed is False and [c["passed"] for c in r.checks] == [False, False] for r in ok)
    assert ok[0].checks[0]["detail"] == "no match" and ok[0].checks[1]["detail"].startswith("not valid JSON")
    failed = [r for r in rows if r.endpoint_index == 1]
    assert all(r.status == "done" and r.passed is False and r.completion.status == "error" for r in failed)
    assert "could not connect" in failed[0].message.error
    assert batch.progress(run)["endpoints"][1]["errors"] == 2


def test_a_bad_row_is_refused_before_anything_is_made(owner, endpoints):
    test_set = make_test_set(owner, 3)
    TestCase.objects.filter(test_set=test_set, position=1).update(values={"city": "Rome"})  # no unit
    with pytest.raises(batch.RunInvalid, match=r"Row 2: No value for the variable 'unit'"):
        batch.create_run(owner, version=make_version(owner), test_set=test_set, endpoints=endpoints, concurrency=4)
    assert not BatchRun.objects.exists() and not DBTaskResult.objects.exists()
    with pytest.raises(batch.RunInvalid, match="no rows"):
        batch.create_run(owner, version=make_version(owner), test_set=TestSet.objects.create(owner=owner, name="empty"),
                         endpoints=endpoints, concurrency=4)


def test_cancel_stops_rows_in_flight_and_starts_no_more(owner, endpoints, sim):
    sim.app.token_delay = 0.05
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 8), endpoints=endpoints[:1], concurrency=2)

    async def cancel_soon():
        while not await BatchResult.objects.filter(run=run, status="running").aexists():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await database_sync_to_async(batch.cancel)(run)

    async def both():
        await asyncio.gather(batch.Runner(run.pk).run(), cancel_soon())
    asyncio.run(both())
    run.refresh_from_db()
    assert run.status == "cancelled"
    statuses = [r.status for r in results(run)]
    assert statuses.count("running") == statuses.count("pending") == 0 and statuses.count("cancelled") >= 6
    assert len(sim.bodies) <= 2  # only the first two ever started
    stopped = [r for r in results(run) if r.completion_id]
    assert stopped and all(r.completion.status == "cancelled" and r.message.status == "cancelled" for r in stopped)


def test_a_worker_that_stops_puts_its_rows_back_and_queues_the_run_again(owner, endpoints, sim):
    sim.app.token_delay = 0.05
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 6), endpoints=endpoints[:1], concurrency=2)
    runner = batch.Runner(run.pk)

    async def stop_soon():
        while not await BatchResult.objects.filter(run=run, status="running").aexists():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        runner._stop_for_shutdown(None, None)  # what SIGTERM does

    async def both():
        await asyncio.gather(runner.run(), stop_soon())
    asyncio.run(both())
    run.refresh_from_db()
    assert run.status == "queued" and run.leases == {}
    rows = results(run)
    assert all(r.status == "pending" and r.completion_id is None for r in rows)
    assert not Completion.objects.filter(conversation=run.conversation).exists()  # the cut attempts are gone
    assert not run.conversation.messages.exists()
    assert DBTaskResult.objects.filter(status="READY", args_kwargs__kwargs__run_id=run.pk).count() == 2  # the first + again

    run_now(run)  # the next worker
    run.refresh_from_db()
    assert run.status == "done" and all(r.status == "done" and r.passed for r in results(run))
    assert Completion.objects.filter(conversation=run.conversation).count() == 6


def test_rows_left_running_by_a_dead_worker_are_run_again_once(owner, endpoints, sim):
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 4), endpoints=endpoints[:1], concurrency=4)
    DBTaskResult.objects.all().update(status="RUNNING", started_at=timezone.now() - timezone.timedelta(minutes=5))
    # A worker that died mid-run: its lease, two rows running with a half-made attempt.
    dead = f"{socket.gethostname()}:{2**22 + 7}:deadbeef"
    assert not os.path.exists(f"/proc/{2**22 + 7}")
    run.status, run.leases = "running", {dead: timezone.now().isoformat()}
    run.save()
    runner = batch.Runner(run.pk)
    runner.worker = dead
    runner.run_obj = BatchRun.objects.select_related("prompt_version__prompt", "conversation").get(pk=run.pk)
    runner.endpoints = {e.pk: e for e in run.endpoints.select_related("api_key")}
    claimed, left = runner._claim(0, 2)
    assert len(claimed) == 2 and left  # more wait
    assert BatchResult.objects.filter(run=run, status="running", worker=dead).count() == 2

    assert batch.recover() == 1
    run.refresh_from_db()
    assert run.status == "queued" and run.leases == {}
    assert BatchResult.objects.filter(run=run, status="pending").count() == 4
    assert not Message.objects.filter(conversation=run.conversation).exists()
    assert DBTaskResult.objects.filter(status="READY", args_kwargs__kwargs__run_id=run.pk).count() == 1
    dead_task = DBTaskResult.objects.get(args_kwargs__kwargs__run_id=run.pk, status="FAILED")  # not RUNNING for ever
    assert dead_task.exception_class_path == "chat.batch.WorkerGone" and "taken up again" in dead_task.traceback
    assert batch.recover() == 0  # idempotent

    run_now(run)
    rows = results(run)
    assert [r.status for r in rows] == ["done"] * 4 and len(sim.bodies) == 4
    assert run.conversation.messages.filter(role="assistant").count() == 4


def test_a_row_whose_endpoint_was_deleted_finishes_with_the_reason(owner, endpoints, sim):
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 2), endpoints=endpoints, concurrency=2)
    endpoints[1].delete()
    assert run_now(run) == "2 rows"
    run.refresh_from_db()
    assert run.status == "done"
    gone = [r for r in results(run) if r.endpoint_index == 1]
    assert [r.status for r in gone] == ["done", "done"] and all(r.passed is False for r in gone)
    assert gone[0].message.error == "Not sent: the endpoint was deleted before this row ran." and gone[0].completion.status == "error"
    assert len(sim.bodies) == 2  # only the rows of the endpoint that is still there went out


def test_a_run_deleted_while_it_runs_stops_its_worker_cleanly(owner, endpoints, sim):
    sim.app.token_delay = 0.05
    run = batch.create_run(owner, version=make_version(owner), test_set=make_test_set(owner, 6), endpoints=endpoints[:1], concurrency=2)

    async def delete_soon():
        while not await BatchResult.objects.filter(run=run, status="running").aexists():
            await asyncio.sleep(0.02)
        await database_sync_to_async(batch.cancel)(run)
        await database_sync_to_async(run.conversation.delete)()

    async def both():
        return await asyncio.gather(batch.Runner(run.pk).run(), delete_soon())
    outcome, _ = asyncio.run(both())
    assert outcome.endswith("rows") and not BatchRun.objects.filter(pk=run.pk).exists()
    assert len(sim.bodies) <= 2
