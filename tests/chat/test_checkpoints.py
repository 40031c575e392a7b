"""Checkpoints that do not queue behind each other (issue 14): every due run's partial answer is
saved by one UPDATE per tick of the process (chat.liveness), never over a final save."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import liveness
from chat.models import Completion, Conversation, Message
from tests.chat.test_consumer import make_endpoint

pytestmark = pytest.mark.django_db(transaction=True)


def answers(owner, count: int) -> list[Message]:
    conversation = Conversation.objects.create(owner=owner, endpoint=make_endpoint("http://127.0.0.1:9/v1"))
    completion = Completion.objects.create(conversation=conversation, request_body={}, status="streaming")
    return [
        Message.objects.create(conversation=conversation, position=i, role="assistant", completion=completion,
                               status="streaming", content="")
        for i in range(count)
    ]


def test_five_hundred_checkpoints_are_one_update(owner):
    rows = answers(owner, 500)
    text = 'Ünïcödé, "quotes", \\backslashes\\ and\nlines ' * 20
    due = [Message(pk=m.pk, content=f"{i}: {text}", reasoning=f"thinking {i}") for i, m in enumerate(rows)]
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        liveness.save_checkpoints(due, [])
    took = time.perf_counter() - started
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries.captured_queries]
    saved = dict(Message.objects.filter(pk__in=[m.pk for m in rows]).values_list("pk", "content"))
    assert all(saved[m.pk] == f"{i}: {text}" for i, m in enumerate(rows))  # a JSON string, as .update() stores it
    assert Message.objects.get(pk=rows[7].pk).reasoning == "thinking 7"
    assert took < 2.0, f"500 checkpoints took {took:.2f} s"


def test_a_checkpoint_never_overwrites_a_final_save(owner):
    [done, live] = answers(owner, 2)
    Message.objects.filter(pk=done.pk).update(status="complete", content="The final answer.")
    liveness.save_checkpoints([Message(pk=done.pk, content="The fin", reasoning=""),
                               Message(pk=live.pk, content="Once upon", reasoning="")], [])
    assert Message.objects.get(pk=done.pk).content == "The final answer."
    assert Message.objects.get(pk=live.pk).content == "Once upon"


class FakeRun:
    """Just what checkpoint_due reads (the real method, on a stand-in for the run's state)."""

    def __init__(self, pk):
        from chat.runs import CompletionRun

        self.checkpoint_due = CompletionRun.checkpoint_due.__get__(self)
        self.message = Message(pk=pk)
        self.saved, self.last_checkpoint, self.checkpointed = False, 0.0, (0, 0)
        self.content, self.reasoning = [], []


def test_a_run_is_checkpointed_when_its_text_changed_and_its_interval_passed(monkeypatch):
    from chat import runs

    monkeypatch.setattr(runs, "CHECKPOINT_INTERVAL", 2.0)
    run = FakeRun(1)
    assert run.checkpoint_due(10.0) is None  # nothing streamed yet
    run.content.append("Once")
    row = run.checkpoint_due(10.0)
    assert (row.pk, row.content, row.reasoning) == (1, "Once", "")
    run.content.append(" upon")
    assert run.checkpoint_due(11.0) is None  # 1 s later: not yet
    assert run.checkpoint_due(12.0).content == "Once upon"
    assert run.checkpoint_due(20.0) is None  # unchanged since
    run.saved = True
    run.content.append(" a time")
    assert run.checkpoint_due(30.0) is None  # the final save has it
