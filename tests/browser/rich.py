"""A conversation with everything the thread can show, written straight to the database: reasoning,
a tool call and its result, markdown with code, logprobs, and n = 3 choices side by side.

Used by tests/browser/test_interface.py (axe, layout) and tests/browser/screenshots.py (README).
The rows are shaped as chat/runs.py saves them: a parent chain, one Completion per request, the
n choices of one completion siblings at one position.
"""

from __future__ import annotations

import math

from chat.forms import family_defaults
from chat.models import Completion, Conversation, Message

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Get the current weather for a location",
                 "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
}
ANSWER = """It is **22 °C and sunny** in Paris, with a light breeze from the west.

Here is the same in Python:

```python
weather = {"location": "Paris, France", "temperature": 22, "condition": "sunny"}
print(f"{weather['location']}: {weather['temperature']} °C, {weather['condition']}")
```
"""
TAGLINES = [
    "Sunlight, espresso, and the Seine.",
    "Paris in a cup: warm, bright, unhurried.",
    "Twenty-two degrees of café au lait.",
]


def logprobs_for(text: str, seed: int = 0) -> dict:
    """Token logprobs for `text`, word by word, with three alternatives each and a few doubtful tokens."""
    words = text.replace(" ", "\0 ").split("\0")
    entries = []
    for i, word in enumerate(w for w in words if w):
        p = 0.97 if (i + seed) % 5 else 0.35 + 0.1 * (i % 3)
        alternatives = [(word, p), (word.strip().upper() or "_", (1 - p) * 0.7), (" the", (1 - p) * 0.2)]
        entries.append({
            "token": word, "logprob": math.log(p), "bytes": list(word.encode()),
            "top_logprobs": [{"token": t, "logprob": math.log(max(q, 1e-6)), "bytes": list(t.encode())} for t, q in alternatives],
        })
    return {"content": entries}


def rich_conversation(owner, endpoint, title: str = "Weather in Paris, three ways") -> Conversation:
    options = {**family_defaults(endpoint), "logprobs": True, "top_logprobs": 3, "n": 3, "seed": 7}
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, title=title, options=options, tools=[WEATHER])
    position = 0

    def completion(n: int = 1, **extra) -> Completion:
        body = {"model": endpoint.model_id, "messages": [{"role": "user", "content": "…"}], "stream": True,
                "stream_options": {"include_usage": True}, "tools": [WEATHER], **({"n": n} if n > 1 else {})}
        return Completion.objects.create(
            conversation=conversation, endpoint=endpoint, user=owner, request_body=body, status="complete",
            response_body={"id": "chatcmpl-sim", "object": "chat.completion", "choices": []}, response_id="chatcmpl-sim",
            usage={"prompt_tokens": 118, "completion_tokens": 64 * n, "total_tokens": 118 + 64 * n},
            chunk_count=40 * n, ttft_ms=82.0, duration_ms=940.0, tokens_per_s=68.1, **extra,
        )

    def add(parent, role, **fields) -> Message:
        nonlocal position
        message = Message.objects.create(conversation=conversation, parent=parent, position=position, role=role, **fields)
        position += 1
        return message

    question = add(None, "user", content="What's the weather in Paris? Then show it in Python, please.")
    call = add(question, "assistant", completion=completion(), finish_reason="tool_calls", content="",
               reasoning="The user wants the current weather in Paris. I have a get_weather tool: call it with the city.",
               tool_calls=[{"id": "call_weather_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Paris, France"}'}}])
    result = add(call, "tool", tool_call_id="call_weather_1", content='{"temperature": 22, "condition": "sunny", "wind": "W 9 km/h"}')
    answer = add(result, "assistant", completion=completion(), finish_reason="stop", content=ANSWER,
                 reasoning="The tool says 22 degrees and sunny. Answer briefly, then the Python snippet.")
    ask = add(answer, "user", content="Three taglines for a café by the Seine, one each.")
    shared = completion(n=3)
    for index, tagline in enumerate(TAGLINES):
        Message.objects.create(
            conversation=conversation, parent=ask, position=position, role="assistant", completion=shared,
            choice_index=index, finish_reason="stop", content=tagline, logprobs=logprobs_for(tagline, seed=index),
        )
    return conversation
