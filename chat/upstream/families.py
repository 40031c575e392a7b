"""Per-family profiles: what the vendor pages recommend for each model family.

A family is detected from the model ID (`detect_family`) and can be
overridden per endpoint (`profile_for(model_id, family_override)`). The
values below are the ones the pages in tests/fixtures/api-docs use in their
examples; tests check them against the pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .thinking import MISTRAL_TAGS, THINK_TAGS

__all__ = ["FAMILIES", "Family", "detect_family", "is_reasoning_model", "profile_for"]

ALL_TOOL_CHOICES = ("auto", "none", "required", "named")


@dataclass(frozen=True)
class Family:
    """How to drive one model family.

    defaults: option values to prefill (the pages' plain-chat example).
    thinking: "toggle" (chat_template_kwargs.enable_thinking), "always" (the
    model always reasons; vLLM's parser fills `reasoning`) or "none".
    thinking_default: whether thinking is on when the user has not chosen.
    thinking_presets: option values the pages use when reasoning (for
    "none" families: with the reasoning-style system prompt).
    reasoning_prompt: the pages' reasoning-style system prompt for models
    without a reasoning mode, else None.
    tool_presets: option values the pages use with tools.
    image_input: whether the family's page sends image_url content parts.
    tool_choices: the tool_choice forms the page documents ("named" = the
    {"type": "function", ...} object).
    think_tags: the inline tags its reasoning uses when vLLM has no parser.
    """

    key: str
    label: str
    defaults: dict = field(default_factory=dict)
    thinking: str = "none"
    thinking_default: bool = False
    thinking_presets: dict = field(default_factory=dict)
    reasoning_prompt: str | None = None
    tool_presets: dict = field(default_factory=dict)
    image_input: bool = False
    tool_choices: tuple[str, ...] = ALL_TOOL_CHOICES
    think_tags: tuple[str, str] = THINK_TAGS

    def thinking_values(self, enabled: bool) -> dict:
        """Option values that switch thinking on or off for this family."""
        if self.thinking == "toggle":
            return {"chat_template_kwargs": {"enable_thinking": enabled}}
        return {}


FAMILIES: dict[str, Family] = {
    "qwen": Family(
        key="qwen",
        label="Qwen 3.x",
        defaults={"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_tokens": 256},
        thinking="toggle",
        thinking_default=True,  # "thinking is enabled by default in vLLM reasoning mode"
        thinking_presets={"temperature": 0.6, "top_p": 0.95, "max_tokens": 1024},
        tool_presets={"max_tokens": 512},
    ),
    "llama": Family(
        key="llama",
        label="Llama 3.1 / 3.3",
        defaults={"temperature": 0.7, "top_p": 0.9, "max_tokens": 256},
        thinking_presets={"temperature": 0.3, "top_p": 0.9, "max_tokens": 512},
        reasoning_prompt=(
            "You are a careful reasoning assistant. Solve the problem step by step "
            "internally, then provide a concise final answer."
        ),
        tool_presets={"temperature": 0.2, "max_tokens": 512},
    ),
    "mistral": Family(
        key="mistral",
        label="Mistral / Magistral",
        defaults={"temperature": 0.7, "top_p": 0.9, "max_tokens": 256},
        thinking_presets={"temperature": 0.3, "top_p": 0.9, "max_tokens": 1024},
        reasoning_prompt=(
            "You are a careful reasoning assistant. Provide a concise final answer."
        ),
        tool_presets={"temperature": 0.2, "max_tokens": 512},
        think_tags=MISTRAL_TAGS,
    ),
    "gemma": Family(
        key="gemma",
        label="Gemma 4",
        defaults={"temperature": 0.7, "top_p": 0.95, "top_k": 40, "max_tokens": 256},
        thinking="toggle",
        thinking_default=False,  # the page turns it on per request
        thinking_presets={"max_tokens": 4096},
        tool_presets={"max_tokens": 1024},
        image_input=True,
        tool_choices=("auto",),
    ),
    "generic": Family(
        key="generic",
        label="Other (generic vLLM)",
        defaults={"temperature": 0.7, "top_p": 0.9, "max_tokens": 128},
    ),
}

# Checked in order; the first family whose pattern matches the model ID wins.
_PATTERNS = (
    ("mistral", re.compile(r"mistral|magistral|ministral|mixtral|devstral|codestral|pixtral")),
    ("qwen", re.compile(r"qwen|qwq")),
    ("gemma", re.compile(r"gemma")),
    ("llama", re.compile(r"llama")),
)
_REASONING = re.compile(r"magistral|(^|[-_/])reasoning([-_/]|$)")


def detect_family(model_id: str) -> str:
    """Family key for a model ID ("Qwen/Qwen3-8B" -> "qwen"); unknown -> "generic"."""
    lowered = (model_id or "").lower()
    for key, pattern in _PATTERNS:
        if pattern.search(lowered):
            return key
    return "generic"


def is_reasoning_model(model_id: str) -> bool:
    """Models that always reason (Magistral, *-Reasoning-*): no toggle, and
    vLLM's reasoning parser puts their [THINK] block in `reasoning`."""
    return bool(_REASONING.search((model_id or "").lower()))


def profile_for(model_id: str, family_override: str | None = None) -> Family:
    """The profile to use for a model, honouring an endpoint's override.

    Mistral reasoning models get thinking "always" and no reasoning prompt.
    """
    key = family_override or detect_family(model_id)
    if key not in FAMILIES:
        raise ValueError(f"unknown model family {key!r}; choose one of {', '.join(FAMILIES)}")
    family = FAMILIES[key]
    if is_reasoning_model(model_id) and family.thinking == "none":
        family = replace(family, thinking="always", thinking_default=True, reasoning_prompt=None)
    return family
