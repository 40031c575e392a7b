"""A comparison's panes: each an endpoint plus setting overrides on top of the comparison's settings.

A comparison is a `Conversation` of kind "compare" (history, sharing, access rules, fork, export
and the live group are the conversation's); its shared messages have no pane, each pane's
answers carry it (`Message.pane`). See chat.compare.
"""

from __future__ import annotations

import uuid

from django.db import models


class Pane(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey("chat.Conversation", on_delete=models.CASCADE, related_name="panes")
    position = models.PositiveSmallIntegerField(default=0)
    endpoint = models.ForeignKey("chat.Endpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Option values by registry name on top of the comparison's (None: unset); "enable_thinking" is
    # kept by that name (it goes into chat_template_kwargs) so that its chip reads as typed.
    overrides = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"Pane {self.position + 1}"
