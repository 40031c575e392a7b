"""Exports (cURL, Python, JSON) and the cURL importer, round-tripped over
every request example of the pages."""

from __future__ import annotations

import ast
import json
import re

import pytest

from chat.upstream.export import CurlParseError, parse_curl, to_curl, to_json, to_python
from chat.upstream.options import OPTIONS_BY_NAME
from chat.upstream.payload import build_payload

from .conftest import page_examples, page_texts
from .test_payload import merged, split_body, strict

EXAMPLES = page_examples()
BASE = "https://10.0.0.5:8443/v1"


def rebuilt(example) -> dict:
    return build_payload(*split_body(example.body))


def build_imported(imported) -> dict:
    return build_payload(imported.model, imported.messages, imported.values)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_curl_round_trip(example):
    body = rebuilt(example)
    imported = parse_curl(to_curl(BASE, body))
    assert imported.base_url_hint == BASE
    assert imported.unknown == {}
    assert strict(build_imported(imported)) == strict(body)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_page_curl_imports_as_documented(example):
    imported = parse_curl(example.curl)
    assert imported.base_url_hint == example.url.removesuffix("/chat/completions")
    assert strict(build_imported(imported)) == strict(merged(example.body))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_python_export_round_trip(example):
    body = rebuilt(example)
    code = to_python(BASE, body)
    call = next(
        node for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "create"
    )
    arguments = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    extra = arguments.pop("extra_body", {})
    assert all(OPTIONS_BY_NAME[k].vllm_extension for k in extra)
    assert not any(OPTIONS_BY_NAME[k].vllm_extension for k in arguments if k in OPTIONS_BY_NAME)
    assert strict({**arguments, **extra}) == strict(body)
    assert f'base_url="{BASE}"' in code and 'os.environ["HEXGRID_API_KEY"]' in code


def test_curl_export_matches_the_pages_style():
    page = page_texts()["llama"]
    documented = re.search(r"(curl -X POST .*?\n\s*\}')", page, re.S).group(1)
    body = rebuilt(EXAMPLES[[e.id for e in EXAMPLES].index("llama-1")])
    exported = to_curl("$LLAMA_BASE_URL", {**body, "model": "MODEL"})
    assert exported == documented.replace('"\'"$LLAMA_MODEL"\'"', '"MODEL"')


def test_streaming_curl_uses_no_buffer():
    assert to_curl(BASE, {"model": "m", "messages": [], "stream": True}).startswith(f'curl -N -X POST "{BASE}/chat/completions"')
    assert "stream = client.chat.completions.create(" in to_python(BASE, {"model": "m", "messages": [], "stream": True})


def test_exports_never_hold_a_key_only_its_variable():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert '-H "Authorization: Bearer $HEXGRID_API_KEY"' in to_curl(BASE, body)
    assert "Authorization" not in to_curl(BASE, body, key_env=None)
    assert '-H "Authorization: Bearer $TEAM_KEY"' in to_curl(BASE, body, key_env="TEAM_KEY")
    assert 'os.environ["TEAM_KEY"]' in to_python(BASE, body, key_env="TEAM_KEY")


def test_awkward_text_survives_the_shell():
    content = "It's \"quoted\", $HOME, `ls`, back\\slash, 22°C\nnew line"
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    imported = parse_curl(to_curl("http://h:8000/v$1", body))
    assert imported.messages[0]["content"] == content
    assert imported.base_url_hint == "http://h:8000/v$1/v1"
    assert json.loads(to_json(body)) == body and "22°C" in to_json(body)


def test_unknown_body_keys_are_reported_and_python_sends_them_in_extra_body():
    body = {"model": "m", "messages": [], "priority": 2, "top_k": 5}
    assert parse_curl(to_curl(BASE, body)).unknown == {"priority": 2}
    assert 'extra_body={\n        "priority": 2,\n        "top_k": 5,\n    },' in to_python(BASE, body)


def test_empty_containers_export_to_python():
    body = {"model": "m", "messages": [], "metadata": {}}
    assert "    messages=[],\n    metadata={},\n" in to_python(BASE, body)


def test_importer_reads_exported_variables():
    page = page_texts()["qwen"]
    exports = "\n".join(line for line in page.splitlines() if line.startswith("export "))
    exports += '\nexport BROKEN="unbalanced'  # skipped, not fatal
    curl = EXAMPLES[[e.id for e in EXAMPLES].index("qwen-1")].curl
    imported = parse_curl(exports + "\n" + curl)
    assert imported.model == "Qwen/Qwen3.6-35B-A3B-FP8"
    assert imported.base_url_hint == "https://<server-ip-address>:<port>/v1"  # a placeholder, kept as written
    imported = parse_curl(curl, variables={"QWEN_BASE_URL": "https://10.1.2.3:8000/v1/"})
    assert imported.base_url_hint == "https://10.1.2.3:8000/v1"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_page_model_placeholders_name_their_family(example):
    """Pasted without its page's `export` lines, an example's model is a placeholder: $QWEN_MODEL
    stands for a Qwen model, the generic page's for any model; a written model ID is none."""
    imported = parse_curl(example.curl)
    family = {"qwen": "qwen", "llama": "llama", "mistral": "mistral", "gemma4": "gemma", "generic": None}[example.page]
    if imported.model.startswith("$") or imported.model == "your-model-or-deployment-id":
        assert (imported.model_placeholder, imported.family) == (True, family)
    else:
        assert (imported.model_placeholder, imported.family) == (False, None)


def test_model_placeholders_in_other_spellings():
    def model_of(model: str):
        imported = parse_curl(f"curl http://h/v1/chat/completions -d '{{\"model\": \"{model}\", \"messages\": []}}'")
        return imported.model, imported.model_placeholder, imported.family

    assert model_of("${GEMMA_MODEL}") == ("${GEMMA_MODEL}", True, "gemma")
    assert model_of("$MODEL") == ("$MODEL", True, None)
    assert model_of("$MY_OWN_MODEL") == ("$MY_OWN_MODEL", True, None)  # a variable: some model, family unknown
    assert model_of("Qwen/Qwen3-8B") == ("Qwen/Qwen3-8B", False, None)
    assert model_of("a$b") == ("a$b", False, None)  # not a variable on its own
    exported = parse_curl('export LLAMA_MODEL="meta-llama/Llama-3.3-70B-Instruct"\n'
                          "curl http://h/v1/chat/completions -d '{\"model\": \"$LLAMA_MODEL\", \"messages\": []}'")
    assert (exported.model, exported.model_placeholder) == ("meta-llama/Llama-3.3-70B-Instruct", False)


def test_importer_understands_other_spellings():
    text = (
        "curl -sS -XPOST --url 'http://h:8000/v1/chat/completions' "
        "-H 'Authorization: Bearer sk-secret-123' "
        '--data-raw "{\\"model\\": \\"m\\", \\"messages\\": [], \\"n\\": 2}"'
    )
    imported = parse_curl(text)
    assert (imported.base_url_hint, imported.model, imported.values) == ("http://h:8000/v1", "m", {"n": 2})
    assert "sk-secret" not in repr(imported)
    assert parse_curl("curl --json='{\"messages\": [], \"seed\": 1}' http://h/v1/chat/completions").values == {"seed": 1}
    assert parse_curl("curl -d '{\"messages\": []}'").base_url_hint is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("wget http://h", "No curl command found"),
        ("curl http://h -d '{", "Could not split the command"),
        ("curl http://h", "sends no JSON body"),
        ("curl http://h -d", "-d needs a value"),
        ("curl http://h -d @body.json", "cannot be imported"),
        ("curl http://h -d '{}' -d '{}'", "Only one -d body"),
        ("curl -X GET http://h -d '{}'", "POST requests, not GET"),
        ("curl --proxy x http://h -d '{}'", "Unsupported curl option --proxy"),
        ("curl http://h -d 'nope'", "not valid JSON"),
        ("curl http://h -d '[1]'", "must be a JSON object"),
        ("curl http://h -d '{\"model\": \"m\"}'", 'no "messages" list'),
    ],
)
def test_importer_errors_say_what_is_wrong(text, message):
    with pytest.raises(CurlParseError, match=re.escape(message)):
        parse_curl(text)
