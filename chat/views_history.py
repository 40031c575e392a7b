"""The history list, and sharing a conversation: visibility, rename, fork, export, delete.

Who may do what (the access matrix in tests/chat/test_access_matrix.py writes it all down):
- see, fork, export: the owner, and members of the team it is shared with;
- rename, share, delete: the owner only. Anyone else gets 404, never 403, whether or not it exists.
"""

from __future__ import annotations

from datetime import timedelta

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

import json

from chat import compare, sharing
from chat.forms import ImportCurlForm, NewConversationForm, family_defaults
from chat.history import history_for
from chat.models import Conversation, Endpoint, Message

HEADER = "chat/_conversation_header.html"
STALE_STREAM = timedelta(seconds=30)  # as in chat.consumers: a run not checkpointed for this long is dead


def _visible(request: HttpRequest, public_id) -> Conversation:
    conversation = (
        Conversation.objects.visible_to(request.user).select_related("endpoint", "owner", "team")
        .filter(public_id=public_id).first()
    )
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def _owned(request: HttpRequest, public_id) -> Conversation:
    """Only the owner's: a teammate who may read it gets the same 404 as a stranger."""
    conversation = (
        Conversation.objects.filter(owner=request.user).select_related("endpoint", "owner", "team")
        .filter(public_id=public_id).first()
    )
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


# --- the history list ------------------------------------------------------------------------


def _index_context(request: HttpRequest, form: NewConversationForm | None = None) -> dict:
    return {
        "history": history_for(request),
        "endpoints": Endpoint.objects.usable_by(request.user),
        "form": form or NewConversationForm(user=request.user),
        "import_form": ImportCurlForm(user=request.user),
    }


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Mine, everything I can see, or one team's shared conversations; searched, filtered, paginated."""
    template = "chat/index.html"
    if request.htmx and request.htmx.target == "history-results":
        template += "#history-results"
    return render(request, template, _index_context(request))


@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    form = NewConversationForm(request.POST, user=request.user)
    if not form.is_valid():
        return render(request, "chat/index.html", _index_context(request, form), status=400)
    endpoint = form.cleaned_data["endpoint"]
    conversation = Conversation.objects.create(owner=request.user, endpoint=endpoint, options=family_defaults(endpoint))
    return redirect("chat:conversation", public_id=conversation.public_id)


# --- owner-only changes ------------------------------------------------------------------------


def _header_or_page(request: HttpRequest, conversation: Conversation, **context) -> HttpResponse:
    # For htmx the changed header comes straight back (no POST/redirect/GET: it is a fragment swap).
    if request.htmx:
        return render(request, HEADER, {"conversation": conversation, **context})
    return redirect("chat:conversation", public_id=conversation.public_id)


@require_POST
def conversation_title(request: HttpRequest, public_id) -> HttpResponse:
    conversation = _owned(request, public_id)
    form = sharing.RenameForm(request.POST)
    if form.is_valid():
        conversation.title = form.cleaned_data["title"].strip()
        conversation.save(update_fields=["title", "updated_at"])
    return _header_or_page(request, conversation, rename_errors=form.errors.get("title"))


@require_POST
def conversation_visibility(request: HttpRequest, public_id) -> HttpResponse:
    conversation = _owned(request, public_id)
    form = sharing.VisibilityForm(request.POST, teams=request.user.groups.all())
    if form.is_valid():
        form.save(conversation)
        sharing.recheck_viewers(conversation)  # those who just lost access stop seeing it live
    return _header_or_page(request, conversation, visibility_errors=form.errors.get("share"))


def _streaming(conversation: Conversation) -> bool:
    recent = timezone.now() - STALE_STREAM
    return conversation.messages.filter(status=Message.Status.STREAMING, updated_at__gte=recent).exists()


@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, public_id) -> HttpResponse:
    """A confirmation page; deleting takes the messages and completions with it."""
    conversation = _owned(request, public_id)
    error = ""
    if request.method == "POST":
        if _streaming(conversation):
            error = "A completion is running in this conversation: stop it first."
        else:
            conversation.delete()  # the instance keeps its public_id: the group can still be told
            sharing.recheck_viewers(conversation)  # open pages are emptied and their sockets closed
            return redirect("chat:index")
    return render(request, "chat/conversation_delete.html", {"conversation": conversation, "error": error},
                  status=409 if error else 200)


# --- what every viewer may do ------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def conversation_fork(request: HttpRequest, public_id) -> HttpResponse:
    """A conversation of one's own from someone's (or one's own), from the end or from any shown message."""
    source = _visible(request, public_id)
    messages = sharing.forkable_messages(source)
    if request.method == "POST":
        form = sharing.ForkForm(request.POST, user=request.user, messages=messages)
        if form.is_valid():
            if source.kind == Conversation.Kind.COMPARE:  # panes and their answers (chat.compare)
                copy = compare.fork(source, user=request.user, endpoint=form.cleaned_data["endpoint"])
            else:
                copy = sharing.fork(
                    source, user=request.user, endpoint=form.cleaned_data["endpoint"], messages=messages,
                    upto=form.upto_message(),
                )
            return redirect("chat:conversation", public_id=copy.public_id)
    else:
        usable = Endpoint.objects.usable_by(request.user)
        endpoint = source.endpoint if source.endpoint and usable.filter(pk=source.endpoint.pk).exists() else usable.first()
        form = sharing.ForkForm(
            initial={"endpoint": endpoint.name if endpoint else None, "upto": request.GET.get("upto", "")},
            user=request.user, messages=messages,
        )
    endpoint_allowed = bool(source.endpoint and Endpoint.objects.usable_by(request.user).filter(pk=source.endpoint.pk).exists())
    context = {"conversation": source, "form": form, "endpoint_allowed": endpoint_allowed}
    return render(request, "chat/conversation_fork.html", context, status=400 if form.errors else 200)


def _download(text: str, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(text, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
def conversation_export_json(request: HttpRequest, public_id) -> HttpResponse:
    """The request body to send: model, the messages array, every option value (never a key)."""
    conversation = _visible(request, public_id)
    if conversation.kind == Conversation.Kind.COMPARE:  # every pane, with the exact request of each answer
        text = json.dumps(compare.export_data(conversation), indent=2, ensure_ascii=False) + "\n"
        return _download(text, "application/json", sharing.filename(conversation, "json"))
    return _download(sharing.export_json(conversation), "application/json", sharing.filename(conversation, "json"))


@require_GET
def conversation_export_markdown(request: HttpRequest, public_id) -> HttpResponse:
    conversation = _visible(request, public_id)
    markdown = compare.export_markdown if conversation.kind == Conversation.Kind.COMPARE else sharing.export_markdown
    return _download(markdown(conversation), "text/markdown; charset=utf-8", sharing.filename(conversation, "md"))
