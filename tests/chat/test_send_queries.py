"""What a send costs the database before the request goes out (issue 14: fewer trips)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import branches
from chat.consumers import ConversationConsumer
from chat.models import Message
from tests.chat.test_branches import panel_data
from tests.chat.test_consumer import conversation, endpoint, sim  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def start(owner, conversation, action="send", **data):
    consumer = ConversationConsumer()
    consumer.scope, consumer.public_id = {"user": owner}, conversation.public_id
    with CaptureQueriesContext(connection) as queries:
        ConversationConsumer.__dict__["_start"].func(consumer, action, {"content": "Hello", **data})
    return [q["sql"] for q in queries.captured_queries]


def test_a_send_takes_nine_queries_before_the_request_goes_out(owner, conversation):
    queries = start(owner, conversation)
    assert len(queries) <= 9, "\n".join(queries)  # was 12, then 14 with branches


def test_a_send_with_the_panels_values_adds_only_their_validation(owner, conversation):
    settings = urlencode(panel_data(conversation, owner))
    queries = start(owner, conversation, settings=settings)
    assert len(queries) <= 10, "\n".join(queries)  # + the endpoint field's lookup; nothing stored (unchanged)


def test_a_send_after_earlier_turns_takes_no_query_per_message(owner, conversation):
    for turn in range(3):  # three earlier exchanges, each answered
        user = branches.add_child(conversation, conversation.thread()[-1] if turn else None, role="user", content=f"q{turn}")
        branches.add_child(conversation, user, role="assistant", content=f"a{turn}", status=Message.Status.COMPLETE)
    queries = start(owner, conversation)
    assert len(queries) <= 10, "\n".join(queries)  # + the update that steps the earlier answer's siblings aside
    assert not any("JOIN" in q for q in queries if "chat_message" in q.split("FROM")[-1][:40]), "\n".join(queries)
