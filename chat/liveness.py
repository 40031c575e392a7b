"""Which streaming answers still have a live run, and what happens to those that do not.

A run belongs to one server process (its *worker*: host, pid and a random boot id, stored on the
Completion). A process that stops (SIGTERM) stops its runs first, so each saves its partial answer
as stopped. A process that dies (SIGKILL, a crash, the machine) leaves `streaming` rows behind; so
that no conversation stays stuck "Generating…", such a row is finalized as interrupted, with its
partial text, as soon as anyone looks: when the server starts, when a page opens, before a send.

A row is orphaned when its worker is this process but no run of ours holds it, or another process
on this host that is gone (or whose pid is now ours: a restart), or, for another host, when its
heartbeat is old: each process touches its live rows every HEARTBEAT seconds.

The same per-process tick saves the partial answers (checkpoints): every run whose text changed
since its last checkpoint, CHECKPOINT_INTERVAL ago or more, in one UPDATE for all of them, so that
hundreds of streams never queue hundreds of writes in the one database thread, and a tick that is
slow delays the next one instead of piling up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from channels.db import database_sync_to_async
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

HEARTBEAT = 5.0  # s between touches of this process's live rows
TICK = 1.0  # s between checkpoint rounds (at most; half CHECKPOINT_INTERVAL when that is shorter)
CHECKPOINT_BATCH = 1000  # rows per UPDATE (3 parameters each: within SQLite's and PostgreSQL's limits)
STALE = timedelta(seconds=20)  # a row of another host not touched for this long has no live run
INTERRUPTED = "Interrupted: the server stopped while this answer was streaming; the text so far is kept."

_worker: tuple[int, str] | None = None
_live: dict[int, object] = {}  # message pk -> its CompletionRun, in this process
_heartbeat: asyncio.Task | None = None
stopping = False  # set when this process shuts down: runs stop instead of waiting for a reconnect


def worker_id() -> str:
    """This process, as stored on the Completions it runs ("host:pid:boot"); new after a fork."""
    global _worker
    if _worker is None or _worker[0] != os.getpid():
        _worker = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}")
    return _worker[1]


def register(run) -> None:
    """A run started here: its row is ours and kept fresh until it ends."""
    global _heartbeat
    _live[run.message.pk] = run
    loop = asyncio.get_running_loop()
    if _heartbeat is None or _heartbeat.done() or _heartbeat.get_loop() is not loop:  # (tests: a loop each)
        _heartbeat = loop.create_task(_beat())


def unregister(run) -> None:
    _live.pop(run.message.pk, None)


def live_runs() -> list:
    return list(_live.values())


def live_count() -> int:
    return len(_live)


async def _beat() -> None:
    from chat import runs

    last_touch = time.monotonic()
    while _live:
        await asyncio.sleep(min(TICK, runs.CHECKPOINT_INTERVAL / 2))
        now = time.monotonic()
        due = [row for run in list(_live.values()) if (row := run.checkpoint_due(now)) is not None]
        touch = []
        if now - last_touch >= HEARTBEAT:
            last_touch = now
            saved = {row.pk for row in due}
            touch = [pk for pk in _live if pk not in saved]
        if due or touch:
            try:  # awaited: the next tick starts only once this one's writes are done
                await database_sync_to_async(save_checkpoints)(due, touch)
            except Exception:
                log.exception("could not save the live answers' checkpoints")


def save_checkpoints(rows: list, touch: list[int]) -> None:
    """The partial answers of `rows` (unsaved Messages holding pk, content, reasoning) in one UPDATE,
    only where the answer still streams (a final save that got there first is never overwritten);
    the rows `touch` only have updated_at set (the heartbeat)."""
    from django.db import connection

    from chat.models import Message

    now = timezone.now()
    if rows:
        meta, quote = Message._meta, connection.ops.quote_name
        table, content = quote(meta.db_table), meta.get_field("content")
        for start in range(0, len(rows), CHECKPOINT_BATCH):
            batch = rows[start:start + CHECKPOINT_BATCH]
            params = []
            for row in batch:  # content is a JSONField: its own adaptation (jsonb on PostgreSQL)
                params += [row.pk, content.get_db_prep_value(row.content, connection), row.reasoning]
            values = ", ".join(["(CAST(%s AS BIGINT), %s, %s)"] * len(batch))
            # A CTE and UPDATE … FROM: the same statement on PostgreSQL and SQLite (3.33+).
            sql = (
                f"WITH v (id, content, reasoning) AS (VALUES {values}) "
                f"UPDATE {table} SET {quote('content')} = v.content, {quote('reasoning')} = v.reasoning, "
                f"{quote('updated_at')} = %s FROM v WHERE {table}.{quote('id')} = v.id AND {table}.{quote('status')} = %s"
            )
            with connection.cursor() as cursor:
                cursor.execute(sql, [*params, connection.ops.adapt_datetimefield_value(now), Message.Status.STREAMING])
    if touch:
        Message.objects.filter(pk__in=touch).update(updated_at=now)


def _alive(worker: str, updated_at) -> bool:
    host, _, rest = (worker or "").partition(":")
    pid_text, _, _boot = rest.partition(":")
    if worker == worker_id():
        return False  # ours, yet no run of ours holds it (checked by the caller)
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return False  # an earlier process that had our pid: we restarted
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, another user's
        return updated_at >= timezone.now() - STALE * 3  # alive; a run that stopped beating for long is stuck
    return updated_at >= timezone.now() - STALE


def finalize_orphans(messages=None) -> int:
    """Mark `streaming` rows (of a queryset of messages, or all) that no live run holds as interrupted,
    their Completions too. Returns how many were finalized."""
    from chat.models import Completion, Message

    rows = (messages if messages is not None else Message.objects.all()).filter(status=Message.Status.STREAMING)
    orphans = [
        pk for pk, worker, updated_at in rows.values_list("pk", "completion__worker", "updated_at")
        if pk not in _live and not _alive(worker or "", updated_at)
    ]
    if not orphans:
        return 0
    Message.objects.filter(pk__in=orphans, status=Message.Status.STREAMING).update(
        status=Message.Status.ERROR, error=INTERRUPTED, updated_at=timezone.now()
    )
    Completion.objects.filter(Q(messages__pk__in=orphans), status=Completion.Status.STREAMING).update(
        status=Completion.Status.ERROR, error_message=INTERRUPTED, finished_at=timezone.now()
    )
    log.info("finalized %d answer(s) left streaming by a server that stopped", len(orphans))
    return len(orphans)


async def stop_all(timeout: float = 10.0) -> None:
    """Shutdown: stop every live run of this process and wait for each to save (as stopped)."""
    global stopping
    stopping = True
    runs = [run for run in live_runs() if run.task is not None and not run.task.done()]
    for run in runs:
        if not run.saved:
            run.stop()
    if runs:
        await asyncio.wait([run.task for run in runs], timeout=timeout)
