"""Batch runs (issue 16): a prompt version × endpoints × a test set, run in the background (chat.batch).

A run owns a hidden Conversation of kind "batch": each result's rendered messages and its
assistant Message live there, answered by an ordinary Completion (exact request body, View code,
Inspector), and the history lists that conversation as the run. Access is the run's, mirrored
onto its conversation: owner, team visibility, outsiders 404.

Each (row, endpoint) is one BatchResult, created when the run is made. A worker claims a result
by moving it from pending to running in a transaction (chat.batch.claim), so no row runs twice;
one left running by a worker that died goes back to pending, so none is lost.
"""

from __future__ import annotations

import uuid

from django.db import models

from chat.models_library import Shared


class BatchRun(Shared):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.DONE, Status.CANCELLED)

    conversation = models.OneToOneField("chat.Conversation", on_delete=models.CASCADE, related_name="batch_run")
    prompt_version = models.ForeignKey("chat.PromptVersion", null=True, on_delete=models.SET_NULL, related_name="batch_runs")
    test_set = models.ForeignKey("chat.TestSet", null=True, on_delete=models.SET_NULL, related_name="batch_runs")
    endpoints = models.ManyToManyField("chat.Endpoint", related_name="+")
    prompt_label = models.CharField(max_length=300, help_text="The prompt and version, kept if the prompt is deleted")
    test_set_label = models.CharField(max_length=300)
    checks = models.JSONField(default=list, blank=True, help_text="The test set's checks when the run was made (chat.checks)")
    concurrency = models.PositiveSmallIntegerField(default=4, help_text="Rows in flight per endpoint")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # The worker processes running it, with their last heartbeat ({worker: ISO time}): a run whose
    # workers are all gone is taken up again (chat.batch.recover).
    leases = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(Shared.Meta):
        pass

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


class BatchResult(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    run = models.ForeignKey(BatchRun, on_delete=models.CASCADE, related_name="results")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="In addresses (never the integer key)")
    position = models.PositiveIntegerField(help_text="The test case's row (0-based)")
    endpoint = models.ForeignKey("chat.Endpoint", null=True, on_delete=models.SET_NULL, related_name="+")
    endpoint_label = models.CharField(max_length=400)
    endpoint_index = models.PositiveSmallIntegerField(default=0, help_text="The endpoint's place in the run (compare pairs them)")
    values = models.JSONField(default=dict, blank=True, help_text="The row's variable values")
    expected = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    worker = models.CharField(max_length=300, blank=True, help_text="The process that claimed it (chat.liveness.worker_id)")
    claimed_at = models.DateTimeField(null=True, blank=True)
    completion = models.ForeignKey("chat.Completion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey("chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    checks = models.JSONField(default=list, blank=True, help_text='Each check\'s {"label", "passed", "detail"}')
    passed = models.BooleanField(null=True, help_text="All checks passed (None: no checks, or no answer)")
    schema_valid = models.BooleanField(null=True, help_text="A JSON answer matches the requested schema (None: none asked)")
    rating = models.SmallIntegerField(null=True, blank=True, choices=[(1, "👍"), (-1, "👎")])
    note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "position", "endpoint_index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position", "endpoint_index"], name="batch_result_row_endpoint_unique")
        ]
        indexes = [models.Index(fields=["run", "endpoint_index", "status"], name="batch_result_claim")]

    def __str__(self) -> str:
        return f"{self.run} row {self.position + 1} on {self.endpoint_label}"
