"""The prompt a chat request makes: the /tokenize request for exactly what a completion would send.

vLLM's chat /tokenize takes the messages, tools and chat-template fields of a chat completion and
applies the same chat template, so its `count` is the completion's `prompt_tokens`
(tests/fixtures/vllm-transcripts/11b and 11f).
"""

from __future__ import annotations

# The chat completion fields that shape the templated prompt (vLLM's TokenizeChatRequest).
TEMPLATE_FIELDS = (
    "tools", "add_generation_prompt", "continue_final_message", "add_special_tokens",
    "chat_template", "chat_template_kwargs", "mm_processor_kwargs",
)


def tokenize_body(chat_body: dict, *, token_strs: bool = False) -> dict:
    """The /tokenize body for the prompt of `chat_body` (a Chat Completions request)."""
    body = {"model": chat_body.get("model"), "messages": chat_body.get("messages") or []}
    for name in TEMPLATE_FIELDS:
        if chat_body.get(name) is not None:
            body[name] = chat_body[name]
    if token_strs:
        body["return_token_strs"] = True
    return body


def output_budget(chat_body: dict) -> int | None:
    """The output tokens the request asks room for (max_completion_tokens wins, as in vLLM)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = chat_body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def fit(count: int, max_model_len: int | None, chat_body: dict) -> dict:
    """The meter's figures: the prompt against the context, and the room left for the answer.

    `fits` is False when vLLM would refuse the request with a 400 before generating: the prompt
    fills the context, or max_tokens alone exceeds it (08b, 08f). A max_tokens above the room left
    is not refused: vLLM lowers it silently, so the answer is cut earlier (`note`)."""
    budget = output_budget(chat_body)
    figures = {"count": count, "max_model_len": max_model_len, "room": None, "max_tokens": budget,
               "fits": True, "reason": "", "note": ""}
    if not max_model_len:
        return figures
    room = max_model_len - count
    figures["room"] = max(room, 0)
    if room < 1:
        figures["reason"] = f"The prompt is {count} tokens; the model's context is {max_model_len}: nothing is left for an answer."
    elif budget is not None and budget > max_model_len:
        figures["reason"] = f"max_tokens {budget} is more than the model's whole context ({max_model_len})."
    elif budget is not None and budget > room:
        figures["note"] = f"max_tokens {budget} is more than the {room} left: the answer stops at {room} tokens."
    figures["fits"] = not figures["reason"]
    return figures
