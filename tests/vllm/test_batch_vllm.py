"""A batch run on the real vLLM server: 5 rows, a JSON-schema response format, the schema check.

The rows go through the same engine as on the simulator (chat.batch.Runner, in this process);
vLLM's structured outputs make every answer match the schema, and the checks must say so."""

from __future__ import annotations

import asyncio
import json

import pytest

from chat import batch
from chat.models import Endpoint, Prompt, PromptVersion, TestCase, TestSet
from chat.schemas import check_answer

pytestmark = [pytest.mark.vllm, pytest.mark.django_db(transaction=True)]

SCHEMA = {  # the transcripts' person schema (06b): bounded, so the tiny model finishes well within max_tokens
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 2, "maxItems": 3},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "tags", "age"],
    "additionalProperties": False,
}


def test_a_five_row_batch_with_a_json_schema_check_on_the_real_server(owner, real):
    endpoint = Endpoint.objects.create(name="real vLLM", base_url=real.base_url, model_id=real.model, family="qwen",
                                       reasoning_parser=True)
    prompt = Prompt.objects.create(owner=owner, name="Person")
    version = PromptVersion.objects.create(
        prompt=prompt, number=1, created_by=owner,
        messages=[{"role": "user", "content": "Describe {{who}} as JSON."}],
        values={"options": {"max_tokens": 128, "temperature": 0, "chat_template_kwargs": {"enable_thinking": False}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}},
    )
    test_set = TestSet.objects.create(owner=owner, name="People", variables=["who"],
                                      checks=[{"kind": "json"}, {"kind": "schema"}])
    people = ["a teacher", "a pilot", "a baker", "a doctor", "a painter"]
    TestCase.objects.bulk_create([TestCase(test_set=test_set, position=i, values={"who": w}) for i, w in enumerate(people)])

    run = batch.create_run(owner, version=version, test_set=test_set, endpoints=[endpoint], concurrency=4)
    assert asyncio.run(batch.Runner(run.pk).run()) == "5 rows"

    run.refresh_from_db()
    assert run.status == "done"
    rows = list(run.results.select_related("completion", "message").order_by("position"))
    assert len(rows) == 5
    for row in rows:
        assert row.completion.status == "complete", row.message.error
        body = row.completion.request_body
        assert body["response_format"]["json_schema"]["schema"] == SCHEMA and body["stream"] is True
        assert body["messages"] == [{"role": "user", "content": f"Describe {row.values['who']} as JSON."}]
        answer = json.loads(row.message.content)  # vLLM's structured outputs: valid JSON, schema-shaped
        assert set(answer) == {"name", "tags", "age"}
        assert check_answer(body, row.message.content) == {"valid": True, "error": ""}
        assert row.schema_valid is True and row.passed is True
        assert [c["label"] for c in row.checks] == ["Valid JSON", "Matches schema"] and all(c["passed"] for c in row.checks)
        assert row.completion.ttft_ms is not None and row.completion.usage["completion_tokens"] > 0
        assert row.message.finish_reason == "stop"
    assert batch.progress(run)["endpoints"][0]["pass_rate"] == 1.0
