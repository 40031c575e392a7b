"""Server insight in the playground: the token meter, What the model saw, the server's load.

The meter and the next request's prompt are the owner's (they take the panel's values as shown,
like the next-request preview); a past completion's prompt is anyone's who may see it; the load of
a conversation's endpoint is anyone's who may see the conversation and use the endpoint. Everyone
else gets a 404.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from chat import insight, nextrequest
from chat.models import Endpoint
from chat.views import editable_conversation, visible_completion, visible_conversation


def _next_request(request: HttpRequest, conversation):
    """(endpoint, body, conversation headers) of what the composer would send now, from the
    panel's values as shown; NotSendable says why not."""
    form = nextrequest.panel_form(conversation, request.user, request.POST)
    body = nextrequest.preview(conversation, request.user, settings=request.POST, content=request.POST.get("content", ""))
    return form.cleaned_data["endpoint"], body, form.cleaned_data.get("headers") or {}


@require_POST
def token_meter(request: HttpRequest, public_id) -> HttpResponse:
    """The prompt's token count for the next request, against the model's context."""
    conversation = editable_conversation(request, public_id)
    context = {"conversation": conversation}
    try:
        endpoint, body, headers = _next_request(request, conversation)
    except nextrequest.SettingsInvalid as e:
        context["meter"] = {"error": str(e)}
    except nextrequest.NotSendable as e:  # e.g. nothing to send yet: an empty meter, unless text was typed
        context["meter"] = {"error": str(e)} if request.POST.get("content", "").strip() else {}
    else:
        context["meter"] = insight.meter(endpoint, body, headers)
    return render(request, "chat/insight.html#meter", context)


@require_POST
def next_prompt(request: HttpRequest, public_id) -> HttpResponse:
    """What the model would see for the next request: the templated prompt and its count."""
    conversation = editable_conversation(request, public_id)
    context = {"conversation": conversation, "title": "What the model will see", "next": True}
    try:
        endpoint, body, headers = _next_request(request, conversation)
    except nextrequest.NotSendable as e:
        context["prompt"] = {"error": str(e)}
    else:
        context["prompt"] = insight.templated(endpoint, body, headers)
    return render(request, "chat/insight.html#prompt", context)


@require_GET
def completion_prompt(request: HttpRequest, public_id) -> HttpResponse:
    """What the model saw for a past completion (its request as sent, through the same template)."""
    completion = visible_completion(request, public_id)
    context = {"completion": completion, "title": "What the model saw"}
    if completion.endpoint is None:
        context["prompt"] = {"error": "The endpoint of this completion was deleted."}
    else:
        context["prompt"] = insight.templated(completion.endpoint, completion.request_body, completion.request_headers)
        usage = completion.usage if isinstance(completion.usage, dict) else {}
        context["prompt_tokens"] = usage.get("prompt_tokens")
    template = "chat/insight.html#prompt" if request.htmx else "chat/insight.html"
    return render(request, template, context)


@require_GET
def endpoint_load(request: HttpRequest, public_id) -> HttpResponse:
    """The small load indicator of a conversation's endpoint, for anyone who may see the conversation
    and use the endpoint (read at most every few seconds)."""
    conversation = visible_conversation(request, public_id)
    endpoint = conversation.endpoint
    if endpoint is None or not Endpoint.objects.usable_by(request.user).filter(pk=endpoint.pk).exists():
        raise Http404("No such endpoint")
    load = insight.load(endpoint, conversation.headers if isinstance(conversation.headers, dict) else None)
    return render(request, "chat/insight.html#load", {"endpoint": endpoint, "load": load})
