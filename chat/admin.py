"""The Django admin is the endpoint console: endpoints, API keys, connection tests, model discovery."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group
from django.db.models import Count
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters

from chat import endpoint_headers, insight, probe
from chat.crypto import DecryptionError
from chat.models import ApiKey, Completion, Conversation, Endpoint, Message
from chat.upstream.client import UpstreamClient
from chat.upstream.urls import normalize_base_url
from chat.upstream.errors import UpstreamError
from chat.upstream.headers import HeaderError, parse_lines, to_lines

# --- API keys -----------------------------------------------------------------


class ApiKeyForm(forms.ModelForm):
    secret = forms.CharField(
        label="Key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is stored encrypted and never shown again. Leave blank to keep the current key.",
    )
    clear_secret = forms.BooleanField(label="Clear the key", required=False, help_text="Send no Authorization header")

    class Meta:
        model = ApiKey
        fields = ["name"]

    def clean(self):
        data = super().clean()
        if data.get("secret") and data.get("clear_secret"):
            raise ValidationError("Either enter a new key or clear it, not both.")
        if not self.instance.pk and not data.get("secret") and not data.get("clear_secret"):
            self.add_error("secret", "Enter the key (or tick 'Clear the key' for a server without one).")
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "hint", "endpoint_count", "created_by", "updated_at"]
    readonly_fields = ["hint", "created_by", "created_at", "updated_at"]
    search_fields = ["name"]

    @admin.display(description="Key")
    def hint(self, obj: ApiKey) -> str:
        return obj.hint

    @admin.display(description="Endpoints")
    def endpoint_count(self, obj: ApiKey) -> int:
        return obj.endpoints.count()

    @method_decorator(sensitive_post_parameters("secret"))
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    def save_model(self, request, obj: ApiKey, form, change) -> None:
        if form.cleaned_data.get("clear_secret"):
            obj.set_secret("")
        elif form.cleaned_data.get("secret"):
            obj.set_secret(form.cleaned_data["secret"])
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


# --- Endpoints ------------------------------------------------------------------


def check_endpoint(endpoint: Endpoint) -> tuple[bool, str]:
    """GET /v1/models, then a 1-token completion. Returns (ok, what happened); never the key."""
    try:
        api_key = endpoint.api_key.get_secret() if endpoint.api_key else None
    except DecryptionError as e:
        return False, str(e)
    client = UpstreamClient(
        endpoint.base_url, api_key, verify=endpoint.verify_tls, ca_bundle=endpoint.ca_bundle or None,
        timeout=min(endpoint.timeout, 30.0),
    )

    async def run() -> tuple[bool, str]:
        try:
            step = "GET /v1/models"
            t0 = time.perf_counter()
            models = await client.list_models()
            models_ms = (time.perf_counter() - t0) * 1000
            served = [m.get("id") for m in models]
            if endpoint.model_id not in served:
                return False, f"{step}: model {endpoint.model_id!r} is not served here (served: {', '.join(served) or 'none'})"
            step = "1-token completion"
            t0 = time.perf_counter()
            body = {"model": endpoint.model_id, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
            await client.create_chat(body)
            chat_ms = (time.perf_counter() - t0) * 1000
            return True, f"OK: /v1/models {models_ms:.0f} ms, 1-token completion {chat_ms:.0f} ms"
        except UpstreamError as e:
            status = f" HTTP {e.status}" if e.status else ""
            return False, f"{step} failed:{status} {e.message}"
        finally:
            await client.aclose()

    return async_to_sync(run)()


def discover_models(base_url: str, api_key: ApiKey | None, verify_tls: bool = True) -> list[str]:
    """The model ids a server lists at /v1/models (raises UpstreamError, DecryptionError)."""
    client = UpstreamClient(base_url, api_key.get_secret() if api_key else None, verify=verify_tls, timeout=30.0)

    async def run() -> list[str]:
        try:
            return [m["id"] for m in await client.list_models() if m.get("id")]
        finally:
            await client.aclose()

    return async_to_sync(run)()


def create_discovered_endpoints(base_url: str, api_key: ApiKey | None, verify_tls: bool, model_ids: list[str]):
    """One endpoint per served model; existing (base URL, model) pairs are left as they are."""
    created, existing = [], []
    for model_id in model_ids:
        if Endpoint.objects.filter(base_url=base_url, model_id=model_id).exists():
            existing.append(model_id)
            continue
        name = model_id if not Endpoint.objects.filter(name=model_id).exists() else f"{model_id} @ {base_url}"
        Endpoint.objects.create(
            name=name[:200], base_url=base_url, model_id=model_id, api_key=api_key, verify_tls=verify_tls,
            **Endpoint.family_fields(model_id),
        )
        created.append(model_id)
    return created, existing


class DiscoverForm(forms.Form):
    base_url = forms.CharField(label="Base URL", help_text="With or without /v1, e.g. https://10.0.0.5:8000")
    api_key = forms.ModelChoiceField(ApiKey.objects.all(), required=False, empty_label="(no key)")
    verify_tls = forms.BooleanField(label="Verify TLS", required=False, initial=True)

    def clean_base_url(self) -> str:
        try:
            return normalize_base_url(self.cleaned_data["base_url"])
        except ValueError as e:
            raise ValidationError(str(e)) from None


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value back (a form shown again after an error too): secrets are write-only."""

    def format_value(self, value):
        return None


class EndpointForm(forms.ModelForm):
    # Custom headers (issue 17): plain ones shown and edited as text; secret ones write-only.
    plain_headers = forms.CharField(
        label="Headers", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "placeholder": "X-Route: pool-a"}),
        help_text="Sent with every request to this endpoint (chat, probe, /tokenize, /metrics): one 'Name: value' per line. "
                  "Authorization (the API key's) and hop-by-hop headers are refused.",
    )
    secret_headers = forms.CharField(
        label="Secret headers", required=False, strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off", "placeholder": "X-Gateway-Token: …"}),
        help_text="Write-only, like an API key: stored encrypted, never shown again, masked in View code and the Inspector. "
                  "One 'Name: value' per line; a name already stored is replaced.",
    )
    keep_secret_headers = forms.MultipleChoiceField(
        label="Stored secret headers", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Untick one to remove it.",
    )

    class Meta:
        model = Endpoint
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rows = endpoint_headers.stored_rows(self.instance) if self.instance.pk else []
        self.fields["plain_headers"].initial = to_lines({r.name: r.value for r in rows if not r.secret})
        secrets = [r.name for r in rows if r.secret]
        self.fields["keep_secret_headers"].choices = [(n, f"{n}: {endpoint_headers.MASK}") for n in secrets]
        self.fields["keep_secret_headers"].initial = secrets

    def clean_base_url(self) -> str:
        try:
            return normalize_base_url(self.cleaned_data["base_url"])
        except ValueError as e:
            raise ValidationError(str(e)) from None

    def clean(self):
        data = super().clean()
        parsed = {}
        for name in ("plain_headers", "secret_headers"):
            try:
                parsed[name] = parse_lines(data.get(name) or "")
            except HeaderError as e:
                self.add_error(name, str(e))
        if self.errors:
            return data
        plain, new_secrets = parsed["plain_headers"], parsed["secret_headers"]
        replaced = {n.lower() for n in new_secrets}
        rows = [endpoint_headers.Row(n, v, False) for n, v in plain.items()]
        rows += [endpoint_headers.Row(n, "", True) for n in data.get("keep_secret_headers") or [] if n.lower() not in replaced]
        rows += [endpoint_headers.Row(n, v, True) for n, v in new_secrets.items()]
        try:
            endpoint_headers.set_rows(self.instance, rows)
        except HeaderError as e:
            raise ValidationError(str(e)) from None
        return data


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["name", "family", "model_id", "base_url", "capability_list", "is_active", "last_check"]
    list_filter = ["family", "is_active", "is_simulator"]
    search_fields = ["name", "model_id", "base_url"]
    filter_horizontal = ["teams"]
    readonly_fields = ["is_simulator", "last_check_at", "last_check_ok", "last_check_message", "probe_grid", "server_load"]
    actions = ["test_connection", "probe_capabilities", "discover_from_selected"]
    change_list_template = "admin/chat/endpoint/change_list.html"
    change_form_template = "admin/chat/endpoint/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "base_url", "model_id", "family", "api_key", "is_active", "is_simulator"]}),
        ("TLS and timeouts", {"fields": ["verify_tls", "ca_bundle", "timeout"]}),
        ("Request headers", {"fields": ["plain_headers", "secret_headers", "keep_secret_headers"]}),
        ("Server capabilities", {
            "fields": ["reasoning_parser", "auto_tool_choice", "image_input", "probe_grid"],
            "description": "Set by the capability probe from what the server did; you can still change them "
                          "(your values stand until the next probe).",
        }),
        ("Server load", {"fields": ["server_load"]}),
        ("Defaults and access", {"fields": ["default_options", "teams"]}),
        ("Last connection test", {"fields": ["last_check_at", "last_check_ok", "last_check_message"]}),
    ]

    @admin.display(description="Capabilities")
    def capability_list(self, obj: Endpoint) -> str:
        flags = ", ".join(obj.capabilities) or "—"
        summary = probe.summary(obj)
        return format_html("{}<br><small>{}</small>", flags, summary) if summary else flags

    @admin.display(description="Capability probe")
    def probe_grid(self, obj: Endpoint) -> str:
        when = timezone.localtime(obj.probed_at).strftime("%Y-%m-%d %H:%M:%S") if obj.probed_at else ""
        grid = render_to_string("chat/insight.html#probe-grid", {"cells": probe.cells(obj)})
        return format_html("<p>{}</p>{}", f"Probed {when}" if when else "", mark_safe(grid))  # noqa: S308 (escaped by the template)

    @admin.display(description="From /metrics")
    def server_load(self, obj: Endpoint) -> str:
        if not obj.pk:
            return "—"
        return mark_safe(render_to_string("chat/insight.html#load-figures", {"load": insight.load(obj)}))  # noqa: S308

    @admin.display(description="Last check")
    def last_check(self, obj: Endpoint) -> str:
        if obj.last_check_at is None:
            return "never"
        mark = "✔" if obj.last_check_ok else "✘"
        return format_html("{} {} <small>{}</small>", mark, obj.last_check_message, timezone.localtime(obj.last_check_at).strftime("%Y-%m-%d %H:%M"))

    def get_urls(self):
        urls = super().get_urls()
        extra = [
            path("discover/", self.admin_site.admin_view(self.discover_view), name="chat_endpoint_discover"),
            path("probe/", self.admin_site.admin_view(self.probe_view), name="chat_endpoint_probe"),
            path("<int:pk>/probe/", self.admin_site.admin_view(self.probe_one_view), name="chat_endpoint_probe_one"),
        ]
        return extra + urls

    def save_model(self, request, obj: Endpoint, form, change) -> None:
        # EndpointForm.clean stored the headers on the instance (secrets encrypted).
        super().save_model(request, obj, form, change)

    @method_decorator(sensitive_post_parameters("secret_headers"))
    def changeform_view(self, request, *args, **kwargs):
        return super().changeform_view(request, *args, **kwargs)

    @admin.action(description="Probe capabilities (a matrix of small real requests)")
    def probe_capabilities(self, request, queryset) -> None:
        for endpoint in queryset:
            self._probe(request, endpoint)

    def _probe(self, request, endpoint: Endpoint) -> None:
        result = probe.run(endpoint)
        failed = [c["label"] for c in result["cells"] if c["status"] == "fail"]
        level = messages.WARNING if failed else messages.SUCCESS
        self.message_user(request, f"{endpoint.name}: {probe.summary(endpoint)}" + (f" (failed: {', '.join(failed)})" if failed else ""), level)

    def probe_one_view(self, request, pk: int):
        """The endpoint page's Probe button (POST); back to the page, which shows the grid."""
        endpoint = Endpoint.objects.filter(pk=pk).first()
        if endpoint is None or not self.has_change_permission(request, endpoint):
            return redirect("admin:chat_endpoint_changelist")
        if request.method == "POST":
            self._probe(request, endpoint)
        return redirect("admin:chat_endpoint_change", endpoint.pk)

    def probe_view(self, request):
        """Offered after Discover models: confirm, then probe the endpoints it created."""
        if not self.has_change_permission(request):
            return redirect("admin:chat_endpoint_changelist")
        ids = [int(i) for i in (request.POST.get("ids") or request.GET.get("ids") or "").split(",") if i.strip().isdigit()]
        endpoints = list(Endpoint.objects.filter(pk__in=ids))
        if request.method == "POST" and endpoints:
            for endpoint in endpoints:
                self._probe(request, endpoint)
            return redirect("admin:chat_endpoint_changelist")
        context = {**self.admin_site.each_context(request), "endpoints": endpoints, "ids": ",".join(str(e.pk) for e in endpoints),
                   "title": "Probe capabilities", "opts": self.model._meta}
        return render(request, "admin/chat/endpoint/probe.html", context)

    @admin.action(description="Test connection (list models, then a 1-token completion)")
    def test_connection(self, request, queryset) -> None:
        for endpoint in queryset:
            ok, message = check_endpoint(endpoint)
            endpoint.last_check_at, endpoint.last_check_ok, endpoint.last_check_message = timezone.now(), ok, message
            endpoint.save(update_fields=["last_check_at", "last_check_ok", "last_check_message"])
            self.message_user(request, f"{endpoint.name}: {message}", messages.SUCCESS if ok else messages.ERROR)

    @admin.action(description="Discover models served at the selected endpoints' base URLs")
    def discover_from_selected(self, request, queryset) -> None:
        seen = set()
        for endpoint in queryset:
            if (endpoint.base_url, endpoint.api_key_id) in seen:
                continue
            seen.add((endpoint.base_url, endpoint.api_key_id))
            self._discover(request, endpoint.base_url, endpoint.api_key, endpoint.verify_tls)

    def discover_view(self, request):
        if not self.has_add_permission(request):
            return redirect("admin:chat_endpoint_changelist")
        form = DiscoverForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if self._discover(request, data["base_url"], data["api_key"], data["verify_tls"]):
                return redirect("admin:chat_endpoint_changelist")
        context = {**self.admin_site.each_context(request), "form": form, "title": "Discover models", "opts": self.model._meta}
        return render(request, "admin/chat/endpoint/discover.html", context)

    def _discover(self, request, base_url: str, api_key: ApiKey | None, verify_tls: bool) -> bool:
        try:
            model_ids = discover_models(base_url, api_key, verify_tls)
        except (UpstreamError, DecryptionError) as e:
            status = f" HTTP {e.status}" if getattr(e, "status", None) else ""
            self.message_user(request, f"{base_url}: GET /v1/models failed:{status} {getattr(e, 'message', e)}", messages.ERROR)
            return False
        created, existing = create_discovered_endpoints(base_url, api_key, verify_tls, model_ids)
        self.message_user(
            request,
            f"{base_url}: {len(model_ids)} model(s) served; created {', '.join(created) or 'none'}"
            + (f"; already present: {', '.join(existing)}" if existing else ""),
            messages.SUCCESS,
        )
        # Offer the capability probe of what was found (issue 17).
        found = Endpoint.objects.filter(base_url=base_url, model_id__in=created + existing).values_list("pk", flat=True)
        if found:
            url = reverse("admin:chat_endpoint_probe") + "?ids=" + ",".join(str(pk) for pk in found)
            self.message_user(request, format_html('Next: <a href="{}">probe their capabilities</a> (what the server really supports).', url),
                              messages.INFO)
        return True

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "discover_url": reverse("admin:chat_endpoint_discover")}
        return super().changelist_view(request, extra_context)


# --- Conversations (read-mostly, for staff) ---------------------------------------------


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["position", "role", "status", "finish_reason", "choice_index"]
    readonly_fields = fields
    can_delete = False
    show_change_link = False


# --- Teams: Django groups, with their members and the endpoints they may use --------------------


class TeamForm(forms.ModelForm):
    """A group edited from its side: members (User.groups) and endpoints (Endpoint.teams) are reverse relations."""

    members = forms.ModelMultipleChoiceField(
        get_user_model().objects.order_by("username"), required=False, widget=FilteredSelectMultiple("members", False)
    )
    endpoints = forms.ModelMultipleChoiceField(
        Endpoint.objects.all(), required=False, widget=FilteredSelectMultiple("endpoints", False),
        help_text="Endpoints this team may use. An endpoint with no team at all is open to everyone.",
    )

    class Meta:
        model = Group
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["members"].initial = self.instance.user_set.all()
            self.fields["endpoints"].initial = self.instance.endpoint_set.all()

    def _save_m2m(self) -> None:
        super()._save_m2m()
        self.instance.user_set.set(self.cleaned_data["members"])
        self.instance.endpoint_set.set(self.cleaned_data["endpoints"])


admin.site.unregister(Group)


@admin.register(Group)
class TeamAdmin(GroupAdmin):
    form = TeamForm
    fields = ["name", "members", "endpoints", "permissions"]
    list_display = ["name", "member_count", "endpoint_count"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            members_n=Count("user", distinct=True), endpoints_n=Count("endpoint", distinct=True)
        )

    @admin.display(description="Members", ordering="members_n")
    def member_count(self, obj: Group) -> int:
        return obj.members_n

    @admin.display(description="Endpoints", ordering="endpoints_n")
    def endpoint_count(self, obj: Group) -> int:
        return obj.endpoints_n


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "visibility", "team", "endpoint", "updated_at"]
    list_filter = ["visibility", "team"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["public_id", "forked_from", "created_at", "updated_at"]
    inlines = [MessageInline]


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["public_id", "conversation", "endpoint", "status", "ttft_ms", "duration_ms", "started_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Completion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
