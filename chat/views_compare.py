"""Comparisons' pages: a new comparison, the board, panes and sweeps, shared settings, diffs, Replay on…
and Continue with this answer. Every view checks who may see what; outsiders get 404."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django import forms
from django.contrib import messages as django_messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import compare, liveness
from chat.compare_fragments import Board
from chat.forms import EndpointChoiceField, default_endpoint
from chat.panel import JSONField
from chat.upstream.options import OptionError, validate_value
from chat.models import Completion, Conversation, Endpoint, Message
from chat.views import visible_completion, visible_conversation

PAGE = "chat/compare.html"
log = logging.getLogger(__name__)


# --- forms ----------------------------------------------------------------------------------------


class OverridesField(forms.CharField):
    """"temperature=1.0, enable_thinking=off": checked as a send would check them."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 20_000)
        kwargs.setdefault("widget", forms.TextInput(attrs={"placeholder": "e.g. temperature=1.0, enable_thinking=off", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def clean(self, value):
        text = super().clean(value)
        try:
            return compare.parse_overrides(text)
        except compare.CompareError as e:
            raise forms.ValidationError(str(e)) from None


class PaneForm(forms.Form):
    endpoint = EndpointChoiceField(Endpoint.objects.none(), empty_label=None)
    overrides = OverridesField(label="Overrides")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)

    def panes(self) -> list[tuple[Endpoint, dict]]:
        return [(self.cleaned_data["endpoint"], self.cleaned_data["overrides"])]


class SweepForm(forms.Form):
    endpoint = EndpointChoiceField(Endpoint.objects.none(), empty_label=None)
    parameter = forms.ChoiceField(choices=[(n, n) for n in compare.SWEEPABLE], initial="temperature")
    values = forms.CharField(max_length=2000, widget=forms.TextInput(attrs={"placeholder": "0, 0.7, 1.2 or 1..4", "spellcheck": "false"}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)

    def clean(self):
        data = super().clean()
        if "parameter" in data and "values" in data:
            try:
                data["swept"] = compare.sweep_values(data["parameter"], data["values"])
            except compare.CompareError as e:
                self.add_error("values", str(e))
        return data

    def panes(self) -> list[tuple[Endpoint, dict]]:
        name = self.cleaned_data["parameter"]
        return [(self.cleaned_data["endpoint"], {name: value}) for value in self.cleaned_data["swept"]]


class SharedSettingsForm(forms.Form):
    system_prompt = forms.CharField(required=False, max_length=200_000, widget=forms.Textarea(attrs={"rows": 3}), label="System prompt")
    options = OverridesField(label="Settings for every pane", widget=forms.Textarea(attrs={
        "rows": 2, "spellcheck": "false", "placeholder": "e.g. max_tokens=256, logprobs=true, top_logprobs=5"}))
    # Tools and a response format are JSON, as in a conversation's panel, and checked as a send checks them.
    tools = JSONField(label="Tools", rows=5, help_text="A JSON list of {type: function, function: {name, description, parameters}}; blank: none.")
    response_format = JSONField(label="Response format", rows=3, help_text='e.g. {"type": "json_object"}; blank: none.')

    def _checked(self, name: str):
        value = self.cleaned_data.get(name)
        if value is None:
            return None
        try:
            return validate_value(name, value)
        except OptionError as e:
            raise forms.ValidationError(e.message) from None

    def clean_tools(self):
        return self._checked("tools") or []

    def clean_response_format(self):
        return self._checked("response_format")


def shared_form(conversation: Conversation) -> SharedSettingsForm:
    return SharedSettingsForm(initial={"system_prompt": conversation.system_prompt, "options": compare.overrides_text(conversation.options),
                                       "tools": conversation.tools or None, "response_format": conversation.response_format})


ROWS = compare.MAX_PANES


class NewComparisonForm(forms.Form):
    """Up to six panes (an endpoint and overrides each; blank rows are left out), or a sweep."""

    title = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        usable = Endpoint.objects.usable_by(user)
        for i in range(ROWS):
            self.fields[f"endpoint_{i}"] = EndpointChoiceField(usable, required=False, empty_label="(no pane)", label=f"Pane {i + 1}")
            self.fields[f"overrides_{i}"] = OverridesField(label=f"Pane {i + 1} overrides")
        first = default_endpoint(user)
        if not self.is_bound and first is not None:
            self.initial.update(endpoint_0=first.pk, endpoint_1=first.pk)
        self.rows = [(self[f"endpoint_{i}"], self[f"overrides_{i}"]) for i in range(ROWS)]

    def clean(self):
        data = super().clean()
        panes = []
        for i in range(ROWS):
            endpoint, overrides = data.get(f"endpoint_{i}"), data.get(f"overrides_{i}") or {}
            if endpoint is not None:
                panes.append((endpoint, overrides))
            elif overrides:
                self.add_error(f"endpoint_{i}", "Pick an endpoint for these overrides (or clear them).")
        data["panes"] = panes
        return data


# --- access ---------------------------------------------------------------------------------------


def visible_comparison(request: HttpRequest, public_id) -> Conversation:
    conversation = visible_conversation(request, public_id)
    if conversation.kind != Conversation.Kind.COMPARE:
        raise Http404("No such comparison")
    return conversation


def owned_comparison(request: HttpRequest, public_id) -> Conversation:
    conversation = visible_comparison(request, public_id)
    if not conversation.can_edit(request.user):
        raise Http404("No such comparison")
    return conversation


# --- pages ----------------------------------------------------------------------------------------


def page_context(request: HttpRequest, conversation: Conversation, **forms_) -> dict:
    user = request.user
    board = Board(conversation, user)
    last = board.panes[-1].endpoint if board.panes and board.panes[-1].endpoint else default_endpoint(user)
    initial = {"endpoint": last.pk} if last else {}
    shared = shared_form(conversation)
    source = conversation.forked_from
    source_editable = bool(source and source.kind == Conversation.Kind.CHAT and source.can_edit(user))
    return {
        **board.context(), "list_version": board.version, "streaming": board.streaming,
        "pane_form": forms_.get("pane_form") or PaneForm(initial=initial, user=user, prefix="pane"),
        "sweep_form": forms_.get("sweep_form") or SweepForm(initial=initial, user=user, prefix="sweep"),
        "shared_form": forms_.get("shared_form") or shared,
        "shared_chips": compare.shared_chips(conversation),
        "source": source if source_editable else None, "max_panes": compare.MAX_PANES,
        "tools_error": forms_.get("tools_error", ""),
        # A replay saved by Replay on…: this page starts it over its socket (compare.js).
        "replay_pending": board.can_edit and conversation.completions.filter(
            status=Completion.Status.PENDING, messages__isnull=True).exists(),
    }


def page(request: HttpRequest, conversation: Conversation, status: int = 200, **forms_) -> HttpResponse:
    # An answer left "streaming" by a server that stopped is finalized before it is shown.
    liveness.finalize_orphans(conversation.messages.all())
    return render(request, PAGE, page_context(request, conversation, **forms_), status=status)


@require_http_methods(["GET", "POST"])
def comparison_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = NewComparisonForm(request.POST, user=request.user)
        sweep = SweepForm(request.POST, user=request.user, prefix="sweep") if request.POST.get("sweep-values", "").strip() else None
        if form.is_valid() and (sweep is None or sweep.is_valid()):
            panes = form.cleaned_data["panes"] + (sweep.panes() if sweep else [])
            try:
                conversation = compare.new_comparison(request.user, panes, title=form.cleaned_data["title"])
            except compare.CompareError as e:
                form.add_error(None, str(e))
            else:
                return redirect("chat:conversation", public_id=conversation.public_id)
        if sweep is None:  # not used: kept as picked, without errors
            sweep = SweepForm(prefix="sweep", user=request.user, initial={
                "endpoint": request.POST.get("sweep-endpoint"), "parameter": request.POST.get("sweep-parameter")})
        return render(request, "chat/compare_new.html", {"form": form, "sweep_form": sweep, "sweep_open": sweep.is_bound}, status=400)
    first = default_endpoint(request.user)
    sweep = SweepForm(prefix="sweep", user=request.user, initial={"endpoint": first.pk} if first else {})
    return render(request, "chat/compare_new.html", {"form": NewComparisonForm(user=request.user), "sweep_form": sweep})


def announce(conversation: Conversation) -> None:
    """After a pane change: every open page of the comparison (teammates', the owner's other tabs) is
    redrawn by its own socket, for its own viewer (chat.consumers: conversation_changed), as
    views.broadcast_thread does for a conversation's branching."""
    from chat.consumers import group_name

    try:
        async_to_sync(get_channel_layer().group_send)(group_name(conversation.public_id), {"type": "conversation.changed"})
    except Exception:  # a channel layer that is down must not fail the change; pages re-sync on reconnect
        log.warning("could not tell the viewers of %s about its new panes", conversation.public_id, exc_info=True)


def go_to(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """To a conversation's page: a redirect, or for htmx (forms also rendered by the socket) the page loads it."""
    url = reverse("chat:conversation", args=[conversation.public_id])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _refuse_while_streaming(request, conversation) -> HttpResponse | None:
    if compare.streaming(conversation):
        why = "The panes are answering: stop them before changing the panes."
        if request.htmx:  # (Remove is an htmx post: the page reloads with the message)
            django_messages.error(request, why)
            return go_to(request, conversation)
        return page(request, conversation, 409, tools_error=why)
    return None


def _add_panes(request, conversation, form: PaneForm | SweepForm, form_name: str) -> HttpResponse:
    """Add and sweep alike: the form's panes join the comparison, or the page comes back with the form
    and its errors in its own slot (form_name: "pane_form" or "sweep_form")."""
    if not form.is_valid():
        return page(request, conversation, 400, **{form_name: form})
    if refused := _refuse_while_streaming(request, conversation):
        return refused
    try:
        compare.add_panes(conversation, form.panes())
    except compare.CompareError as e:
        form.add_error(None, str(e))
        return page(request, conversation, 400, **{form_name: form})
    announce(conversation)
    return redirect("chat:conversation", public_id=conversation.public_id)


@require_POST
def pane_add(request: HttpRequest, public_id) -> HttpResponse:
    conversation = owned_comparison(request, public_id)
    return _add_panes(request, conversation, PaneForm(request.POST, user=request.user, prefix="pane"), "pane_form")


@require_POST
def pane_sweep(request: HttpRequest, public_id) -> HttpResponse:
    conversation = owned_comparison(request, public_id)
    return _add_panes(request, conversation, SweepForm(request.POST, user=request.user, prefix="sweep"), "sweep_form")


@require_POST
def pane_remove(request: HttpRequest, public_id, pane_id) -> HttpResponse:
    conversation = owned_comparison(request, public_id)
    pane = conversation.panes.filter(public_id=pane_id).first()
    if pane is None:
        raise Http404("No such pane")
    if refused := _refuse_while_streaming(request, conversation):
        return refused
    pane.delete()  # its answers with it; the shared messages stay
    announce(conversation)
    return go_to(request, conversation)


@require_POST
def shared_settings(request: HttpRequest, public_id) -> HttpResponse:
    conversation = owned_comparison(request, public_id)
    form = SharedSettingsForm(request.POST)
    if not form.is_valid():
        return page(request, conversation, 400, shared_form=form)
    for name in ("system_prompt", "options", "tools", "response_format"):
        setattr(conversation, name, form.cleaned_data[name])
    conversation.save(update_fields=["system_prompt", "options", "tools", "response_format", "updated_at"])
    announce(conversation)
    return redirect("chat:conversation", public_id=conversation.public_id)


@require_GET
def diff(request: HttpRequest, public_id) -> HttpResponse:
    """Two panes' answers to one turn: a word-level diff and the first token where they part."""
    conversation = visible_comparison(request, public_id)
    board = Board(conversation, request.user)
    panes = {str(p.public_id): p for p in board.panes}
    a, b = panes.get(request.GET.get("a", "")), panes.get(request.GET.get("b", ""))
    context = {"conversation": conversation}
    if a is None or b is None or a == b:
        context["error"] = "Pick two different panes."
        return render(request, f"{PAGE}#diff", context)
    turns = [t for t in board.turns if t.answers.get(a.pk) and t.answers.get(b.pk)]
    turn = next((t for t in turns if t.key == request.GET.get("turn")), turns[-1] if turns else None)
    if turn is None:
        context["error"] = f"Pane {a.number} and pane {b.number} have not both answered a message yet."
        return render(request, f"{PAGE}#diff", context)
    ma, mb = turn.answers[a.pk][0], turn.answers[b.pk][0]
    if Message.Status.STREAMING in (ma.status, mb.status):
        context["error"] = "Wait until both answers are finished."
        return render(request, f"{PAGE}#diff", context)
    context.update(
        a=a, b=b, turn=turn, ops=compare.text_diff(ma.text, mb.text), same=ma.text == mb.text,
        ratio=compare.diff_ratio(ma.text, mb.text), divergence=compare.first_divergence(ma.logprobs, mb.logprobs),
    )
    return render(request, f"{PAGE}#diff", context)


# --- Replay on… and Continue with this answer ---------------------------------------------------


class ReplayForm(forms.Form):
    endpoint = EndpointChoiceField(Endpoint.objects.none(), empty_label=None, label="Replay on")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = Endpoint.objects.usable_by(user)


@require_http_methods(["GET", "POST"])
def replay(request: HttpRequest, public_id) -> HttpResponse:
    """Send a stored request body again, only `model` changed, to another endpoint the user may use;
    the comparison opens with the source answer beside the replay (started by the socket's page)."""
    source = visible_completion(request, public_id)
    form = ReplayForm(request.POST or None, user=request.user,
                      initial={"endpoint": Endpoint.objects.usable_by(request.user).exclude(pk=source.endpoint_id).values_list("pk", flat=True).first()})
    if request.method == "POST" and form.is_valid():
        conversation = compare.replay(source, form.cleaned_data["endpoint"], request.user)
        return redirect("chat:conversation", public_id=conversation.public_id)
    status = 400 if form.errors else 200
    return render(request, "chat/compare_replay.html", {"completion": source, "form": form}, status=status)


@require_POST
def continue_answer(request: HttpRequest, public_id, message_id) -> HttpResponse:
    """A pane's answer becomes the next assistant message of a new conversation or of the source one."""
    conversation = visible_comparison(request, public_id)
    answer = conversation.messages.filter(public_id=message_id, pane__isnull=False, removed=False).select_related("pane__endpoint", "completion").first()
    if answer is None:
        raise Http404("No such answer")
    answer.conversation = conversation
    if answer.status == Message.Status.STREAMING:
        django_messages.error(request, "That answer is still streaming.")
        return go_to(request, conversation)
    if request.POST.get("target") == "source":
        source = conversation.forked_from
        if source is None or source.kind != Conversation.Kind.CHAT or not source.can_edit(request.user):
            raise Http404("No such conversation")
        try:
            compare.continue_in_source(answer, source)
        except compare.CompareError as e:
            django_messages.error(request, str(e))
            return go_to(request, conversation)
        return go_to(request, source)
    if answer.pane.endpoint is None or not Endpoint.objects.usable_by(request.user).filter(pk=answer.pane.endpoint_id).exists():
        django_messages.error(request, "You may not use that pane's endpoint: fork the comparison onto one you may use first.")
        return go_to(request, conversation)
    target = compare.continue_in_new(answer, request.user)
    return go_to(request, target)
