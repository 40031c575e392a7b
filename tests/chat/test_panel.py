"""The settings panel: every registry option set through the panel reaches the simulator exactly as
documented; cURL import reproduces every page example; bad input is refused inline; the tool loop,
n choices, View code and the inspector."""

from __future__ import annotations

import json
import shlex
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from chat.models import ApiKey, Completion, Conversation, Endpoint, Message
from chat.panel import PanelForm
from chat.simulator import make_simulator
from chat.upstream.options import OPTIONS
from tests.chat.test_consumer import connect, frames_until_idle, send
from tests.conftest import PASSWORD
from tests.servers import serve_asgi
from tests.upstream.conftest import page_examples

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "panel-sim-key-77"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Get the current weather for a location",
                 "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
}
FUNCTION = {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def sim():
    app = make_simulator(api_key=KEY)
    with serve_asgi(app) as url:
        app.url = url + "/v1"
        yield app


@pytest.fixture(autouse=True)
def _clear(sim):
    sim.requests.clear()


def make_endpoint(url: str, model: str = "sim/qwen3", **kw) -> Endpoint:
    key = ApiKey(name=f"key for {model} {url} {kw}"[:100])
    key.set_secret(KEY)
    key.save()
    return Endpoint.objects.create(name=f"{model} {url} {kw}"[:200], base_url=url, model_id=model, api_key=key, **kw)


@pytest.fixture
def endpoint(sim):
    return make_endpoint(sim.url)


@pytest.fixture
def owner_client(owner):
    client = Client()
    client.force_login(owner)
    return client


def panel_post(conversation: Conversation, **changes) -> dict:
    """The panel's POST data as the browser sends it, from what is stored, with changes."""
    data = {}
    for name, value in PanelForm.initial_for(conversation).items():
        data[name] = "" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value
    data.update(changes)
    return data


# Each registry option: the panel fields to set, and exactly what the request body must then hold.
OPTION_CASES = {
    "stream": ({"stream": "false", "stream_options__include_usage": ""}, {"stream": False}),
    "stream_options": ({"stream": "true", "stream_options__include_usage": "true", "stream_options__continuous_usage_stats": "true"},
                       {"stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    "tools": ({"tools": json.dumps([WEATHER])}, {"tools": [WEATHER]}),
    "tool_choice": ({"tools": json.dumps([WEATHER]), "tool_choice": "function:get_weather"},
                    {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    "parallel_tool_calls": ({"tools": json.dumps([WEATHER]), "parallel_tool_calls": "false"},
                            {"tools": [WEATHER], "parallel_tool_calls": False}),
    "functions": ({"functions": json.dumps([FUNCTION])}, {"functions": [FUNCTION]}),
    "function_call": ({"functions": json.dumps([FUNCTION]), "function_call": json.dumps({"name": "get_weather"})},
                      {"functions": [FUNCTION], "function_call": {"name": "get_weather"}}),
    "response_format": ({"response_format__type": "json_schema", "response_format__name": "answer",
                         "response_format__schema": json.dumps({"type": "object", "properties": {"a": {"type": "string"}}}),
                         "response_format__strict": "true"},
                        {"response_format": {"type": "json_schema", "json_schema": {
                            "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}, "strict": True}}}),
    "structured_outputs": ({"structured_outputs__kind": "choice", "structured_outputs__value": "yes\nno"},
                           {"structured_outputs": {"choice": ["yes", "no"]}}),
    "temperature": ({"temperature": "0.3"}, {"temperature": 0.3}),
    "top_p": ({"top_p": "0.5"}, {"top_p": 0.5}),
    "top_k": ({"top_k": "5"}, {"top_k": 5}),
    "min_p": ({"min_p": "0.1"}, {"min_p": 0.1}),
    "repetition_penalty": ({"repetition_penalty": "1.1"}, {"repetition_penalty": 1.1}),
    "presence_penalty": ({"presence_penalty": "0.5"}, {"presence_penalty": 0.5}),
    "frequency_penalty": ({"frequency_penalty": "-0.5"}, {"frequency_penalty": -0.5}),
    "max_tokens": ({"max_tokens": "64"}, {"max_tokens": 64}),
    "max_completion_tokens": ({"max_completion_tokens": "48"}, {"max_completion_tokens": 48}),
    "min_tokens": ({"min_tokens": "2"}, {"min_tokens": 2}),
    "stop": ({"stop": "END\\n\nSTOP"}, {"stop": ["END\n", "STOP"]}),
    "stop_token_ids": ({"stop_token_ids": "151643, 151645"}, {"stop_token_ids": [151643, 151645]}),
    "ignore_eos": ({"ignore_eos": "true", "max_tokens": "40"}, {"ignore_eos": True, "max_tokens": 40}),  # bounded: it runs to max_tokens
    "seed": ({"seed": "42"}, {"seed": 42}),
    "n": ({"n": "2"}, {"n": 2}),
    "logprobs": ({"logprobs": "true"}, {"logprobs": True}),
    "top_logprobs": ({"logprobs": "true", "top_logprobs": "3"}, {"logprobs": True, "top_logprobs": 3}),
    "logit_bias": ({"logit_bias": "50256: -100\n11: 5"}, {"logit_bias": {"50256": -100, "11": 5}}),
    "skip_special_tokens": ({"skip_special_tokens": "false"}, {"skip_special_tokens": False}),
    "user": ({"user": "alice@example.com"}, {"user": "alice@example.com"}),
    "metadata": ({"metadata": "team=red\npurpose=eval"}, {"metadata": {"team": "red", "purpose": "eval"}}),
    "chat_template_kwargs": ({"thinking": "off", "chat_template_kwargs": json.dumps({"custom_flag": True})},
                             {"chat_template_kwargs": {"custom_flag": True, "enable_thinking": False}}),
    "extra_body": ({"extra_body": json.dumps({"priority": 3})}, {"priority": 3}),
}
BASE_KEYS = {"model", "messages", "stream"}


def test_every_registry_option_has_a_panel_case():
    assert set(OPTION_CASES) == {o.name for o in OPTIONS}


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
async def test_an_option_set_in_the_panel_reaches_the_upstream_exactly(name, owner, sim, endpoint):
    fields, expected = OPTION_CASES[name]
    conversation = await Conversation.objects.acreate(owner=owner, endpoint=endpoint, options={"stream": True})

    @database_sync_to_async
    def save_panel():
        client = Client()
        client.force_login(owner)
        response = client.post(reverse("chat:conversation_settings", args=[conversation.public_id]), panel_post(conversation, **fields))
        assert "Not saved" not in response.content.decode(), response.content.decode()

    await save_panel()
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    await frames_until_idle(ws)
    await ws.disconnect()
    body = sim.requests[-1].json
    assert body["messages"] == [{"role": "user", "content": "Hello"}]
    for key, value in expected.items():
        assert body[key] == value, key
    assert set(body) - BASE_KEYS == set(expected) - BASE_KEYS  # unset options are not sent
    saved = (await database_sync_to_async(lambda: list(conversation.completions.all()))())[0]
    assert saved.request_body == body


@pytest.mark.parametrize(
    "fields,field,message",
    [
        ({"tools": "[{not json"}, "tools", "not valid JSON"),
        ({"tools": json.dumps([{"type": "function", "function": {"name": "x", "parameters": {"type": "array"}}}])}, "tools", "object"),
        ({"tools": json.dumps([WEATHER, WEATHER])}, "tools", "duplicate"),
        ({"response_format__type": "json_schema", "response_format__schema": "{oops"}, "response_format__schema", "not valid JSON"),
        ({"response_format__type": "json_schema", "response_format__schema": json.dumps({"type": "strng"})}, "response_format__type", "strng"),
        ({"extra_body": "[1, 2"}, "extra_body", "not valid JSON"),
        ({"metadata": "no equals sign"}, "metadata", "key=value"),
        ({"temperature": "-1"}, "temperature", "0"),
        ({"top_logprobs": "30", "logprobs": "true"}, "top_logprobs", "20"),
        ({"top_logprobs": "3"}, "top_logprobs", "logprobs"),
        ({"tool_choice": "required"}, "tool_choice", "tools"),
        ({"stop": "a\nb\nc\nd\ne"}, "stop", "4"),
        ({"logit_bias": "5: 500"}, "logit_bias", "100"),
        ({"structured_outputs__kind": "json", "structured_outputs__value": "{bad"}, "structured_outputs__value", "not valid JSON"),
    ],
)
def test_bad_input_is_refused_inline_and_nothing_changes(owner_client, owner, endpoint, fields, field, message):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, options={"stream": True, "temperature": 0.7})
    before = (conversation.options, conversation.tools, conversation.response_format)
    response = owner_client.post(reverse("chat:conversation_settings", args=[conversation.public_id]), panel_post(conversation, **fields))
    page = response.content.decode()
    assert response.status_code == 200 and "Not saved" in page
    assert 'id="field-' + field + '"' in page
    field_html = page.split('id="field-' + field + '"')[1].split('<div class="field')[0]
    assert message.lower() in field_html.lower(), field_html
    conversation.refresh_from_db()
    assert (conversation.options, conversation.tools, conversation.response_format) == before


@pytest.mark.parametrize("stream", ["false", ""])
def test_stream_off_clears_stream_options_and_says_so(owner_client, owner, endpoint, stream):
    """vLLM refuses stream_options unless stream is true: turning stream off (or unset) drops them
    instead of refusing the save until include_usage is cleared by hand."""
    conversation = Conversation.objects.create(
        owner=owner, endpoint=endpoint, options={"stream": True, "stream_options": {"include_usage": True}})
    response = owner_client.post(reverse("chat:conversation_settings", args=[conversation.public_id]), panel_post(
        conversation, stream=stream, stream_options__include_usage="true", stream_options__continuous_usage_stats="false"))
    page = response.content.decode()
    assert "Not saved" not in page and "Saved." in page
    assert "stream_options cleared: they only apply to streamed requests" in page
    include_usage = page.split('id="field-stream_options__include_usage"')[1].split('<div class="field')[0]
    assert '<option value="" selected>' in include_usage  # the panel shows what was stored
    conversation.refresh_from_db()
    assert "stream_options" not in conversation.options
    assert conversation.options.get("stream") == ({"false": False, "": None}[stream])


def test_stream_on_keeps_stream_options_without_a_notice(owner_client, owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, options={"stream": True})
    response = owner_client.post(reverse("chat:conversation_settings", args=[conversation.public_id]),
                                 panel_post(conversation, stream="true", stream_options__include_usage="true"))
    assert "stream_options cleared" not in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.options["stream_options"] == {"include_usage": True}


def test_stream_off_clears_stream_options_even_when_another_field_is_invalid(owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, options={"stream": True})
    form = PanelForm(panel_post(conversation, stream="false", stream_options__include_usage="true", temperature="-1"),
                     user=owner, conversation=conversation)
    assert not form.is_valid() and list(form.errors) == ["temperature"]
    assert form["stream_options__include_usage"].value() == ""  # shown cleared
    assert form.notices == [PanelForm.STREAM_OPTIONS_CLEARED]


async def test_a_send_with_stream_off_in_the_panel_sends_no_stream_options(owner, sim, endpoint):
    """The frame carries the panel as shown (stream off, include_usage still on): the request is
    built without stream_options and the conversation stores it so."""
    conversation = await Conversation.objects.acreate(
        owner=owner, endpoint=endpoint, options={"stream": True, "stream_options": {"include_usage": True}})
    settings = await database_sync_to_async(panel_post)(conversation, stream="false", stream_options__include_usage="true")
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello", settings=urlencode(settings))
    await frames_until_idle(ws)
    await ws.disconnect()
    body = sim.requests[-1].json
    assert body["stream"] is False and "stream_options" not in body
    await conversation.arefresh_from_db()
    assert conversation.options["stream"] is False and "stream_options" not in conversation.options


def test_presets_apply_family_defaults_thinking_and_templates(owner_client, owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, options={"seed": 1})
    url = reverse("chat:conversation_preset", args=[conversation.public_id])
    owner_client.post(url, {"preset": "family_defaults"})
    conversation.refresh_from_db()
    assert conversation.options["top_k"] == 20 and "seed" not in conversation.options
    owner_client.post(url, {"preset": "thinking"})
    conversation.refresh_from_db()
    assert conversation.options["temperature"] == 0.6 and conversation.options["top_p"] == 0.95
    assert conversation.options["chat_template_kwargs"] == {"enable_thinking": True}
    owner_client.post(url, {"preset": "tool:get_current_weather"})
    owner_client.post(url, {"preset": "tool:get_current_weather"})  # once only
    owner_client.post(url, {"preset": "schema:tagline_response"})
    conversation.refresh_from_db()
    assert [t["function"]["name"] for t in conversation.tools] == ["get_current_weather"]
    assert conversation.response_format["json_schema"]["name"] == "tagline_response"
    assert owner_client.post(url, {"preset": "nonsense"}).status_code == 400


def test_reasoning_prompt_preset_for_llama(owner_client, owner, sim):
    conversation = Conversation.objects.create(owner=owner, endpoint=make_endpoint(sim.url, "sim/llama-3.3"))
    owner_client.post(reverse("chat:conversation_preset", args=[conversation.public_id]), {"preset": "reasoning_prompt"})
    conversation.refresh_from_db()
    assert conversation.system_prompt.startswith("You are a careful reasoning assistant")


async def test_the_tool_loop_with_a_canned_result(owner, sim, endpoint):
    conversation = await Conversation.objects.acreate(
        owner=owner, endpoint=endpoint, tools=[WEATHER], canned_results={"get_weather": "22 degrees and sunny"},
        options={"stream": True, "tool_choice": "required", "chat_template_kwargs": {"enable_thinking": False}},
    )
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="What's the weather in Paris?")
    frames = await frames_until_idle(ws)
    assert "get_weather" in frames[-1] and "Add result" in frames[-1]
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    [call] = reply.tool_calls
    assert json.loads(call["function"]["arguments"])["location"]

    @database_sync_to_async
    def answer():
        client = Client()
        client.force_login(owner)
        url = reverse("chat:tool_result", args=[conversation.public_id, reply.public_id])
        return client.post(url, {"tool_call_id": call["id"], "canned": "1"}).content.decode()

    page = await answer()
    assert "22 degrees and sunny" in page and 'id="continue-form"' in page
    assert "22 degrees and sunny" in await ws.receive_from()  # the open page is told the new list too
    await Conversation.objects.filter(pk=conversation.pk).aupdate(options={"stream": True, "chat_template_kwargs": {"enable_thinking": False}})
    await send(ws, action="run")
    await frames_until_idle(ws)
    await ws.disconnect()
    body = sim.requests[-1].json
    assert body["messages"][-2]["tool_calls"][0]["id"] == call["id"]
    assert body["messages"][-1] == {"role": "tool", "content": "22 degrees and sunny", "tool_call_id": call["id"]}
    final = (await database_sync_to_async(lambda: list(conversation.thread()))())[-1]
    assert final.role == "assistant" and "22" in final.content


def test_tool_result_needs_content_or_a_canned_result(owner_client, owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
    call = {"id": "call-1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    reply = Message.objects.create(conversation=conversation, position=0, role="assistant", content="", tool_calls=[call])
    url = reverse("chat:tool_result", args=[conversation.public_id, reply.public_id])
    assert "Type the result" in owner_client.post(url, {"tool_call_id": "call-1", "content": " "}).content.decode()
    assert "has no canned result" in owner_client.post(url, {"tool_call_id": "call-1", "canned": "1"}).content.decode()
    assert owner_client.post(url, {"tool_call_id": "not-a-call", "content": "x"}).status_code == 404
    assert not Message.objects.filter(role="tool").exists()


def test_messages_of_any_role_and_image_parts(owner_client, owner, sim):
    gemma = Conversation.objects.create(owner=owner, endpoint=make_endpoint(sim.url, "sim/gemma-4", image_input=True))
    url = reverse("chat:message_add", args=[gemma.public_id])
    owner_client.post(url, {"role": "system", "content": "Be terse."})
    owner_client.post(url, {"role": "developer", "content": "Answer in French."})
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    from django.core.files.uploadedfile import SimpleUploadedFile

    owner_client.post(url, {"role": "user", "content": "What is this?", "image_file": SimpleUploadedFile("a.png", png, "image/png")})
    owner_client.post(url, {"role": "assistant", "content": "",
                            "tool_calls": json.dumps([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}])})
    owner_client.post(url, {"role": "tool", "content": "42", "tool_call_id": "c1"})
    api = gemma.api_messages()
    assert [m["role"] for m in api] == ["system", "developer", "user", "assistant", "tool"]
    parts = api[2]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    page = owner_client.get(reverse("chat:conversation", args=[gemma.public_id])).content.decode()
    assert 'class="thumb"' in page


@pytest.mark.parametrize(
    "data,error",
    [
        ({"role": "user", "content": "x", "image_url": "http://127.0.0.1/secret.png"}, "loopback address"),
        ({"role": "user", "content": "x", "image_url": "file:///etc/passwd"}, "http(s) or data"),
        ({"role": "wizard", "content": "x"}, "role"),
        ({"role": "assistant", "content": "", "tool_calls": "[oops"}, "JSON"),
        ({"role": "user", "content": "  "}, "content first"),
    ],
)
def test_bad_messages_are_refused_with_a_message(owner_client, owner, sim, data, error):
    gemma = Conversation.objects.create(owner=owner, endpoint=make_endpoint(sim.url, "sim/gemma-4", image_input=True))
    response = owner_client.post(reverse("chat:message_add", args=[gemma.public_id]), data)
    assert error in response.content.decode() and response["HX-Retarget"] == "#add-message"
    assert not Message.objects.exists()


def test_images_are_explained_and_refused_for_text_only_endpoints(owner_client, owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
    page = owner_client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert "does not take images" in page
    response = owner_client.post(reverse("chat:message_add", args=[conversation.public_id]),
                                 {"role": "user", "content": "x", "image_url": "https://example.com/a.png"})
    assert "does not take images" in response.content.decode() and not Message.objects.exists()


async def test_n_choices_side_by_side_and_picking_one(owner, sim, endpoint):
    conversation = await Conversation.objects.acreate(owner=owner, endpoint=endpoint, options={"stream": True, "n": 2, "seed": 3})
    ws = await connect(owner, conversation)
    await send(ws, action="send", content="Hello")
    frames = await frames_until_idle(ws)
    assert 'class="message-row choices"' in frames[-1] and frames[-1].count('class="message assistant') == 2
    answers = await database_sync_to_async(lambda: list(conversation.messages.filter(role="assistant").order_by("choice_index")))()
    assert [a.choice_index for a in answers] == [0, 1]

    @database_sync_to_async
    def pick():
        client = Client()
        client.force_login(owner)
        return client.post(reverse("chat:message_pick", args=[conversation.public_id, answers[1].public_id])).content.decode()

    assert "choices" not in await pick()
    await send(ws, action="send", content="And then?")
    await frames_until_idle(ws)
    await ws.disconnect()
    sent = sim.requests[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "content": answers[1].content}


def test_schema_check_marks_json_answers(owner_client, owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    body = {"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    for i, text in enumerate(['{"n": 1}', '{"n": "one"}']):
        completion = Completion.objects.create(conversation=conversation, endpoint=endpoint, request_body=body, status="complete")
        Message.objects.create(conversation=conversation, position=i, role="assistant", content=text, completion=completion)
    page = owner_client.get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert "valid JSON for the schema" in page
    assert "does not match the schema: at n: &#x27;one&#x27; is not of type &#x27;integer&#x27;" in page


def curl_words(text: str) -> tuple[list[str], dict]:
    """A cURL command as (flags and headers without URL and key, JSON body)."""
    words = shlex.split(text.replace("\\\n", " "))
    body = json.loads(words[words.index("-d") + 1])
    rest = [w for i, w in enumerate(words) if words[i - 1] != "-d" and w != "-d" and "chat/completions" not in w]
    # -d implies POST: the generic page leaves out the -X POST the model pages write.
    rest = [w for i, w in enumerate(rest) if not (w == "-X" or (w == "POST" and rest[i - 1] == "-X"))]
    return [w if not w.startswith("Authorization") else "Authorization" for w in rest], body


@pytest.mark.parametrize("example", page_examples(), ids=lambda e: e.id)
async def test_every_page_example_imports_sends_and_views_as_documented(example, owner, sim, endpoint):
    @database_sync_to_async
    def import_it():
        client = Client()
        client.force_login(owner)
        target = endpoint
        if "image_url" in json.dumps(example.body):  # images are imported only onto an endpoint that takes them
            target = make_endpoint(sim.url, "sim/gemma-4", image_input=True)
        response = client.post(reverse("chat:conversation_import"), {"command": example.curl, "endpoint": target.pk})
        assert response.status_code == 302, response.content.decode()[:2000]
        return Conversation.objects.get(owner=owner)

    conversation = await import_it()
    ws = await connect(owner, conversation)
    await send(ws, action="run")
    await frames_until_idle(ws, timeout=20)
    await ws.disconnect()
    sent = sim.requests[-1].json
    documented = dict(example.body)
    documented.update(documented.pop("extra_body", {}))  # the generic page: merged into the body
    assert {k: v for k, v in sent.items() if k != "model"} == {k: v for k, v in documented.items() if k != "model"}

    @database_sync_to_async
    def view_code():
        client = Client()
        client.force_login(owner)
        completion = Completion.objects.get(conversation=conversation)
        return client.get(reverse("chat:completion_code", args=[completion.public_id]), headers={"HX-Request": "true"})

    page = (await view_code()).content.decode()
    import html

    import re

    shown = page.split('<pre class="code highlight" tabindex="0"')[1].split(">", 1)[1].split("</pre>")[0]
    curl = html.unescape(re.sub(r"<[^>]+>", "", shown))  # (Pygments spans around the text)
    assert "$HEXGRID_API_KEY" in curl and KEY not in page
    ours, our_body = curl_words(curl)
    theirs, their_body = curl_words(example.curl)
    assert ours == theirs
    their_body.update(their_body.pop("extra_body", {}))
    our_body.pop("model"), their_body.pop("model")
    assert our_body == their_body


def test_inspector_shows_request_response_and_chunks(owner_client, owner, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
    completion = Completion.objects.create(
        conversation=conversation, endpoint=endpoint, request_body={"model": "m", "messages": [], "stream": True},
        response_body={"id": "chatcmpl-1", "choices": []}, chunk_count=17, ttft_ms=12, duration_ms=80, status="complete",
    )
    page = owner_client.get(reverse("chat:completion_inspect", args=[completion.public_id])).content.decode()
    assert "17 chunks" in page and "chatcmpl-1" in page and "accumulated from the stream" in page


def test_code_and_inspector_follow_conversation_visibility(client, owner, outsider, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
    completion = Completion.objects.create(conversation=conversation, endpoint=endpoint, request_body={"model": "m", "messages": []})
    client.login(username=outsider.username, password=PASSWORD)
    for name in ("chat:completion_code", "chat:completion_inspect"):
        assert client.get(reverse(name, args=[completion.public_id])).status_code == 404


def test_import_refuses_garbage_and_unknown_models(owner_client, owner, endpoint):
    response = owner_client.post(reverse("chat:conversation_import"), {"command": "rm -rf /"})
    assert response.status_code == 400 and "could not be read" in response.content.decode()
    command = 'curl http://x/v1/chat/completions -d \'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}\''
    response = owner_client.post(reverse("chat:conversation_import"), {"command": command})
    assert response.status_code == 400 and "No endpoint you may use serves" in response.content.decode()
    assert not Conversation.objects.exists()


def test_import_puts_unknown_attributes_in_extra_body_with_a_notice(owner_client, owner, endpoint):
    command = ('curl http://x/v1/chat/completions -d \'{"model": "sim/qwen3", "messages": [{"role": "user", "content": "hi"}],'
               ' "priority": 2, "temperature": 0.1}\'')
    response = owner_client.post(reverse("chat:conversation_import"), {"command": command}, follow=True)
    conversation = Conversation.objects.get(owner=owner)
    assert conversation.endpoint == endpoint
    assert conversation.options == {"temperature": 0.1, "extra_body": {"priority": 2}}
    assert "sent through extra_body: priority" in response.content.decode()


def test_messages_of_any_role_can_be_edited_in_place_or_removed(owner_client, owner, teammate, team, endpoint):
    conversation = Conversation.objects.create(owner=owner, endpoint=endpoint, team=team, visibility="team")
    system = Message.objects.create(conversation=conversation, position=0, role="system", content="Be terse.")
    tool = Message.objects.create(conversation=conversation, position=1, role="tool", content="old", tool_call_id="c1")
    owner_client.post(reverse("chat:message_edit", args=[conversation.public_id, system.public_id]), {"content": "Be verbose."})
    owner_client.post(reverse("chat:message_edit", args=[conversation.public_id, tool.public_id]), {"content": "new result"})
    assert conversation.api_messages() == [
        {"role": "system", "content": "Be verbose."}, {"role": "tool", "content": "new result", "tool_call_id": "c1"},
    ]
    page = owner_client.post(reverse("chat:message_edit", args=[conversation.public_id, system.public_id]), {"content": " "})
    assert "needs some content" in page.content.decode()
    owner_client.post(reverse("chat:message_delete", args=[conversation.public_id, tool.public_id]))
    assert [m["role"] for m in conversation.api_messages()] == ["system"]
    other = Client()
    other.force_login(teammate)  # a teammate reads, but cannot change
    assert other.post(reverse("chat:message_edit", args=[conversation.public_id, system.public_id]), {"content": "x"}).status_code == 404
    assert other.post(reverse("chat:message_delete", args=[conversation.public_id, system.public_id])).status_code == 404
