"""Generations -> vLLM 0.32 response bytes, key for key and null for null.

The non-streamed body is built as dicts; the stream is built from string
templates (one json.dumps per token text) because it has to be fast.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from .compose import CONTENT, EOS, MARKER, REASONING, TOOL_ARGS, TOOL_HEAD, Generation
from .specs import REASONING_INLINE, REASONING_LEGACY
from .tokens import LogprobSampler
from .validate import ChatRequest

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(obj) -> str:
    return _dumps(obj)


def _sampler(req: ChatRequest, index: int) -> LogprobSampler:
    rng = random.Random(req.rng(index).getrandbits(64) ^ 0x5EED)
    return LogprobSampler(rng, req.top_logprobs, req.temperature)


def _reasoning_key(req: ChatRequest) -> str:
    return "reasoning_content" if req.spec.reasoning_output == REASONING_LEGACY else "reasoning"


def message_texts(req: ChatRequest, gen: Generation) -> tuple[str | None, str | None]:
    """(content, reasoning) of the non-streamed message."""
    inline = req.spec.reasoning_output == REASONING_INLINE
    content, reasoning = [], []
    for (kind, _, _), text in zip(gen.tokens, gen.visible):
        if kind == CONTENT or (inline and kind in (REASONING, MARKER)):
            content.append(text)
        elif kind == REASONING:
            reasoning.append(text)
    text = "".join(content)
    if gen.calls:
        forced = req.tool_choice == "required" or req.named_tool is not None
        return ("" if forced else (text.strip() or None)), ("".join(reasoning) or None)
    return (text or None), ("".join(reasoning) or None)


def usage(req: ChatRequest, gens: list[Generation], details_null: bool = True) -> dict:
    completion = sum(g.completion_tokens for g in gens)
    out = {"prompt_tokens": req.prompt_tokens, "total_tokens": req.prompt_tokens + completion,
           "completion_tokens": completion}
    if details_null:
        out["prompt_tokens_details"] = None
    out["completion_tokens_details"] = {"reasoning_tokens": sum(g.reasoning_tokens for g in gens)}
    return out


def completion_body(req: ChatRequest, gens: list[Generation], rid: str, created: int, fingerprint: str) -> bytes:
    choices = []
    for index, gen in enumerate(gens):
        content, reasoning = message_texts(req, gen)
        message = {"role": "assistant", "content": content, "refusal": None, "annotations": None,
                   "audio": None, "function_call": None}
        if gen.calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in gen.calls
            ]
        message[_reasoning_key(req)] = reasoning
        logprobs = None
        if req.logprobs:
            sampler = _sampler(req, index)
            logprobs = {"content": [sampler.entry(_token_text(req, kind, text)) for kind, text, _ in gen.tokens]}
        choices.append({"index": index, "message": message, "logprobs": logprobs,
                        "finish_reason": gen.finish_reason, "stop_reason": gen.stop_reason,
                        "token_ids": None, "routed_experts": None})
    body = {
        "id": rid, "object": "chat.completion", "created": created, "model": req.model, "choices": choices,
        "service_tier": None, "system_fingerprint": fingerprint, "usage": usage(req, gens),
        "prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None,
        "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None,
    }
    return dumps(body).encode()


def _token_text(req: ChatRequest, kind: str, text: str) -> str:
    """The token as logprobs name it: the end-of-sequence token is spelled out."""
    return req.spec.eos_text if kind == EOS else text


# --------------------------------------------------------------------------- streaming

def _choice_fragments(req: ChatRequest, index: int, gen: Generation) -> list[tuple[int, int, str, bool]]:
    """One entry per chunk this choice sends: (completion tokens so far,
    reasoning tokens so far, the choice object as JSON, is it the last)."""
    inline = req.spec.reasoning_output == REASONING_INLINE
    rkey = '{"' + _reasoning_key(req) + '":'
    sampler = _sampler(req, index) if req.logprobs else None
    pending: list[dict] = []
    cache: dict[str, str] = {}
    pre = '{"index":%d,"delta":' % index
    tail_open = ',"finish_reason":null,"token_ids":null}'
    tail_final = ',"finish_reason":%s,"stop_reason":%s,"token_ids":null}' % (
        dumps(gen.finish_reason), dumps(gen.stop_reason))
    tokens, visible = gen.tokens, gen.visible
    last = len(tokens) - 1
    out = []
    reasoning = 0
    for j in range(len(tokens)):
        kind, text, call = tokens[j]
        if sampler is not None:
            pending.append(sampler.entry(_token_text(req, kind, text)))
        delta = None
        shown = visible[j]
        if kind == CONTENT or (inline and (kind == REASONING or kind == MARKER)):
            if shown:
                quoted = cache.get(shown)
                if quoted is None:
                    quoted = cache[shown] = dumps(shown)
                delta = '{"content":' + quoted + "}"
        elif kind == REASONING:
            if shown:
                delta = rkey + dumps(shown) + "}"
        elif kind == TOOL_HEAD:
            if j == last or tokens[j + 1][0] != TOOL_HEAD:
                c = gen.calls[call] if call < len(gen.calls) else None
                if c is not None:
                    delta = ('{"content":null,"tool_calls":[{"id":%s,"type":"function","index":%d,'
                             '"function":{"name":%s}}]}' % (dumps(c.id), call, dumps(c.name)))
        elif kind == TOOL_ARGS:
            delta = '{"content":null,"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}' % (call, dumps(text))
        if kind == REASONING:
            reasoning += 1
        final = j == last
        if delta is None and not final and sampler is None:
            continue  # with logprobs, vLLM sends every token, as `"delta": {}` when it shows no text
        if sampler is not None and pending:
            logprobs = dumps({"content": pending})
            pending = []
        else:
            logprobs = "null"
        fragment = pre + (delta or "{}") + ',"logprobs":' + logprobs + (tail_final if final else tail_open)
        used = gen.completion_tokens if final else j + 1
        out.append((used, reasoning, fragment, final))
    return out


def stream_events(req: ChatRequest, gens: list[Generation], rid: str, created: int, fingerprint: str) -> Iterator[str]:
    """The SSE events of a streamed answer, in order, ending with [DONE]."""
    head = 'data: {"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":[' % (
        dumps(rid), created, dumps(req.model))
    prompt = req.prompt_tokens
    fp = ',"system_fingerprint":' + dumps(fingerprint)
    continuous = req.continuous_usage

    def usage_part(completion: int, reasoning: int) -> str:
        return (',"usage":{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d,'
                '"completion_tokens_details":{"reasoning_tokens":%d}}' % (prompt, prompt + completion, completion, reasoning))

    for index in range(len(gens)):
        role = '{"index":%d,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]' % index
        yield head + role + (usage_part(0, 0) if continuous else "") + ',"prompt_token_ids":null,"prompt_text":null}\n\n'

    per_choice = [_choice_fragments(req, i, g) for i, g in enumerate(gens)]
    if len(per_choice) == 1:
        for used, reasoning, fragment, final in per_choice[0]:
            extra = usage_part(used, reasoning) if continuous else ""
            if final and not req.include_usage:
                extra += fp
            yield head + fragment + "]" + extra + "}\n\n"
    else:
        progress = [(0, 0)] * len(per_choice)
        longest = max(len(f) for f in per_choice)
        for step in range(longest):
            for index, fragments in enumerate(per_choice):
                if step >= len(fragments):
                    continue
                used, reasoning, fragment, final = fragments[step]
                progress[index] = (used, reasoning)
                extra = ""
                if continuous:
                    extra = usage_part(sum(p[0] for p in progress), sum(p[1] for p in progress))
                if final and not req.include_usage:
                    extra += fp
                yield head + fragment + "]" + extra + "}\n\n"
    if req.include_usage:
        u = usage(req, gens, details_null=False)
        yield head + "]" + usage_part(u["completion_tokens"], u["completion_tokens_details"]["reasoning_tokens"]) + fp + "}\n\n"
    yield "data: [DONE]\n\n"
