"""Family profiles: detection from model IDs, and values taken from the pages."""

from __future__ import annotations

import re

import pytest

from chat.upstream.families import FAMILIES, detect_family, is_reasoning_model, profile_for

from .conftest import PAGE_FAMILY, page_examples, page_texts


def model_ids_by_page() -> dict[str, set[str]]:
    """Every model ID a page names: in exports, lists, and response bodies."""
    found = {}
    for page, text in page_texts().items():
        ids = set(re.findall(r'"model": "([^"$\x27]+)"', text))
        ids |= set(re.findall(r'_MODEL="([^"]+)"', text))
        ids |= set(re.findall(r"^\s*([\w.-]+/[\w.-]+)\s*$", text, re.M))  # the "such as" lists
        found[page] = ids
    return found


def test_family_keys_are_fixed():
    assert list(FAMILIES) == ["qwen", "llama", "mistral", "gemma", "generic"]
    assert all(key == family.key for key, family in FAMILIES.items())


@pytest.mark.parametrize("page", sorted(PAGE_FAMILY))
def test_every_model_id_on_a_page_maps_to_its_family(page):
    ids = model_ids_by_page()[page]
    assert ids, page
    for model_id in ids:
        assert detect_family(model_id) == PAGE_FAMILY[page], model_id


def test_pages_name_the_expected_models():
    ids = set().union(*model_ids_by_page().values())
    assert {"Qwen/Qwen3.6-35B-A3B-FP8", "meta-llama/Meta-Llama-3.1-405B-Instruct", "mistralai/Magistral-Small-2506",
            "mistralai/Ministral-3-14B-Reasoning-2512", "google/gemma-4-31B-it", "your-model-or-deployment-id"} <= ids


@pytest.mark.parametrize(
    "model_id, family",
    [
        ("tiny-qwen3", "qwen"),  # the model behind the transcripts
        ("Qwen/QwQ-32B", "qwen"),
        ("/models/Llama-3.3-70B-Instruct", "llama"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
        ("google/gemma-3-27b-it", "gemma"),
        ("deepseek-ai/DeepSeek-V3", "generic"),
        ("", "generic"),
    ],
)
def test_detect_family_beyond_the_pages(model_id, family):
    assert detect_family(model_id) == family


@pytest.mark.parametrize(
    "model_id, reasoning",
    [
        ("mistralai/Magistral-Small-2506", True),
        ("mistralai/Ministral-3-14B-Reasoning-2512", True),
        ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", False),
        ("meta-llama/Llama-3.3-70B-Instruct", False),
        ("some/ReasoningLab-7B", False),  # a word inside a name is not the marker
    ],
)
def test_is_reasoning_model(model_id, reasoning):
    assert is_reasoning_model(model_id) is reasoning


def test_mistral_reasoning_models_always_think():
    family = profile_for("mistralai/Magistral-Small-2506")
    assert (family.key, family.thinking, family.thinking_default, family.reasoning_prompt) == ("mistral", "always", True, None)
    instruct = profile_for("mistralai/Mistral-Small-3.2-24B-Instruct-2506")
    assert instruct.thinking == "none" and instruct.reasoning_prompt


def test_profile_override_wins_over_detection():
    assert profile_for("my-finetune", "qwen") is FAMILIES["qwen"]
    with pytest.raises(ValueError, match="unknown model family 'gpt'"):
        profile_for("x", "gpt")


def test_thinking_values_map_the_toggle():
    assert FAMILIES["qwen"].thinking_values(False) == {"chat_template_kwargs": {"enable_thinking": False}}
    assert FAMILIES["gemma"].thinking_values(True) == {"chat_template_kwargs": {"enable_thinking": True}}
    assert FAMILIES["llama"].thinking_values(True) == {}


def page_values(family: str) -> list[dict]:
    return [e.body for e in page_examples() if e.family == family]


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_profile_values_come_from_the_family_page(key):
    family = FAMILIES[key]
    bodies = page_values(key)
    for preset in (family.defaults, family.thinking_presets, family.tool_presets):
        for name, value in preset.items():
            assert any(body.get(name) == value for body in bodies), (key, name, value)
    assert family.defaults == {**family.defaults, **{k: v for k, v in bodies[0].items() if k in family.defaults}}


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_reasoning_prompt_is_the_page_wording(key):
    family = FAMILIES[key]
    systems = {m["content"] for b in page_values(key) for m in b["messages"] if m["role"] == "system"}
    assert family.reasoning_prompt is None or family.reasoning_prompt in systems


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_capabilities_follow_the_page(key):
    family = FAMILIES[key]
    bodies = page_values(key)
    sends_images = any(
        isinstance(m["content"], list) and any(p["type"] == "image_url" for p in m["content"])
        for b in bodies
        for m in b["messages"]
    )
    assert family.image_input is sends_images
    toggles = any("chat_template_kwargs" in b for b in bodies)
    assert (family.thinking == "toggle") is toggles
    used = {b["tool_choice"] if isinstance(b["tool_choice"], str) else "named" for b in bodies if "tool_choice" in b}
    assert used <= set(family.tool_choices)
