"""The prompt library's data (issue 16): presets, prompts with versions, test sets with their cases.

Each follows a conversation's access rules: an owner, optionally a team it is shared with,
`visible_to(user)` for reading and `can_edit(user)` (the owner) for changing. Settings are kept
as a panel snapshot (`values`, see chat.library.snapshot): the keys PanelForm stores on a
conversation, without the endpoint, so a preset or a prompt version carries to any endpoint.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from chat.models import Conversation, SharedQuerySet


class Shared(models.Model):
    """Ownership and sharing, exactly as on a conversation."""

    Visibility = Conversation.Visibility

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="%(class)ss")
    team = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    visibility = models.CharField(max_length=10, choices=Conversation.Visibility.choices, default="private")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SharedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(visibility="private") | Q(team__isnull=False), name="%(class)s_team_needs_team"
            )
        ]
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="%(class)s_owner_latest"),
            models.Index(fields=["team", "visibility", "-updated_at"], name="%(class)s_team_latest"),
        ]

    def __str__(self) -> str:
        return self.name

    def can_edit(self, user) -> bool:
        return user.is_authenticated and self.owner_id == user.pk


class Preset(Shared):
    """A named bundle of settings: system prompt, options, tools, canned results, response format."""

    values = models.JSONField(default=dict, blank=True, help_text="A settings snapshot (chat.library.snapshot)")

    class Meta(Shared.Meta):
        pass


class Prompt(Shared):
    """Message templates with {{variables}} (in its versions), optionally with a preset's settings."""

    description = models.TextField(blank=True)
    preset = models.ForeignKey(Preset, null=True, blank=True, on_delete=models.SET_NULL, related_name="prompts")

    class Meta(Shared.Meta):
        pass

    def latest(self) -> PromptVersion | None:
        return self.versions.order_by("-number").first()


class PromptVersion(models.Model):
    """One save of a prompt: never changed afterwards, so a run can name exactly what it used."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    messages = models.JSONField(default=list, help_text='Templates: [{"role", "content"}] with {{variables}}')
    values = models.JSONField(default=dict, blank=True, help_text="A settings snapshot (chat.library.snapshot)")
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "number"]
        constraints = [models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.prompt.name} v{self.number}"

    @property
    def variables(self) -> list[str]:
        from chat.templating import variables

        return variables(self.messages)


class TestSet(Shared):
    """Rows of variable values (TestCase), optionally with an expected answer, and the checks run on them."""

    __test__ = False  # not a pytest test class, whatever its name

    variables = models.JSONField(default=list, blank=True, help_text="The column names, in order")
    checks = models.JSONField(default=list, blank=True, help_text="Check specs applied to every row's answer")

    class Meta(Shared.Meta):
        pass


class TestCase(models.Model):
    __test__ = False

    test_set = models.ForeignKey(TestSet, on_delete=models.CASCADE, related_name="cases")
    position = models.PositiveIntegerField()
    values = models.JSONField(default=dict, blank=True, help_text="{variable: value}")
    expected = models.TextField(blank=True)

    class Meta:
        ordering = ["test_set", "position"]
        constraints = [models.UniqueConstraint(fields=["test_set", "position"], name="test_case_position_unique")]

    def __str__(self) -> str:
        return f"{self.test_set.name} #{self.position + 1}"
