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
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from chat.crypto import DecryptionError
from chat.models import ApiKey, Completion, Conversation, Endpoint, Message
from chat.upstream.client import UpstreamClient
from chat.upstream.urls import normalize_base_url
from chat.upstream.errors import UpstreamError

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


class EndpointForm(forms.ModelForm):
    class Meta:
        model = Endpoint
        fields = "__all__"

    def clean_base_url(self) -> str:
        try:
            return normalize_base_url(self.cleaned_data["base_url"])
        except ValueError as e:
            raise ValidationError(str(e)) from None


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["name", "family", "model_id", "base_url", "capability_list", "is_active", "last_check"]
    list_filter = ["family", "is_active", "is_simulator"]
    search_fields = ["name", "model_id", "base_url"]
    filter_horizontal = ["teams"]
    readonly_fields = ["is_simulator", "last_check_at", "last_check_ok", "last_check_message"]
    actions = ["test_connection", "discover_from_selected"]
    change_list_template = "admin/chat/endpoint/change_list.html"
    fieldsets = [
        (None, {"fields": ["name", "base_url", "model_id", "family", "api_key", "is_active", "is_simulator"]}),
        ("TLS and timeouts", {"fields": ["verify_tls", "ca_bundle", "timeout"]}),
        ("Server capabilities", {"fields": ["reasoning_parser", "auto_tool_choice", "image_input"]}),
        ("Defaults and access", {"fields": ["default_options", "teams"]}),
        ("Last connection test", {"fields": ["last_check_at", "last_check_ok", "last_check_message"]}),
    ]

    @admin.display(description="Capabilities")
    def capability_list(self, obj: Endpoint) -> str:
        return ", ".join(obj.capabilities) or "—"

    @admin.display(description="Last check")
    def last_check(self, obj: Endpoint) -> str:
        if obj.last_check_at is None:
            return "never"
        mark = "✔" if obj.last_check_ok else "✘"
        return format_html("{} {} <small>{}</small>", mark, obj.last_check_message, timezone.localtime(obj.last_check_at).strftime("%Y-%m-%d %H:%M"))

    def get_urls(self):
        urls = super().get_urls()
        extra = [path("discover/", self.admin_site.admin_view(self.discover_view), name="chat_endpoint_discover")]
        return extra + urls

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
