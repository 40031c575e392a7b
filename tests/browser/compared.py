"""A comparison with a finished turn (markdown, reasoning, logprobs) for the browser tests that audit pages."""

from __future__ import annotations

import math

from chat import branches, compare
from chat.models import Completion, Message


def _logprobs(words: list[str]) -> dict:
    content = []
    for i, word in enumerate(words):
        alts = [word, word.upper(), word + "s"]
        content.append({"token": word, "logprob": math.log(0.6 - 0.01 * i), "bytes": list(word.encode()),
                        "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
                                         for t, p in zip(alts, (0.6 - 0.01 * i, 0.25, 0.1))]})
    return {"content": content}


def compared(owner, endpoint, other=None):
    """Two panes (the second with a temperature override) that answered one message differently."""
    comparison = compare.new_comparison(owner, [(endpoint, {}), (other or endpoint, {"temperature": 1.2, "enable_thinking": False})],
                                        title="Which summary reads better?")
    comparison.options = {"logprobs": True, "top_logprobs": 3}
    comparison.save()
    user = branches.add_child(comparison, None, siblings_selected=False, role="user", content="Summarize the tides in one line.")
    answers = (["The", " moon", " pulls", " the", " sea", "."], ["The", " sun", " and", " moon", " pull", " the", " sea", "."])
    for pane, words in zip(comparison.panes.all(), answers):
        completion = Completion.objects.create(
            conversation=comparison, endpoint=pane.endpoint, request_body={"model": endpoint.model_id, "stream": True},
            status="complete", usage={"prompt_tokens": 12, "completion_tokens": len(words)}, ttft_ms=41.0, duration_ms=300.0,
            tokens_per_s=48.5)
        Message.objects.create(conversation=comparison, parent=user, position=1, role="assistant", pane=pane, completion=completion,
                               content="**" + "".join(words) + "**", reasoning="The tides follow the moon.", finish_reason="stop",
                               logprobs=_logprobs(words))
    return comparison
