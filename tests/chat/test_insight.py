"""Issue 17 in the playground and the console, against the simulator on a real socket: the capability
probe (action, button, grid, flags, pickers, panel notes), the token meter, What the model saw, the
load indicator and table, and custom headers (per endpoint, secret ones write-only and never shown;
per conversation), with who may see what."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client
from django.urls import reverse

from chat import endpoint_headers, nextrequest, probe
from chat.forms import family_defaults
from chat.models import ApiKey, Completion, Conversation, Endpoint
from chat.panel import PanelForm
from chat.simulator import ModelSpec, make_simulator
from tests.servers import serve_asgi

KEY = "sim-test-key-1234"
SECRET = "gw-Secret-7c1e5a9b3d2f"


@pytest.fixture
def sim_key(db) -> ApiKey:
    key = ApiKey(name="sim")
    key.set_secret(KEY)
    key.save()
    return key


@pytest.fixture
def qwen(simulator, sim_key) -> Endpoint:
    return Endpoint.objects.create(name="sim qwen", base_url=simulator, model_id="sim/qwen3", api_key=sim_key)


@pytest.fixture
def conversation(owner, team, qwen) -> Conversation:
    return Conversation.objects.create(owner=owner, team=team, visibility="team", endpoint=qwen, options=family_defaults(qwen))


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(staff) -> Client:
    return logged_in(staff)


def panel_post(conversation: Conversation, **changes) -> dict:
    """The panel's POST data as the browser sends it, from what is stored, with changes."""
    data = {}
    for name, value in PanelForm.initial_for(conversation).items():
        data[name] = "" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value
    data.update(changes)
    return data


def bare_server():
    """An OpenAI-compatible server that is not vLLM: /v1/models and nothing else."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/v1/models":
            body = b'{"object":"list","data":[{"id":"plain","object":"model"}]}'
            status = 200
        else:
            body, status = b'{"detail":"Not Found"}', 404
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return serve_asgi(app)


# --- the token meter ---------------------------------------------------------------------------


def test_the_meter_counts_exactly_the_next_request(conversation, owner, simulator_app):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    data = panel_post(conversation, tools=json.dumps(tools), thinking="off", max_tokens="64", content="What is the weather in Paris?")
    response = logged_in(owner).post(reverse("chat:token_meter", args=[conversation.public_id]), data)
    assert response.status_code == 200
    sent = simulator_app.requests[-1]
    body = nextrequest.preview(conversation, owner, settings=_query(data), content=data["content"])
    assert sent.path == "/tokenize"
    assert sent.json["messages"] == body["messages"] and sent.json["tools"] == tools
    assert sent.json["chat_template_kwargs"] == {"enable_thinking": False} == body["chat_template_kwargs"]
    count = _count(response)
    # The completion of that very body reports the same prompt_tokens.
    from asgiref.sync import async_to_sync

    plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}

    async def complete():
        async with probe.client_for(conversation.endpoint) as client:
            return await client.create_chat({**plain, "max_tokens": 2})

    answer = async_to_sync(complete)()
    assert count == answer["usage"]["prompt_tokens"]
    html = response.content.decode()
    assert f"of 32768" in html and f"room for {32768 - count} (max_tokens 64)" in html and 'data-fits="true"' in html


def _query(data):
    from django.http import QueryDict

    q = QueryDict(mutable=True)
    for k, v in data.items():
        q[k] = v
    return q


def _count(response) -> int:
    import re

    return int(re.search(r'data-count="(\d+)"', response.content.decode()).group(1))


def test_a_request_that_cannot_fit_is_flagged_before_sending(owner, team, sim_key):
    app = make_simulator(api_key=KEY, models=[ModelSpec("sim/small", family="qwen", max_model_len=40)])
    with serve_asgi(app) as url:
        endpoint = Endpoint.objects.create(name="small", base_url=url, model_id="sim/small", api_key=sim_key)
        conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
        client = logged_in(owner)
        fits = client.post(reverse("chat:token_meter", args=[conversation.public_id]), panel_post(conversation, content="Hi"))
        assert 'data-fits="true"' in fits.content.decode()
        long = client.post(reverse("chat:token_meter", args=[conversation.public_id]),
                           panel_post(conversation, content="word " * 60)).content.decode()
        assert 'data-fits="false"' in long and "Won't fit: The prompt is" in long and "the model&#x27;s context is 40" in long
        over = client.post(reverse("chat:token_meter", args=[conversation.public_id]),
                           panel_post(conversation, content="Hi", max_tokens="500")).content.decode()
        assert "max_tokens 500 is more than the model&#x27;s whole context (40)" in over


def test_the_meter_without_tokenize_says_so(owner, db):
    with bare_server() as url:
        endpoint = Endpoint.objects.create(name="plain", base_url=url, model_id="plain")
        conversation = Conversation.objects.create(owner=owner, endpoint=endpoint)
        html = logged_in(owner).post(reverse("chat:token_meter", args=[conversation.public_id]), panel_post(conversation, content="x")).content.decode()
        assert "no /tokenize on this server" in html
        prompt = logged_in(owner).post(reverse("chat:next_prompt", args=[conversation.public_id]), panel_post(conversation, content="x")).content.decode()
        assert "No /tokenize on this server" in prompt
        load = logged_in(owner).get(reverse("chat:endpoint_load", args=[conversation.public_id])).content.decode()
        assert "no load figures" in load


def test_an_invalid_panel_value_is_named_by_the_meter(conversation, owner):
    html = logged_in(owner).post(reverse("chat:token_meter", args=[conversation.public_id]),
                                 panel_post(conversation, temperature="hot")).content.decode()
    assert "Token count unavailable" in html and "temperature" in html


def test_only_the_owner_meters_the_next_request(conversation, teammate, outsider):
    for user in (teammate, outsider):
        for name in ("chat:token_meter", "chat:next_prompt"):
            assert logged_in(user).post(reverse(name, args=[conversation.public_id]), panel_post(conversation)).status_code == 404
    assert Client().post(reverse("chat:token_meter", args=[conversation.public_id])).status_code == 302


# --- What the model saw ------------------------------------------------------------------------


def test_what_the_model_will_see_marks_the_template_tokens(conversation, owner):
    html = logged_in(owner).post(reverse("chat:next_prompt", args=[conversation.public_id]),
                                 panel_post(conversation, content="Bonjour <b>tout</b> le monde")).content.decode()
    assert '<mark class="special-token">&lt;|im_start|&gt;</mark>user' in html
    assert "Bonjour &lt;b&gt;tout&lt;/b&gt; le monde" in html  # the user's text is escaped
    assert '<mark class="special-token">&lt;|im_end|&gt;' in html


def test_what_the_model_saw_for_a_past_completion(conversation, owner, teammate, outsider, simulator_app):
    body = {"model": "sim/qwen3", "messages": [{"role": "user", "content": "Earlier question"}], "chat_template_kwargs": {"enable_thinking": False}}
    completion = Completion.objects.create(conversation=conversation, endpoint=conversation.endpoint, request_body=body,
                                           usage={"prompt_tokens": 12, "completion_tokens": 3}, request_headers={"X-Trace": "t-9"})
    url = reverse("chat:completion_prompt", args=[completion.public_id])
    for user in (owner, teammate):  # a teammate who may see the conversation may see its prompts
        html = logged_in(user).get(url, HTTP_HX_REQUEST="true").content.decode()
        assert "Earlier question" in html and "&lt;think&gt;" in html  # the empty think block of enable_thinking false
        assert "the completion reported 12 prompt tokens" in html
    assert simulator_app.requests[-1].headers["x-trace"] == "t-9"  # the completion's own headers
    assert logged_in(outsider).get(url).status_code == 404
    page = logged_in(owner).get(url)  # without htmx: a page of its own
    assert page.status_code == 200 and "<html" in page.content.decode()


# --- server load -----------------------------------------------------------------------------------


def test_the_load_indicator_and_who_may_read_it(conversation, qwen, owner, teammate, outsider, other_team):
    url = reverse("chat:endpoint_load", args=[conversation.public_id])
    html = logged_in(owner).get(url).content.decode()
    assert "0 running · 0 waiting · KV cache 0.0 %" in html
    assert logged_in(teammate).get(url).status_code == 200  # the conversation is shared with the team
    assert logged_in(outsider).get(url).status_code == 404
    qwen.teams.set([other_team])  # the endpoint is not the red team's any more
    assert logged_in(teammate).get(url).status_code == 404
    page = logged_in(owner).get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert url in page and 'id="token-meter"' in page


def test_load_is_read_at_most_every_few_seconds(conversation, owner, simulator_app):
    client = logged_in(owner)
    before = sum(1 for r in simulator_app.requests if r.path == "/metrics")
    for _ in range(3):
        client.get(reverse("chat:endpoint_load", args=[conversation.public_id]))
    assert sum(1 for r in simulator_app.requests if r.path == "/metrics") - before == 1
    conversation.headers = {"X-Route": "pool-b"}  # another route through a gateway: read on its own
    conversation.save()
    client.get(reverse("chat:endpoint_load", args=[conversation.public_id]))
    metrics = [r for r in simulator_app.requests if r.path == "/metrics"]
    assert len(metrics) - before == 2 and metrics[-1].headers["x-route"] == "pool-b"


# --- the capability probe in the console ----------------------------------------------------------


def test_the_probe_action_stores_the_grid_and_sets_the_flags(admin_client, simulator, sim_key):
    llama = Endpoint.objects.create(name="llama", base_url=simulator, model_id="sim/llama-3.3", api_key=sim_key, reasoning_parser=True)
    gemma = Endpoint.objects.create(name="gemma", base_url=simulator, model_id="sim/gemma-4", api_key=sim_key, image_input=False)
    response = admin_client.post(reverse("admin:chat_endpoint_changelist"),
                                 {"action": "probe_capabilities", "_selected_action": [llama.pk, gemma.pk]}, follow=True)
    notes = [str(m) for m in response.context["messages"]]
    assert "llama: probe 16/18 pass · 2 not supported" in notes and "gemma: probe 18/18 pass" in notes
    llama.refresh_from_db(), gemma.refresh_from_db()
    assert (llama.reasoning_parser, llama.auto_tool_choice, llama.image_input) == (False, True, False)
    assert (gemma.reasoning_parser, gemma.image_input) == (True, True)
    assert llama.probed_at is not None and probe.max_model_len(llama) == 32768
    page = admin_client.get(reverse("admin:chat_endpoint_change", args=[llama.pk])).content.decode()
    assert page.count('<tr class="probe-') == 18
    assert '<tr class="probe-unsupported" data-probe="reasoning">' in page and '<tr class="probe-pass" data-probe="so_grammar">' in page
    assert "Probed " in page and "sim/llama-3.3 is not a multimodal model" in page
    # The admin may still override a flag; it stands until the next probe.
    listing = admin_client.get(reverse("admin:chat_endpoint_changelist")).content.decode()
    assert "probe 16/18 pass" in listing


def test_the_probe_button_on_the_endpoint_page(admin_client, qwen):
    page = admin_client.get(reverse("admin:chat_endpoint_change", args=[qwen.pk])).content.decode()
    assert reverse("admin:chat_endpoint_probe_one", args=[qwen.pk]) in page and "Not probed yet." in page
    response = admin_client.post(reverse("admin:chat_endpoint_probe_one", args=[qwen.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:chat_endpoint_change", args=[qwen.pk])
    assert "probe 17/18 pass · 1 not supported" in response.content.decode()
    assert admin_client.get(reverse("admin:chat_endpoint_probe_one", args=[qwen.pk])).status_code == 302  # GET runs nothing
    qwen.refresh_from_db()
    assert qwen.image_input is False


def test_the_probe_is_offered_after_discover_models(admin_client, simulator, sim_key):
    response = admin_client.post(reverse("admin:chat_endpoint_discover"),
                                 {"base_url": simulator, "api_key": sim_key.pk, "verify_tls": "on"}, follow=True)
    html = response.content.decode()
    ids = ",".join(str(pk) for pk in Endpoint.objects.filter(base_url=simulator).order_by("pk").values_list("pk", flat=True))
    link = reverse("admin:chat_endpoint_probe") + "?ids="
    assert "probe their capabilities" in html and link in html
    confirm = admin_client.get(link + ids).content.decode()
    assert "Probe 7 endpoints" in confirm
    done = admin_client.post(reverse("admin:chat_endpoint_probe"), {"ids": ids}, follow=True)
    assert sum("probe " in str(m) for m in done.context["messages"]) == 7
    assert Endpoint.objects.filter(base_url=simulator, probed_at__isnull=True).count() == 0


def test_the_load_table_in_the_console(admin_client, qwen, simulator_app):
    page = admin_client.get(reverse("admin:chat_endpoint_change", args=[qwen.pk])).content.decode()
    assert '<td data-figure="running">0</td>' in page and '<td data-figure="kv_cache_usage">0.0 %</td>' in page


def test_pickers_summarise_the_probe_and_the_panel_marks_what_failed(conversation, owner, qwen):
    qwen.probe_result = {"cells": [
        {"key": "so_regex", "label": "structured_outputs regex", "status": "fail", "message": "HTTP 400: regex <unsupported>", "latency_ms": 3},
        {"key": "n2", "label": "n = 2", "status": "pass", "message": "2 choices", "latency_ms": 3},
    ], "facts": {}}
    from django.utils import timezone

    qwen.probed_at = timezone.now()
    qwen.save()
    page = logged_in(owner).get(reverse("chat:conversation", args=[conversation.public_id])).content.decode()
    assert "sim qwen — sim/qwen3 · probe 1/2 pass · 1 failed" in page  # the picker's option (short)
    field = page.split('id="field-structured_outputs__kind"')[1].split('id="field-')[0]
    assert 'class="probe-note"' in field and "structured_outputs regex: failed on this endpoint — HTTP 400: regex &lt;unsupported&gt;" in field
    assert "it can still be sent" in field
    assert 'class="probe-note"' not in page.split('id="field-n"')[1].split('id="field-')[0]


# --- custom headers ------------------------------------------------------------------------------


def endpoint_post(endpoint: Endpoint, **changes) -> dict:
    data = {"name": endpoint.name, "base_url": endpoint.base_url, "model_id": endpoint.model_id, "family": endpoint.family,
            "api_key": endpoint.api_key_id or "", "timeout": endpoint.timeout, "verify_tls": "on", "is_active": "on",
            "reasoning_parser": "on", "auto_tool_choice": "on", "default_options": "{}", "plain_headers": "", "secret_headers": ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_endpoint_headers_plain_and_secret_write_only(admin_client, qwen):
    change = reverse("admin:chat_endpoint_change", args=[qwen.pk])
    response = admin_client.post(change, endpoint_post(qwen, plain_headers="X-Route: pool-a", secret_headers=f"X-Gateway-Token: {SECRET}"))
    assert response.status_code == 302, response.content.decode()[:2000]
    qwen.refresh_from_db()
    assert endpoint_headers.values(qwen) == {"X-Route": "pool-a", "X-Gateway-Token": SECRET}
    stored = json.dumps(Endpoint.objects.values_list("custom_headers", flat=True).get(pk=qwen.pk))
    assert SECRET not in stored and SECRET[:8] not in stored  # ciphertext only
    page = admin_client.get(change).content.decode()
    assert SECRET not in page and "X-Route: pool-a" in page and "X-Gateway-Token: ••••" in page
    assert SECRET not in admin_client.get(reverse("admin:chat_endpoint_changelist")).content.decode()
    # Saved again with the secret left blank and ticked: kept. Unticked: removed.
    admin_client.post(change, endpoint_post(qwen, plain_headers="X-Route: pool-b", keep_secret_headers="X-Gateway-Token"))
    qwen.refresh_from_db()
    assert endpoint_headers.values(qwen) == {"X-Route": "pool-b", "X-Gateway-Token": SECRET}
    admin_client.post(change, endpoint_post(qwen, plain_headers="X-Route: pool-b"))
    qwen.refresh_from_db()
    assert endpoint_headers.values(qwen) == {"X-Route": "pool-b"}


def test_endpoint_header_errors_are_named_and_the_secret_is_not_rendered_back(admin_client, qwen):
    change = reverse("admin:chat_endpoint_change", args=[qwen.pk])
    html = admin_client.post(change, endpoint_post(qwen, plain_headers="Authorization: Bearer x", secret_headers=f"X-Gateway-Token: {SECRET}")).content.decode()
    assert "Authorization cannot be set here: the endpoint&#x27;s API key sets Authorization." in html
    assert SECRET not in html  # the form shown again keeps the secret box empty
    html = admin_client.post(change, endpoint_post(qwen, plain_headers="X-A: 1\nx-a: 2")).content.decode()
    assert "x-a is given twice." in html
    response = admin_client.post(change, endpoint_post(qwen, secret_headers=f"X-Gateway-Token: {SECRET}"))
    assert response.wsgi_request.sensitive_post_parameters == ("secret_headers",)


def test_a_secret_header_is_rotated_with_the_keys(qwen, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    endpoint_headers.set_rows(qwen, [endpoint_headers.Row("X-Gateway-Token", SECRET, True)])
    qwen.save()
    before = qwen.custom_headers[0]["value"]
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FIELD_ENCRYPTION_KEYS]
    call_command("rotate_keys", stdout=open("/dev/null", "w"))
    qwen.refresh_from_db()
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    assert qwen.custom_headers[0]["value"] != before and endpoint_headers.values(qwen) == {"X-Gateway-Token": SECRET}


def test_conversation_headers_in_the_panel(conversation, owner, qwen):
    client = logged_in(owner)
    url = reverse("chat:conversation_settings", args=[conversation.public_id])
    html = client.post(url, panel_post(conversation, headers="Authorization: Bearer mine"), HTTP_HX_REQUEST="true").content.decode()
    assert "Authorization cannot be set here" in html
    conversation.refresh_from_db()
    assert conversation.headers == {}
    client.post(url, panel_post(conversation, headers="X-Trace-Id: abc\nx-sim-delay-token: 0"), HTTP_HX_REQUEST="true")
    conversation.refresh_from_db()
    assert conversation.headers == {"X-Trace-Id": "abc", "x-sim-delay-token": "0"}
    endpoint_headers.set_rows(qwen, [endpoint_headers.Row("X-Route", "pool-a", False)])
    qwen.save()
    html = client.post(url, panel_post(conversation, headers="x-route: mine"), HTTP_HX_REQUEST="true").content.decode()
    assert "x-route is set by the endpoint" in html


@pytest.mark.django_db(transaction=True)
def test_a_secret_endpoint_header_appears_in_no_html_log_or_export(conversation, owner, teammate, qwen, simulator_app, caplog):
    """Sent with the request (the simulator receives it), shown masked everywhere, as API keys are."""
    from asgiref.sync import async_to_sync

    from chat.models import Message
    from chat.runs import CompletionRun

    endpoint_headers.set_rows(qwen, [endpoint_headers.Row("X-Gateway-Token", SECRET, True), endpoint_headers.Row("X-Route", "pool-a", False)])
    qwen.save()
    conversation.headers = {"X-Trace-Id": "trace-77", "x-sim-status": "500", "x-sim-body": "text"}
    conversation.save()
    body = nextrequest.preview(conversation, owner, content="hello")
    completion = Completion.objects.create(conversation=conversation, endpoint=qwen, request_body=body, status="streaming")
    assert completion.request_headers == conversation.headers  # the conversation's, as sent
    message = Message.objects.create(conversation=conversation, position=0, role="assistant", status="streaming", completion=completion)

    async def emit(html):
        pass

    with caplog.at_level(logging.DEBUG):
        async_to_sync(CompletionRun(completion, message, emit).run)()
    sent = simulator_app.requests[-1]
    assert sent.headers["x-gateway-token"] == SECRET and sent.headers["x-route"] == "pool-a" and sent.headers["x-trace-id"] == "trace-77"
    message.refresh_from_db()
    assert message.status == "error" and "HTTP 500" in message.error  # x-sim-status from the conversation
    client = logged_in(owner)
    pages = [
        client.get(reverse("chat:conversation", args=[conversation.public_id])),
        client.get(reverse("chat:completion_code", args=[completion.public_id])),
        client.get(reverse("chat:completion_inspect", args=[completion.public_id])),
        client.post(reverse("chat:conversation_next_request", args=[conversation.public_id]), panel_post(conversation, content="x")),
        client.get(reverse("chat:conversation_export_json", args=[conversation.public_id])),
        client.get(reverse("chat:conversation_export_markdown", args=[conversation.public_id])),
        logged_in(teammate).get(reverse("chat:conversation", args=[conversation.public_id])),
    ]
    for response in pages:
        text = response.content.decode()
        assert response.status_code == 200 and SECRET not in text and SECRET[:8] not in text
    code = plain_text(pages[1])
    assert "X-Gateway-Token: $X_GATEWAY_TOKEN" in code and "X-Trace-Id: trace-77" in code and "X-Route: pool-a" in code
    inspect = pages[2].content.decode()
    assert "X-Gateway-Token: ••••" in inspect and '<span class="badge">secret</span>' in inspect
    assert "X-Gateway-Token: $X_GATEWAY_TOKEN" in plain_text(pages[3])
    assert SECRET not in caplog.text and SECRET not in message.error and SECRET not in completion.error_message


def test_a_past_completion_shows_the_endpoint_headers_it_was_sent_with(conversation, owner, qwen):
    """View code and the Inspector show what went: an endpoint header changed (or a secret one
    added) after the send does not appear in an earlier completion's request."""
    endpoint_headers.set_rows(qwen, [endpoint_headers.Row("X-Route", "pool-a", False), endpoint_headers.Row("X-Gateway-Token", SECRET, True)])
    qwen.save()
    completion = Completion.objects.create(conversation=conversation, endpoint=qwen, request_body={"model": "sim/qwen3", "messages": []})
    assert completion.endpoint_headers == {"headers": {"X-Route": "pool-a", "X-Gateway-Token": "••••"}, "secret": ["X-Gateway-Token"]}
    endpoint_headers.set_rows(qwen, [endpoint_headers.Row("X-Route", "pool-b", False), endpoint_headers.Row("X-Tenant", "blue", True)])
    qwen.save()
    client = logged_in(owner)
    code = plain_text(client.get(reverse("chat:completion_code", args=[completion.public_id])))
    inspect = plain_text(client.get(reverse("chat:completion_inspect", args=[completion.public_id])))
    assert "X-Route: pool-a" in code and "X-Gateway-Token: $X_GATEWAY_TOKEN" in code
    assert "X-Route: pool-a" in inspect and "X-Gateway-Token: ••••" in inspect
    for text in (code, inspect):
        assert "pool-b" not in text and "X-Tenant" not in text and SECRET not in text
    # The next request is built now: the endpoint's current headers.
    preview = plain_text(client.post(reverse("chat:conversation_next_request", args=[conversation.public_id]), panel_post(conversation, content="x")))
    assert "X-Route: pool-b" in preview and "X-Tenant: $X_TENANT" in preview


def plain_text(response) -> str:
    """The page's text as a reader sees it (the code views are split into highlighted spans)."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", response.content.decode()))
