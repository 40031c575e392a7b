"""HexGrid's vLLM simulator: an honest stand-in for a vLLM 0.32 server.

A raw ASGI app (no framework) that answers like vLLM's OpenAI-compatible
server, byte for byte where the real transcripts in
tests/fixtures/vllm-transcripts/ show it: the same keys in the same order,
the same null fields, SSE framing, errors. It makes a fresh install useful
offline and gives tests a real HTTP upstream. It is labelled as a simulator
wherever a user can see it: `owned_by: "hexgrid-simulator"` in /v1/models,
`{"version": "0.32.0+simulator"}`, `system_fingerprint:
"vllm-0.32.0-simulator"`, an `x-simulator: hexgrid` header, and the answers
say so.

    app = make_simulator(api_key=None, models=None, token_delay=0.0, record=50)

Routes (relative to the mount: a scope `root_path` is stripped from `path`):
    POST /v1/chat/completions    streaming (SSE) and not
    GET  /v1/models              the served models
    GET  /health                 empty 200
    GET  /version                {"version": "0.32.0+simulator"}
    POST /tokenize               messages (+ tools, chat_template_kwargs) or a prompt: count,
                                 max_model_len, tokens, token_strs; the count of a chat equals
                                 the prompt_tokens of the same completion (template.py)
    POST /detokenize             the text of tokens /tokenize handed out
    GET  /metrics                Prometheus text in vLLM's names: requests running and waiting,
                                 KV-cache usage, prefix-cache queries and hits
Others get 404 `{"detail": "Not Found"}` (405 for a wrong method). With an
`api_key`, /v1/* needs `Authorization: Bearer <key>`, else 401
`{"error": "Unauthorized"}`, as vLLM's --api-key does.

Models (`DEFAULT_MODELS`; pass `models=[ModelSpec(...)]` for others):
    sim/qwen3            Qwen 3: thinks unless chat_template_kwargs.enable_thinking is false
    sim/qwen3-no-parser  same, no reasoning parser: <think>…</think> stays in `content`
    sim/qwen3-legacy     same, reasoning under the old `reasoning_content` name
    sim/llama-3.3        Llama: never thinks
    sim/mistral-small    Mistral instruct: never thinks
    sim/magistral        Mistral reasoning: always thinks
    sim/gemma-4          Gemma 4: thinks only when enable_thinking is true; accepts image_url parts

What it generates (deterministic: the same request gives the same answer;
`seed` picks another sample, unseeded requests behave as seed 0; with
temperature 0 every choice is the same):
- Text that describes what arrived (the last user message, images, tools,
  options, fields vLLM would ignore), in token-sized pieces; usage counts
  those tokens (plus <think>/</think> markers and the EOS token, as vLLM).
- Reasoning per family, in `reasoning` (or inline / `reasoning_content`).
- Tool calls when tool_choice is required or named, or the last user message
  mentions a tool's name or description words; arguments are built from the
  tool's `parameters` schema (a city named in the prompt fills a city /
  location field). "Paris and Tokyo" gives two calls unless
  parallel_tool_calls is false. Streamed as vLLM does: id/type/name first,
  then argument fragments. finish_reason "tool_calls", or "stop" for a named
  tool_choice (as real vLLM). tool_choice "none" answers in text; a
  conversation ending in `tool` messages gets an answer that uses them.
- response_format json_object / json_schema / structural_tag and
  structured_outputs json / regex / choice / grammar (GBNF subset) /
  structural_tag: conforming output generated from the constraint.
- logprobs / top_logprobs (≤ 20) with bytes, in streams too, one entry per
  generated token (the end-of-sequence token included; with logprobs a
  token that shows no text, such as <think>, streams as `"delta": {}`);
  n choices; stop strings (excluded, stop_reason set); max_tokens /
  max_completion_tokens (finish "length"; more than the context leaves is
  lowered, as vLLM does); min_tokens; ignore_eos; stream_options
  include_usage and continuous_usage_stats.
- Errors as vLLM 0.32, in its order and words (validate.py): unknown model
  404, invalid values 400 with `param` (null where vLLM sends null: penalties,
  top_k, min_p, n, min_tokens), malformed JSON 400, over-long prompt /
  max_tokens 400, logit_bias outside the vocabulary (`ModelSpec.vocab_size`),
  image parts on a text-only model 400 "<model> is not a multimodal model".
  A failing stream request answers plain JSON, not SSE.

Fault injection, per request, by header:
    x-sim-delay-first: S      wait S seconds before the first chunk (stream) or
                              before answering (other requests)
    x-sim-delay-token: S      seconds between tokens (overrides token_delay);
                              a non-streamed answer waits tokens × S
    x-sim-status: CODE        answer HTTP CODE with a vLLM-shaped error body
                              ({"error": "Unauthorized"} for 401; retry-after
                              for 429/503), on any path, before auth
    x-sim-body: html|text|flat|empty
                              with x-sim-status: a gateway's HTML error page,
                              plain text, the flat pre-0.10.1 vLLM error body,
                              or nothing
    x-sim-cut-after: N        send N SSE events, then end the body cleanly
                              without [DONE] (non-stream: half the body, then reset)
    x-sim-malformed-after: N  after N events insert one unparsable event, then
                              go on (non-stream: a truncated JSON body)
    x-sim-error-after: N      after N events send data: {"error": {...}} and
                              [DONE] (non-stream: HTTP 500 error body)
    x-sim-reset: N            after N events reset the connection (TCP RST
                              under uvicorn); 0 / empty: before any response
Events are counted from the first (the role chunk), [DONE] included.
`x-request-id: X` makes the completion id `chatcmpl-X`.

Test-only access:
    app.requests      deque of the last `record` RecordedRequest
                      (.id, .method, .path, .headers without authorization,
                      .body bytes, .json)
    app.disconnects   ids (chatcmpl-…) of responses whose client went away
                      before the end (http.disconnect or a failed send)
"""

from .app import FINGERPRINT, OWNER, VERSION, RecordedRequest, SimulatorApp, make_simulator
from .specs import (
    DEFAULT_MODELS,
    REASONING_INLINE,
    REASONING_LEGACY,
    REASONING_PARSED,
    THINKING_ALWAYS,
    THINKING_DEFAULT_ON,
    THINKING_NEVER,
    THINKING_OPT_IN,
    ModelSpec,
)

__all__ = [
    "DEFAULT_MODELS", "FINGERPRINT", "OWNER", "VERSION", "ModelSpec", "RecordedRequest", "SimulatorApp",
    "make_simulator", "REASONING_INLINE", "REASONING_LEGACY", "REASONING_PARSED", "THINKING_ALWAYS",
    "THINKING_DEFAULT_ON", "THINKING_NEVER", "THINKING_OPT_IN",
]
