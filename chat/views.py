"""Pages and htmx partials. Every view checks who may see what; outsiders get 404, never 403."""

from __future__ import annotations

import base64
import json
import logging

from django.contrib import messages as django_messages
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django_htmx.http import reswap, retarget
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from chat import branches, endpoint_headers, fragments, liveness, nextrequest
from chat.forms import ImportCurlForm, family_defaults
from chat.models import Completion, Conversation, Message, message_rows
from chat.panel import PanelForm
from chat.presets import SCHEMA_EXAMPLES, TOOL_TEMPLATES
from chat.upstream.export import to_curl, to_json, to_python
from chat.upstream.headers import HeaderError, parse_lines
from chat.upstream.families import FAMILIES, is_reasoning_model
from chat.upstream.payload import PayloadError, check_image_url, validate_messages

log = logging.getLogger(__name__)


def visible_conversation(request: HttpRequest, public_id) -> Conversation:
    conversation = (
        Conversation.objects.visible_to(request.user)
        .select_related("endpoint", "owner")
        .filter(public_id=public_id)
        .first()
    )
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def _page_context(request: HttpRequest, conversation: Conversation, form: PanelForm | None = None, saved=False) -> dict:
    can_edit = conversation.can_edit(request.user)
    messages = conversation.thread(annotate=True)
    if form is None:
        form = PanelForm(initial=PanelForm.initial_for(conversation), user=request.user, conversation=conversation)
    if not can_edit:
        for field in form.fields.values():
            field.disabled = True
    family = FAMILIES[conversation.endpoint.family] if conversation.endpoint else FAMILIES["generic"]
    return {
        "conversation": conversation, "thread": messages, "rows": message_rows(messages), "can_edit": can_edit,
        "settings_form": form, "family": family, "saved": saved,
        "reasoning_model": bool(conversation.endpoint and is_reasoning_model(conversation.endpoint.model_id)),
        "tool_templates": list(TOOL_TEMPLATES), "schema_examples": list(SCHEMA_EXAMPLES),
        "answered_calls": {m.tool_call_id for m in messages if m.role == "tool"},
        "continue_forcing": nextrequest.forcing_tool_choice(conversation),
        "streaming": any(m.status == Message.Status.STREAMING for m in messages),
        "list_version": fragments.list_version(messages),
        "panel_notices": [problem] if (problem := PanelForm.stored_problem(conversation)) and can_edit else [],
    }


@require_GET
def conversation(request: HttpRequest, public_id) -> HttpResponse:
    conversation = visible_conversation(request, public_id)
    if conversation.kind == Conversation.Kind.COMPARE:  # the same address, history and access rules
        from chat import views_compare

        return views_compare.page(request, conversation)
    if conversation.kind == Conversation.Kind.BATCH:  # the history lists a batch run's conversation as the run
        return redirect("chat:batch_run", public_id=conversation.batch_run.public_id)
    # An answer left "streaming" by a server that stopped is finalized before it is shown.
    liveness.finalize_orphans(conversation.messages.all())
    return render(request, "chat/conversation.html", _page_context(request, conversation))


@require_POST
def conversation_settings(request: HttpRequest, public_id) -> HttpResponse:
    conversation = visible_conversation(request, public_id)
    if not conversation.can_edit(request.user):
        raise Http404("No such conversation")  # read-only viewers cannot change settings
    form = PanelForm(request.POST, user=request.user, conversation=conversation)
    saved = form.is_valid()
    notices = form.notices  # e.g. stream_options cleared because stream is off
    if saved:
        form.save()
        form = None  # re-render from what was stored
    # htmx swaps only 2xx responses: an invalid form comes back with 200 and its messages.
    context = _page_context(request, conversation, form, saved)
    context["panel_notices"] = notices
    response = render(request, "chat/conversation.html#settings-panel", context)
    if saved:  # the endpoint may have changed: the header says which model is talked to
        response.content += render_to_string(
            "chat/_conversation_header.html#conversation-model", {"conversation": conversation, "oob": True}
        ).encode()
    return response


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Container health check: the process answers and the database is reachable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok"})


# --- the settings panel's helpers, messages of any role, tool results, choices --------------------


def editable_conversation(request: HttpRequest, public_id) -> Conversation:
    """Owner only; anyone else gets the same 404 as for a conversation they cannot see."""
    conversation = visible_conversation(request, public_id)
    if not conversation.can_edit(request.user):
        raise Http404("No such conversation")
    return conversation


def _messages_partial(request: HttpRequest, conversation: Conversation, **extra) -> HttpResponse:
    context = {**_page_context(request, conversation), "oob": "", **extra}
    return render(request, "chat/conversation.html#message-list", context)


def _thread_changed(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """The shown branch changed: the page that asked gets the new list, and every other open view
    of the conversation (the owner's other tabs, teammates) gets it over its socket."""
    broadcast_thread(conversation)
    return _messages_partial(request, conversation)


def broadcast_thread(conversation: Conversation) -> None:
    from chat.consumers import group_name

    messages = conversation.thread(annotate=True)
    streaming = any(m.status == Message.Status.STREAMING for m in messages)
    html = fragments.message_list(messages, streaming=streaming)
    try:
        async_to_sync(get_channel_layer().group_send)(group_name(conversation.public_id), {"type": "conversation.fragment", "html": html})
    except Exception:  # a channel layer that is down must not fail the change; pages re-sync on reconnect
        log.warning("could not send the new thread of %s to its viewers", conversation.public_id, exc_info=True)


@require_POST
def conversation_preset(request: HttpRequest, public_id) -> HttpResponse:
    """Family defaults, the thinking preset, the reasoning-style prompt, a tool template, a schema example."""
    conversation = editable_conversation(request, public_id)
    preset = request.POST.get("preset", "")
    family = FAMILIES[conversation.endpoint.family] if conversation.endpoint else FAMILIES["generic"]
    if preset == "family_defaults" and conversation.endpoint:
        conversation.options = family_defaults(conversation.endpoint)
        conversation.tools, conversation.response_format = [], None
    elif preset == "thinking":
        conversation.options = {**conversation.options, **family.thinking_presets, **family.thinking_values(True)}
    elif preset == "reasoning_prompt" and family.reasoning_prompt:
        conversation.system_prompt = family.reasoning_prompt
        conversation.options = {**conversation.options, **family.thinking_presets}
    elif preset.startswith("tool:") and preset[5:] in TOOL_TEMPLATES:
        names = {t.get("function", {}).get("name") for t in conversation.tools}
        if preset[5:] not in names:
            conversation.tools = [*conversation.tools, TOOL_TEMPLATES[preset[5:]]]
    elif preset == "schema:tagline_response":
        schema = {"name": "tagline_response", "schema": SCHEMA_EXAMPLES["tagline_response"]}
        conversation.response_format = {"type": "json_schema", "json_schema": schema}
    elif preset == "schema:sentiment":
        conversation.options = {**conversation.options, "structured_outputs": {"json": SCHEMA_EXAMPLES["sentiment"]}}
    else:
        return HttpResponseBadRequest("Unknown preset")
    conversation.save()
    return render(request, "chat/conversation.html#settings-panel", _page_context(request, conversation, saved=True))


def shown_message(conversation: Conversation, message_id, **filters) -> Message:
    """One of the messages shown now (the active branch), or 404."""
    for message in conversation.thread(annotate=True):
        if message.public_id == message_id and all(getattr(message, k) == v for k, v in filters.items()):
            return message
    raise Http404("No such message")


@require_POST
def tool_result(request: HttpRequest, public_id, message_id) -> HttpResponse:
    """A `tool` message answering one call of an assistant message (typed, or the tool's canned result)."""
    conversation = editable_conversation(request, public_id)
    message = shown_message(conversation, message_id, role="assistant")
    call_id = request.POST.get("tool_call_id", "")
    call = next((c for c in message.tool_calls or [] if c.get("id") == call_id), None)
    if call is None:
        raise Http404("No such tool call")
    name = call.get("function", {}).get("name", "")
    content = request.POST.get("content", "")
    if request.POST.get("canned"):
        if name not in conversation.canned_results:
            return _messages_partial(request, conversation, tool_error=f"{name} has no canned result (add one in Settings → Tools).")
        content = conversation.canned_results[name]
    if not content.strip():
        return _messages_partial(request, conversation, tool_error=f"Type the result of {name} first.")
    branches.add_child(conversation, branches.tail(conversation.thread()), role="tool", content=content, tool_call_id=call_id)
    return _thread_changed(request, conversation)


MAX_IMAGE_BYTES = 4 * 1024 * 1024


def _image_part(request: HttpRequest, conversation: Conversation) -> dict | None:
    """The image_url part from a URL or an upload (sent as a data: URL); ValueError says what is wrong."""
    url = request.POST.get("image_url", "").strip()
    upload = request.FILES.get("image_file")
    if not url and not upload:
        return None
    if not (conversation.endpoint and conversation.endpoint.image_input):
        raise ValueError("This endpoint does not take images (image input is off for it).")
    if upload:
        if upload.size > MAX_IMAGE_BYTES:
            raise ValueError(f"The image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
        kind = (upload.content_type or "").lower()
        if kind not in ("image/png", "image/jpeg", "image/webp", "image/gif"):
            raise ValueError("Upload a PNG, JPEG, WebP or GIF image.")
        url = f"data:{kind};base64,{base64.b64encode(upload.read()).decode()}"
    try:
        check_image_url(url)
    except ValueError as e:
        raise ValueError(f"The image URL {e}.") from None
    return {"type": "image_url", "image_url": {"url": url}}


@require_POST
def message_add(request: HttpRequest, public_id) -> HttpResponse:
    """Add a message of any role before running: few-shot turns, tool replays, image parts."""
    conversation = editable_conversation(request, public_id)
    role, text = request.POST.get("role", ""), request.POST.get("content", "")
    message = {"role": role, "content": text}
    try:
        image = _image_part(request, conversation) if role == "user" else None
        if image:
            message["content"] = ([{"type": "text", "text": text}] if text else []) + [image]
        if role == "assistant" and request.POST.get("tool_calls", "").strip():
            message["tool_calls"] = json.loads(request.POST["tool_calls"])
        if role == "tool":
            message["tool_call_id"] = request.POST.get("tool_call_id", "").strip()
        if not text.strip() and not image and not message.get("tool_calls"):
            raise ValueError("Write the message's content first.")
        validate_messages([message])
    except (ValueError, PayloadError) as e:
        response = render(request, "chat/conversation.html#add-message",
                          {**_page_context(request, conversation), "add_message_error": str(e)})
        return retarget(reswap(response, "outerHTML"), "#add-message")
    branches.add_child(
        conversation, branches.tail(conversation.thread()), role=role, content=message["content"],
        tool_calls=message.get("tool_calls"), tool_call_id=message.get("tool_call_id", ""),
    )
    named = role == "user" and not conversation.title and text.strip()
    if named:
        conversation.title = text[:80]  # a first user message names the conversation, as a send does
        conversation.save(update_fields=["title", "updated_at"])
    response = _thread_changed(request, conversation)
    if named:
        response.content += fragments.title(conversation).encode()  # the header's title, out of band
    return response


@require_POST
def message_pick(request: HttpRequest, public_id, message_id) -> HttpResponse:
    """Continue with one of n choices: the others leave the shown branch."""
    conversation = editable_conversation(request, public_id)
    chosen = shown_message(conversation, message_id, role="assistant")
    conversation.messages.filter(completion=chosen.completion, parent_id=chosen.parent_id).exclude(pk=chosen.pk).update(
        is_active=False
    )
    return _thread_changed(request, conversation)


@require_POST
def message_show(request: HttpRequest, public_id, message_id) -> HttpResponse:
    """Switch a branch: show the alternative this message belongs to, with its whole continuation."""
    conversation = editable_conversation(request, public_id)
    message = get_object_or_404(conversation.messages.filter(removed=False), public_id=message_id)
    if any(m.status == Message.Status.STREAMING for m in conversation.thread()):
        return _messages_partial(request, conversation, tool_error="Stop the answer before switching branches.")
    branches.select(conversation, message)
    return _thread_changed(request, conversation)


def visible_completion(request: HttpRequest, public_id) -> Completion:
    completion = (
        Completion.objects.select_related("endpoint", "conversation")
        .filter(public_id=public_id, conversation__in=Conversation.objects.visible_to(request.user))
        .first()
    )
    if completion is None:
        raise Http404("No such completion")
    return completion


@require_GET
def completion_code(request: HttpRequest, public_id) -> HttpResponse:
    """The exact request as cURL (key as $HEXGRID_API_KEY), Python (openai SDK) and JSON."""
    completion = visible_completion(request, public_id)
    base_url = completion.endpoint.base_url if completion.endpoint else "$BASE_URL/v1"
    body = completion.request_body
    # The endpoint's headers (secret ones read from the environment) and the conversation's as sent.
    headers = endpoint_headers.for_display(completion.endpoint, completion.request_headers, completion.endpoint_headers)
    context = {"completion": completion, "curl": to_curl(base_url, body, headers=headers),
               "python": to_python(base_url, body, headers=headers), "json": to_json(body), "headers": headers}
    template = "chat/code.html#code" if request.htmx else "chat/code.html"
    return render(request, template, context)


@require_POST
def conversation_next_request(request: HttpRequest, public_id) -> HttpResponse:
    """The request the composer would send now (the panel's values as shown and the composer's
    text, both posted), as JSON, cURL and Python: built by the same code as the send itself."""
    conversation = editable_conversation(request, public_id)
    context = {"conversation": conversation}
    try:
        body = nextrequest.preview(conversation, request.user, settings=request.POST, content=request.POST.get("content", ""))
    except nextrequest.NotSendable as e:
        context["error"] = str(e)
    else:
        endpoint = conversation.endpoint
        base_url = endpoint.base_url if endpoint else "$BASE_URL/v1"
        shown = request.POST.get("headers")
        try:  # the panel's headers as shown (an invalid value blocked preview() already)
            own = parse_lines(shown) if shown is not None else conversation.headers
        except HeaderError:
            own = {}
        headers = endpoint_headers.for_display(endpoint, own)
        context.update(body=body, curl=to_curl(base_url, body, headers=headers), python=to_python(base_url, body, headers=headers),
                       json=to_json(body), headers=headers)
    return render(request, "chat/code.html#next-request", context)


@require_GET
def completion_inspect(request: HttpRequest, public_id) -> HttpResponse:
    """The exact request sent and the final response (or the accumulated stream), with chunk count and timings."""
    completion = visible_completion(request, public_id)
    context = {
        "completion": completion,
        "request_json": json.dumps(completion.request_body, indent=2, ensure_ascii=False),
        "response_json": json.dumps(completion.response_body, indent=2, ensure_ascii=False) if completion.response_body else "",
        "headers": endpoint_headers.for_display(completion.endpoint, completion.request_headers, completion.endpoint_headers),
    }
    template = "chat/code.html#inspect" if request.htmx else "chat/code.html"
    return render(request, template, {**context, "inspect": True})


@require_POST
def conversation_import(request: HttpRequest) -> HttpResponse:
    """Paste a cURL command (e.g. from the vendor pages): a new conversation with its messages and options."""
    form = ImportCurlForm(request.POST, user=request.user)
    if not form.is_valid():
        from chat.views_history import _index_context

        return render(request, "chat/index.html", {**_index_context(request), "import_form": form}, status=400)
    imported, endpoint, values = (form.cleaned_data[k] for k in ("imported", "endpoint", "values"))
    values = dict(values)
    if imported.unknown:
        django_messages.info(request, f"Not in the option registry, sent through extra_body: {', '.join(sorted(imported.unknown))}.")
    conversation = Conversation.objects.create(
        owner=request.user, endpoint=endpoint,
        tools=values.pop("tools", None) or [], response_format=values.pop("response_format", None),
        options={k: v for k, v in values.items() if v is not None},
    )
    # One by one, in order: each message follows the one before it (the thread is a tree), so the
    # parent must have its primary key first.
    parent = None
    for position, m in enumerate(imported.messages):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, position=position, role=m["role"], content=m.get("content") or "",
            tool_calls=m.get("tool_calls"), tool_call_id=m.get("tool_call_id", ""), name=m.get("name", ""),
        )
        if parent.role == Message.Role.USER and not conversation.title:
            conversation.title = parent.text[:80]  # as a first send names a conversation
    conversation.title = conversation.title or "Imported request"  # (no user message to name it)
    conversation.save(update_fields=["title", "updated_at"])
    if imported.model_placeholder:
        django_messages.info(request, f"The command's model {imported.model} is a placeholder; this conversation uses {endpoint.name_and_model}.")
    elif imported.model and imported.model != endpoint.model_id:
        django_messages.info(request, f"The command asked for model {imported.model!r}; this conversation uses {endpoint.name_and_model}.")
    return redirect("chat:conversation", public_id=conversation.public_id)


@require_POST
def message_edit(request: HttpRequest, public_id, message_id) -> HttpResponse:
    """Change a shown message in place before running (any role); user turns can also be resent from the socket."""
    conversation = editable_conversation(request, public_id)
    message = shown_message(conversation, message_id)
    if message.status == Message.Status.STREAMING:
        return _messages_partial(request, conversation, tool_error="That answer is still streaming.")
    edited = {"role": message.role, "content": request.POST.get("content", "")}
    if isinstance(message.content, list):  # keep image parts; replace the text part
        edited["content"] = [p for p in message.content if p.get("type") != "text"]
        if request.POST.get("content", "").strip():
            edited["content"].insert(0, {"type": "text", "text": request.POST["content"]})
    if message.tool_calls:
        edited["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        edited["tool_call_id"] = message.tool_call_id
    try:
        if not request.POST.get("content", "").strip() and not message.tool_calls:
            raise ValueError("A message needs some content.")
        validate_messages([edited])
    except (ValueError, PayloadError) as e:
        return _messages_partial(request, conversation, tool_error=str(e))
    message.content = edited["content"]
    message.save(update_fields=["content", "updated_at"])
    return _thread_changed(request, conversation)


@require_POST
def message_delete(request: HttpRequest, public_id, message_id) -> HttpResponse:
    """Take a message out of the shown branch (it stays in the history of earlier branches)."""
    conversation = editable_conversation(request, public_id)
    message = shown_message(conversation, message_id)
    if message.status == Message.Status.STREAMING:
        return _messages_partial(request, conversation, tool_error="Stop the answer before removing it.")
    branches.remove(conversation, message)
    return _thread_changed(request, conversation)
