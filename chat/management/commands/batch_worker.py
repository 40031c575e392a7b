"""`manage.py batch_worker`: take up batch runs left by a worker that died, then work the queue.

The queue is django-tasks' database backend; this is its `db_worker` (no autoreload, a short
poll), after `chat.batch.recover()`. Run one per process you want working: `make run`'s launcher
starts one beside Daphne; with PostgreSQL, start as many as you like (BATCH_TASKS_PER_RUN tasks
per run spread one run over that many of them).
"""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand

from chat.batch import recover


class Command(BaseCommand):
    help = "Run a batch worker: recover interrupted batch runs, then run queued tasks (django-tasks db_worker)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between looks at an empty queue (default 0.5).")
        parser.add_argument("--max-tasks", type=int, default=None, help="Exit after this many tasks.")
        parser.add_argument("--batch", action="store_true", help="Exit once the queue is empty.")

    def handle(self, *, interval: float, max_tasks: int | None, batch: bool, verbosity: int, **options) -> None:
        requeued = recover()
        if requeued:
            self.stderr.write(f"batch worker: {requeued} interrupted run(s) queued again")
        arguments = {"interval": interval, "reload": False, "startup_delay": False, "verbosity": verbosity}
        if max_tasks:
            arguments["max_tasks"] = max_tasks
        if batch:
            arguments["batch"] = True
        call_command("db_worker", **arguments)
