"""The playground's data: API keys (encrypted), endpoints, conversations, messages, completions.

Public ids in URLs and socket paths are UUIDs; integer keys stay internal.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from chat import crypto
from chat.upstream.urls import normalize_base_url
from chat.upstream.families import FAMILIES, detect_family
from chat.models_compare import Pane  # noqa: F401  (comparisons' panes, issue 15: Django finds the model here)

FAMILY_CHOICES = [(key, family.label) for key, family in FAMILIES.items()]


class ApiKey(models.Model):
    """A bearer token for an upstream vLLM server, encrypted at rest; never rendered back."""

    name = models.CharField(max_length=100, unique=True)
    secret_token = models.TextField(blank=True, editable=False, help_text="Fernet ciphertext")
    last4 = models.CharField(max_length=4, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<ApiKey {self.pk} {self.name!r} {self.hint}>"

    @property
    def hint(self) -> str:
        return f"••••{self.last4}" if self.secret_token else "(empty)"

    def set_secret(self, plain: str) -> None:
        if plain:
            self.secret_token = crypto.encrypt(plain)
            self.last4 = plain[-4:]
        else:
            self.secret_token, self.last4 = "", ""

    def get_secret(self) -> str | None:
        """The plain key, or None when cleared; raises DecryptionError, never returns ciphertext."""
        return crypto.decrypt(self.secret_token) if self.secret_token else None


class EndpointQuerySet(models.QuerySet):
    def usable_by(self, user) -> EndpointQuerySet:
        """Active endpoints open to everyone (no teams) or to one of the user's teams."""
        return (
            self.filter(is_active=True)
            .filter(Q(teams__isnull=True) | Q(teams__in=user.groups.all()))
            .distinct()
        )


class Endpoint(models.Model):
    """One model served by a vLLM server (admin-managed: users never supply base URLs)."""

    name = models.CharField(max_length=200, unique=True)
    base_url = models.CharField(
        max_length=500, help_text="e.g. https://10.0.0.5:8000 or https://10.0.0.5:8000/v1 (/v1 is added if missing)"
    )
    model_id = models.CharField("model ID", max_length=300)
    family = models.CharField(max_length=20, choices=FAMILY_CHOICES, blank=True, help_text="Blank: detect from the model ID")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="endpoints")
    verify_tls = models.BooleanField("verify TLS", default=True)
    ca_bundle = models.CharField("CA bundle path", max_length=500, blank=True, help_text="PEM file on the server")
    timeout = models.FloatField(default=120.0, help_text="Seconds to wait for data from the server")
    reasoning_parser = models.BooleanField(default=True, help_text="Server runs with --reasoning-parser")
    auto_tool_choice = models.BooleanField(default=True, help_text="Server runs with --enable-auto-tool-choice")
    image_input = models.BooleanField(default=False, help_text="Model accepts image_url content parts")
    default_options = models.JSONField(default=dict, blank=True, help_text="Option values applied to new conversations")
    teams = models.ManyToManyField(Group, blank=True, help_text="Blank: open to everyone")
    is_active = models.BooleanField(default=True)
    is_simulator = models.BooleanField(default=False, editable=False)
    last_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_ok = models.BooleanField(null=True, editable=False)
    last_check_message = models.TextField(blank=True, editable=False)
    # Issue 17: headers sent with every request to this endpoint: [{"name", "value", "secret"}], a
    # secret's value Fernet-encrypted like an API key (chat.endpoint_headers reads and writes them).
    custom_headers = models.JSONField(default=list, blank=True, editable=False)
    # The last capability probe (chat.probe): {"cells": [...], "facts": {...}}, and when it ran.
    probe_result = models.JSONField(null=True, blank=True, editable=False)
    probed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            self.base_url = normalize_base_url(self.base_url)
        except ValueError as e:
            raise ValidationError({"base_url": str(e)}) from None
        if not isinstance(self.default_options, dict):
            raise ValidationError({"default_options": "Must be a JSON object of option values"})

    def save(self, *args, **kwargs) -> None:
        self.base_url = normalize_base_url(self.base_url)
        if not self.family:
            self.family = detect_family(self.model_id)
        super().save(*args, **kwargs)

    @property
    def name_and_model(self) -> str:
        """"name — model ID", as pickers show it (the simulator's names already end with their model)."""
        return self.name if self.name.endswith(self.model_id) else f"{self.name} — {self.model_id}"

    @staticmethod
    def family_fields(model_id: str, family: str = "") -> dict:
        """The fields a new endpoint takes from its model family (`family`, else detected from the
        model ID): `manage.py bootstrap` and the console's Discover models both create endpoints
        with these, so a Gemma endpoint takes images however it was added."""
        key = family or detect_family(model_id)
        return {"family": key, "image_input": FAMILIES[key].image_input}

    @property
    def capabilities(self) -> list[str]:
        flags = [("reasoning", self.reasoning_parser), ("tools", self.auto_tool_choice), ("images", self.image_input)]
        return [name for name, on in flags if on]

    def client(self):
        """The pooled upstream client for this endpoint (the key and secret header values are
        decrypted here, at the seam)."""
        from chat import endpoint_headers
        from chat.upstream.client import get_client

        return get_client(
            self.base_url,
            self.api_key.get_secret() if self.api_key else None,
            verify=self.verify_tls,
            ca_bundle=self.ca_bundle or None,
            timeout=self.timeout,
            headers=endpoint_headers.values(self),
            secret_headers=endpoint_headers.secret_names(self),
        )


class SharedQuerySet(models.QuerySet):
    """Rows with an owner, a team and a visibility (conversations, presets, prompts, test sets)."""

    def visible_to(self, user) -> SharedQuerySet:
        """The owner's rows plus those shared with one of the user's teams."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(Q(owner=user) | Q(visibility="team", team__in=user.groups.all())).distinct()


class ConversationQuerySet(SharedQuerySet):
    pass


class Conversation(models.Model):
    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private"
        TEAM = "team", "Shared with team"

    class Kind(models.TextChoices):
        CHAT = "chat", "Conversation"
        COMPARE = "compare", "Comparison"  # panes over one shared message list (chat.compare)
        BATCH = "batch", "Batch run"  # a batch run's rows (chat.models_batch): listed as the run

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    team = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    title = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CHAT)
    endpoint = models.ForeignKey(Endpoint, null=True, blank=True, on_delete=models.SET_NULL)
    system_prompt = models.TextField(blank=True)
    options = models.JSONField(default=dict, blank=True, help_text="Option values by registry name; unset = absent")
    tools = models.JSONField(default=list, blank=True, help_text="Tool definitions, sent as `tools`")
    canned_results = models.JSONField(default=dict, blank=True, help_text="Tool name -> a ready answer for its calls")
    response_format = models.JSONField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True, help_text="Request headers sent with every request (plain, not secret)")
    forked_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks")
    # The prompt version whose rendered messages were last sent here (chat.models_library).
    prompt_version = models.ForeignKey(
        "chat.PromptVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(visibility="private") | Q(team__isnull=False), name="team_visibility_needs_team"
            )
        ]
        # The history list: "Mine", a team's shared ones, everything visible; newest activity first.
        indexes = [
            # -id breaks ties (bulk-created rows) so pages are stable and still read in index order.
            models.Index(fields=["owner", "-updated_at", "-id"], name="conversation_owner_latest"),
            models.Index(fields=["team", "visibility", "-updated_at", "-id"], name="conversation_team_latest"),
            models.Index(fields=["-updated_at", "-id"], name="conversation_latest"),
        ]

    def __str__(self) -> str:
        # The first user message names it (chat.consumers, the import); until then it is a new one.
        return self.title or "New conversation"

    def can_edit(self, user) -> bool:
        return user.is_authenticated and self.owner_id == user.pk

    def thread(self, *, annotate: bool = False) -> list["Message"]:
        """The shown branch, in order: exactly the messages the next request sends (chat.branches).
        With `annotate`, each message knows its place among its alternatives (`message.branch`)."""
        from chat import branches

        return self.thread_of(branches.load(self), annotate=annotate)

    def thread_of(self, tree, *, annotate: bool = False) -> list["Message"]:
        """The shown branch of an already loaded tree (chat.branches.Tree)."""
        shown = tree.path()
        for message in shown:
            message.conversation = self  # partials build URLs from it without another query
        return tree.annotate(shown) if annotate else shown

    def api_messages(self, messages=None, *, system_prompt: str | None = None) -> list[dict]:
        """The `messages` array to send: the system prompt (the stored one unless given), then the
        shown branch's finished messages.

        Of n > 1 choices at one position, the first still active one is the one continued.
        """
        system_prompt = self.system_prompt if system_prompt is None else system_prompt
        api = [{"role": "system", "content": system_prompt}] if system_prompt else []
        answered: set[tuple[int, int | None]] = set()
        for message in messages if messages is not None else self.thread():
            if message.role == Message.Role.ASSISTANT:
                if message.status in (Message.Status.STREAMING, Message.Status.ERROR) and not message.has_output:
                    continue
                if message.completion_id is not None:
                    if (message.position, message.completion_id) in answered:
                        continue
                    answered.add((message.position, message.completion_id))
            api.append(message.to_api())
        return api

    def option_values(self) -> dict:
        """Every option value to send: the panel's options plus the tools and response format."""
        values = dict(self.options)
        if self.tools:
            values["tools"] = self.tools
        if self.response_format:
            values["response_format"] = self.response_format
        return values


class Completion(models.Model):
    """One upstream request: exactly what was sent (the key is a header, never here) and how it went."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"
        ERROR = "error", "Error"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="completions")
    endpoint = models.ForeignKey(Endpoint, null=True, blank=True, on_delete=models.SET_NULL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    request_body = models.JSONField()
    # The conversation's own headers sent with it (plain); the endpoint's are added by its client.
    request_headers = models.JSONField(default=dict, blank=True)
    # The endpoint's headers as they were when it was sent, secret values masked
    # ({"headers": {name: value}, "secret": [names]}; None: sent before they were recorded).
    endpoint_headers = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, help_text="The final response, or the accumulated stream")
    response_id = models.CharField(max_length=200, blank=True)
    response_model = models.CharField(max_length=300, blank=True)
    usage = models.JSONField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    ttft_ms = models.FloatField("time to first token (ms)", null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    tokens_per_s = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    worker = models.CharField(max_length=300, blank=True, help_text="The server process that runs it (chat.liveness)")
    error_status = models.PositiveIntegerField(null=True, blank=True, help_text="Upstream HTTP status")
    error_message = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]

    def __str__(self) -> str:
        return f"Completion {self.public_id} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        # Every completion carries its conversation's headers as they were when it was made
        # (a send, a pane, a batch row alike); the run sends them (chat.runs).
        if self._state.adding and not self.request_headers and self.conversation_id:
            self.request_headers = dict(self.conversation.headers or {})
        # ...and its endpoint's, so View code and the Inspector show what went, not what is set now.
        if self._state.adding and self.endpoint_headers is None and self.endpoint_id:
            from chat import endpoint_headers

            self.endpoint_headers = endpoint_headers.recorded(self.endpoint)
        super().save(*args, **kwargs)


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        DEVELOPER = "developer", "Developer"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        TOOL = "tool", "Tool"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        CANCELLED = "cancelled", "Cancelled"
        ERROR = "error", "Error"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.JSONField(default=str, blank=True, help_text="A string or a list of content parts")
    reasoning = models.TextField(blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)
    name = models.CharField(max_length=200, blank=True)
    logprobs = models.JSONField(null=True, blank=True)
    finish_reason = models.CharField(max_length=30, blank=True)
    completion = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    choice_index = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True, help_text="What went wrong, as shown to the user (never a key)")
    # The thread is a tree: each message follows its parent (None: a first message). Among the
    # children of one parent, is_active marks the selected branch (the n choices of one completion
    # are selected together); the shown branch is the walk from the root through selected children.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    is_active = models.BooleanField(default=True, help_text="Selected among its siblings (False: another branch is shown)")
    removed = models.BooleanField(default=False, help_text="Taken out of the thread by its owner (kept for the record)")
    # In a comparison: the pane whose answer this is (None: a shared message, or any conversation's).
    pane = models.ForeignKey("chat.Pane", null=True, blank=True, on_delete=models.CASCADE, related_name="messages")
    # The content as plain text, kept by save() for the history search (content may be a list of parts).
    text_index = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "choice_index"]
        indexes = [models.Index(fields=["conversation", "position"])]

    def __str__(self) -> str:
        return f"{self.role} #{self.position}"

    def save(self, *args, **kwargs) -> None:
        self.text_index = self.text
        if self._state.adding and self.parent_id is None and self.position > 0:
            # Given only a position, a new message follows the shown message one position up
            # (the product's own code always names the parent; this keeps plain inserts coherent).
            from chat import branches

            shown = [m for m in self.conversation.thread() if m.position == self.position - 1]
            self.parent = branches.tail(shown) if shown else None
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "content" in update_fields:
            kwargs["update_fields"] = {*update_fields, "text_index"}
        super().save(*args, **kwargs)

    @property
    def has_output(self) -> bool:
        return bool(self.content or self.tool_calls)

    @property
    def image_urls(self) -> list[str]:
        if isinstance(self.content, str):
            return []
        return [p["image_url"]["url"] for p in self.content or [] if isinstance(p, dict) and p.get("type") == "image_url"]

    @property
    def schema_check(self) -> dict | None:
        """For a JSON answer: does it match the schema that was sent? {"valid", "error"} or None."""
        if self.role != self.Role.ASSISTANT or self.status != self.Status.COMPLETE or self.completion is None:
            return None
        from chat.schemas import check_answer

        return check_answer(self.completion.request_body, self.text)

    @property
    def text(self) -> str:
        """The content as plain text (text parts joined when content is a list of parts)."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.get("text", "") for p in self.content or [] if isinstance(p, dict) and p.get("type") == "text")

    def to_api(self) -> dict:
        """This message in the Chat Completions `messages` shape (unset fields omitted)."""
        message: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        if self.name:
            message["name"] = self.name
        return message


def message_rows(messages: list["Message"]) -> list[list["Message"]]:
    """Messages grouped for display: the n choices of one completion side by side, the rest alone."""
    rows: list[list["Message"]] = []
    for message in messages:
        previous = rows[-1][0] if rows else None
        if (
            previous is not None and message.completion_id is not None and message.role == "assistant"
            and previous.completion_id == message.completion_id and previous.position == message.position
        ):
            rows[-1].append(message)
        else:
            rows.append([message])
    return rows


# Presets, prompts and test sets (issue 16) live in their own module; Django finds them through this import.
from chat.models_library import Preset, Prompt, PromptVersion, TestCase, TestSet  # noqa: E402,F401
# Batch runs (issue 16): chat.models_batch.
from chat.models_batch import BatchResult, BatchRun  # noqa: E402,F401
