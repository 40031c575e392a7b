"""Every request example of the five vendor pages gets an answer of the shape
the page documents: each documented key (null ones aside) is present with the
documented JSON type. Where a page and the real transcripts disagree, the
transcripts win (e.g. `content` is null, not "", beside auto tool calls: 04a).
"""

from __future__ import annotations

import json

import pytest

from .conftest import PAGE_MODELS, page_examples, parse_sse

EXAMPLES = page_examples()


def test_all_page_examples_found():
    per_page = {}
    for example in EXAMPLES:
        per_page[example.page] = per_page.get(example.page, 0) + 1
        assert example.responses, f"{example.id} documents no response"
    assert per_page == {"generic": 1, "qwen": 10, "llama": 10, "mistral": 12, "gemma4": 7}


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def conforms(doc, ours, path: str = "$") -> None:
    """`ours` has every non-null key of `doc`, recursively, with the same JSON type."""
    if doc is None:
        return
    if isinstance(doc, dict):
        assert isinstance(ours, dict), f"{path}: expected an object, got {ours!r}"
        for key, value in doc.items():
            if value is None:
                continue
            assert key in ours, f"{path}.{key} is missing"
            if key == "content" and ours[key] is None and ours.get("tool_calls"):
                continue  # real vLLM sends null content beside auto tool calls (transcript 04a)
            conforms(value, ours[key], f"{path}.{key}")
    elif isinstance(doc, list):
        assert isinstance(ours, list), f"{path}: expected an array"
        if doc:
            assert ours, f"{path}: expected a non-empty array"
            for i, item in enumerate(ours):
                conforms(doc[0], item, f"{path}[{i}]")
    else:
        assert _json_type(ours) == _json_type(doc), f"{path}: {ours!r} is not a {_json_type(doc)}"


def _model_for(example, response) -> str:
    model = PAGE_MODELS[example.page]
    if example.page == "mistral" and "Magistral" in json.dumps(response):
        model = "sim/magistral"  # the page's reasoning answers come from a reasoning deployment
    return model


CASES = [(e, i) for e in EXAMPLES for i in range(len(e.responses))]


@pytest.mark.parametrize(("example", "which"), CASES, ids=[f"{e.id}-{i}" for e, i in CASES])
def test_page_example_gets_documented_shape(example, which, client):
    documented = example.responses[which]
    body = {**example.request, "model": _model_for(example, documented)}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if isinstance(documented, dict):
        assert not body.get("stream")
        conforms(documented, response.json())
        return

    # A documented stream: compare chunk keys, delta fields, the finish and usage chunks.
    assert body.get("stream") is True
    assert response.headers["content-type"].startswith("text/event-stream")
    doc_events, our_events = list(documented), parse_sse(response.text)
    assert doc_events[-1] == "[DONE]" and our_events[-1] == "[DONE]"
    doc_chunks = [json.loads(e) for e in doc_events[:-1]]
    our_chunks = [json.loads(e) for e in our_events[:-1]]

    def delta_types(chunks):
        found = {}
        for chunk in chunks:
            for choice in chunk["choices"]:
                for key, value in choice["delta"].items():
                    if value is not None:
                        found.setdefault(key, _json_type(value))
        return found

    ours = delta_types(our_chunks)
    for key, kind in delta_types(doc_chunks).items():
        assert ours.get(key) == kind, f"delta.{key}"
    for doc in doc_chunks:
        if doc["choices"]:
            conforms({k: v for k, v in doc.items() if k != "choices"}, our_chunks[0])
    assert any(c["choices"] and c["choices"][0]["finish_reason"] for c in our_chunks)
    doc_usage = [c for c in doc_chunks if not c["choices"]]
    our_usage = [c for c in our_chunks if not c["choices"]]
    assert len(our_usage) == len(doc_usage)
    for doc, chunk in zip(doc_usage, our_usage):
        conforms(doc, chunk)
