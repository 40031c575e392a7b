"""Batch runs: a prompt version × endpoints × a test set, run by a background worker.

The queue is django-tasks' database backend (`manage.py batch_worker`, which `make run` starts
beside Daphne): a run is `BATCH_TASKS_PER_RUN` tasks of `execute`, and each task works through
the run's rows in an asyncio loop of its own. Every row is an ordinary completion run
(chat.runs.CompletionRun) feeding a `ResultSink` that renders nothing and saves the row's result
with its answer, in one transaction.

No row runs twice: a task claims rows by moving them from pending to running in a transaction
that holds the run's row lock (`claim`), and only while fewer than `concurrency` rows of that
endpoint are running, across all workers. No row is lost: a worker that stops (SIGTERM) cancels
its rows in flight and puts them back to pending, deleting their unfinished attempts, and
queues the run again; one that dies leaves its rows running under a lease whose heartbeat stops,
and `recover` (when a worker or the server starts, and while a run's page is open) puts them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat import checks as checking
from chat import library, liveness
from chat.models import BatchResult, BatchRun, Completion, Conversation, Endpoint, Message
from chat.runs import CompletionRun
from chat.schemas import check_answer
from chat.templating import TemplateError, render
from chat.upstream.payload import PayloadError, build_payload

try:  # the tasks API: Django 6's own, else the django-tasks backport
    from django.tasks import task
except ImportError:
    from django_tasks import task

log = logging.getLogger(__name__)

HEARTBEAT = 5.0  # s between lease renewals of a running task
POLL = 0.5  # s between looks at the run's status (Cancel)
QUEUED_STALE = timedelta(seconds=30)  # a queued run with no task waiting for it is queued again


class RunInvalid(ValueError):
    """The run cannot be made as asked; the message names the row or the endpoint."""


# --- making a run -----------------------------------------------------------------------


def request_parts(values: dict) -> tuple[str, dict]:
    """(system prompt, option values) of a prompt version's settings snapshot, as *Use a prompt*
    takes them (chat.library); streamed unless the prompt says otherwise (TTFT and tokens/s need it)."""
    values = values if isinstance(values, dict) else {}
    options = library.option_values(values)
    if options.get("stream") is None:
        options["stream"] = True
        options.setdefault("stream_options", {"include_usage": True})
    return str(values.get("system_prompt") or ""), options


def api_messages(version_messages: list, values: dict, snapshot: dict) -> list[dict]:
    """The row's messages: the version's templates rendered with the row's values, after the
    snapshot's system prompt (chat.library.api_messages, as a conversation would send them)."""
    rendered = [{"role": m["role"], "content": m["content"]} for m in render(version_messages, values)]
    return library.api_messages(rendered, snapshot if isinstance(snapshot, dict) else {})


def request_body(run_version, values: dict, endpoint: Endpoint) -> dict:
    _, options = request_parts(run_version.values)
    return build_payload(endpoint.model_id, api_messages(run_version.messages, values, run_version.values), options)


def create_run(user, *, version, test_set, endpoints: list[Endpoint], concurrency: int, visibility="private", team=None) -> BatchRun:
    """Check every row and endpoint (a bad one is a RunInvalid naming it, nothing is made), then
    make the run, its hidden conversation and its result rows, and queue it: one transaction."""
    cases = list(test_set.cases.order_by("position"))
    if not cases:
        raise RunInvalid("The test set has no rows.")
    if not endpoints:
        raise RunInvalid("Pick at least one endpoint.")
    try:
        run_checks = checking.validate(test_set.checks or [])
    except checking.CheckError as e:
        raise RunInvalid(f"The test set's checks: {e}") from None
    for number, case in enumerate(cases, 1):
        for endpoint in endpoints:
            try:
                request_body(version, case.values, endpoint)
            except TemplateError as e:
                raise RunInvalid(f"Row {number}: {e}") from None
            except PayloadError as e:
                raise RunInvalid(f"Row {number} on {endpoint.name}: the request is not valid ({e})") from None
    system_prompt, options = request_parts(version.values)
    name = f"{version.prompt.name} v{version.number} × {test_set.name}"[:200]
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user, team=team, visibility=visibility, kind=Conversation.Kind.BATCH, title=name,
            endpoint=endpoints[0], system_prompt=system_prompt, options=dict(version.values.get("options") or {}),
            tools=version.values.get("tools") or [], response_format=version.values.get("response_format"),
        )
        run = BatchRun.objects.create(
            owner=user, team=team, visibility=visibility, name=name, conversation=conversation,
            prompt_version=version, test_set=test_set, prompt_label=f"{version.prompt.name} v{version.number}"[:300],
            test_set_label=test_set.name[:300], checks=run_checks, concurrency=concurrency,
        )
        run.endpoints.set(endpoints)
        BatchResult.objects.bulk_create([
            BatchResult(run=run, position=case.position, endpoint=endpoint, endpoint_label=endpoint.name_and_model[:400],
                        endpoint_index=index, values=case.values, expected=case.expected)
            for case in cases for index, endpoint in enumerate(endpoints)
        ])
        enqueue(run)
    return run


def enqueue(run: BatchRun) -> None:
    """Queue the run's tasks (inside the caller's transaction: the run and its tasks or neither)."""
    for _ in range(settings.BATCH_TASKS_PER_RUN):
        execute.enqueue(run_id=run.pk)


def cancel(run: BatchRun) -> None:
    """Cancel: no row starts from now on; rows in flight are stopped by their worker (within POLL)."""
    with transaction.atomic():
        run = BatchRun.objects.select_for_update().get(pk=run.pk)
        if run.finished:
            return
        run.status = BatchRun.Status.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at", "updated_at"])
        run.results.filter(status=BatchResult.Status.PENDING).update(status=BatchResult.Status.CANCELLED)
    recover(BatchRun.objects.filter(pk=run.pk))  # rows left by a dead worker: cancelled now too


# --- progress -------------------------------------------------------------------------------


def progress(run: BatchRun) -> dict:
    """Counts per endpoint and overall: total, finished, passed, failed, errors; the pass rate."""
    rows = (run.results.values("endpoint_index", "endpoint_label", "status", "passed", "completion__status")
            .annotate(n=Count("id")).order_by("endpoint_index"))
    endpoints: dict[int, dict] = {}
    for row in rows:
        e = endpoints.setdefault(row["endpoint_index"], {"label": row["endpoint_label"], "total": 0, "finished": 0,
                                                         "running": 0, "passed": 0, "failed": 0, "errors": 0})
        e["total"] += row["n"]
        if row["status"] in (BatchResult.Status.DONE, BatchResult.Status.CANCELLED):
            e["finished"] += row["n"]
        if row["status"] == BatchResult.Status.RUNNING:
            e["running"] += row["n"]
        if row["status"] == BatchResult.Status.DONE:
            if row["completion__status"] == Completion.Status.ERROR:
                e["errors"] += row["n"]
            if row["passed"] is True:
                e["passed"] += row["n"]
            elif row["passed"] is False:
                e["failed"] += row["n"]
    for e in endpoints.values():
        graded = e["passed"] + e["failed"]
        e["pass_rate"] = e["passed"] / graded if graded else None
        e["percent"] = round(100 * e["finished"] / e["total"]) if e["total"] else 0
    total = sum(e["total"] for e in endpoints.values())
    finished = sum(e["finished"] for e in endpoints.values())
    return {"endpoints": list(endpoints.values()), "total": total, "finished": finished,
            "percent": round(100 * finished / total) if total else 0}


# --- recovery ---------------------------------------------------------------------------------


_running_here: set[int] = set()  # the runs a Runner of this process works on


def _lease_alive(run_id: int, worker: str, beat: str) -> bool:
    """A lease's worker is alive: this process running the run, or another process that is alive
    (on this host: its pid; elsewhere: a fresh heartbeat; see chat.liveness)."""
    if worker == liveness.worker_id():
        return run_id in _running_here
    when = parse_datetime(beat or "")
    return when is not None and liveness._alive(worker, when)


class WorkerGone(RuntimeError):
    """What a dead worker's task is marked failed with (chat.batch.recover)."""


def recover(runs=None) -> int:
    """Take up again the unfinished runs none of whose workers is alive: their rows left running
    go back to pending (their unfinished attempts deleted) and the run is queued again. Idempotent
    and safe from any process at any time (each run is decided under its row lock). Returns how
    many runs were queued again."""
    from django_tasks_db.models import DBTaskResult

    requeued = 0
    candidates = (runs if runs is not None else BatchRun.objects.all()).filter(
        status__in=(BatchRun.Status.QUEUED, BatchRun.Status.RUNNING, BatchRun.Status.CANCELLED),
    )
    for pk in candidates.filter(Q(status=BatchRun.Status.CANCELLED, results__status=BatchResult.Status.RUNNING) | ~Q(status=BatchRun.Status.CANCELLED)).values_list("pk", flat=True).distinct():
        with transaction.atomic():
            run = BatchRun.objects.select_for_update().filter(pk=pk).first()
            if run is None or any(_lease_alive(run.pk, w, beat) for w, beat in run.leases.items()):
                continue
            if run.status == BatchRun.Status.QUEUED:
                tasks = DBTaskResult.objects.filter(task_path=execute.module_path, args_kwargs__kwargs__run_id=run.pk)
                # A task waiting for a worker, or one that has just been picked up (it marks the run running).
                waiting = tasks.filter(Q(status="READY") | Q(status="RUNNING", started_at__gte=timezone.now() - QUEUED_STALE)).exists()
                if waiting or run.updated_at > timezone.now() - QUEUED_STALE:
                    continue
            orphans = list(run.results.filter(status=BatchResult.Status.RUNNING))
            stale = orphans  # no lease is alive
            _release(stale, cancelled=run.status == BatchRun.Status.CANCELLED)
            # django-tasks-db leaves a dead worker's task RUNNING for ever: say what became of it.
            for task in DBTaskResult.objects.filter(task_path=execute.module_path, args_kwargs__kwargs__run_id=run.pk, status="RUNNING"):
                task.set_failed(WorkerGone(f"The worker running batch run {run.public_id} stopped; the run was taken up again."))
            run.leases = {}
            if run.status == BatchRun.Status.CANCELLED:
                run.save(update_fields=["leases", "updated_at"])
            elif run.results.filter(status=BatchResult.Status.PENDING).exists():
                run.status = BatchRun.Status.QUEUED
                run.save(update_fields=["status", "leases", "updated_at"])
                enqueue(run)
                requeued += 1
                log.info("batch run %s: taken up again (%d rows were left running)", run.public_id, len(stale))
            else:
                run.status, run.finished_at = BatchRun.Status.DONE, timezone.now()
                run.save(update_fields=["status", "leases", "finished_at", "updated_at"])
    return requeued


def _release(results: list[BatchResult], *, cancelled: bool = False) -> None:
    """Rows whose attempt did not finish: pending again (or cancelled), the attempt deleted."""
    if not results:
        return
    attempt = []
    for result in results:
        attempt += _attempt_messages(result)
    Message.objects.filter(pk__in=attempt).delete()
    Completion.objects.filter(pk__in=[r.completion_id for r in results if r.completion_id]).delete()
    BatchResult.objects.filter(pk__in=[r.pk for r in results]).update(
        status=BatchResult.Status.CANCELLED if cancelled else BatchResult.Status.PENDING,
        worker="", claimed_at=None, completion=None, message=None,
    )


def _attempt_messages(result: BatchResult) -> list[int]:
    """The assistant message and the rendered messages before it (one chain per row)."""
    pks, pk = [], result.message_id
    while pk is not None:
        pks.append(pk)
        pk = Message.objects.filter(pk=pk).values_list("parent_id", flat=True).first()
    return pks


# --- the worker ---------------------------------------------------------------------------------


@task()
def execute(run_id: int) -> str:
    """One of a run's tasks: run rows until none is left to claim. In the worker process."""
    runner = Runner(run_id)
    try:
        import uvloop

        return uvloop.run(runner.run())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(runner.run())


class ResultSink:
    """A batch row's sink: no viewer to render for (renders = False); when the answer is saved,
    the row's result is saved in the same transaction (chat.runs calls `saved`)."""

    renders = False

    def __init__(self, runner: Runner, result: BatchResult) -> None:
        self.runner = runner
        self.result = result

    async def __call__(self, html: str) -> None:  # never called: nothing is rendered
        return None

    def saved(self, completion_run: CompletionRun, status: str) -> None:
        result, message = self.result, completion_run.message
        if self.runner.releasing and status == Message.Status.CANCELLED:
            # The worker is stopping, not the user: the row runs again later, from the start.
            _release([result])
            return
        body = completion_run.completion.request_body
        answer = checking.Answer(
            content=message.text, tool_calls=message.tool_calls, request_body=body,
            values={**result.values, "expected": result.expected}, expected=result.expected,
        )
        complete = status == Message.Status.COMPLETE
        outcomes = checking.evaluate(self.runner.checks, answer) if complete else []
        schema = check_answer(body, message.text) if complete else None
        BatchResult.objects.filter(pk=result.pk).update(
            status=BatchResult.Status.CANCELLED if status == Message.Status.CANCELLED else BatchResult.Status.DONE,
            checks=outcomes, passed=(all(o["passed"] for o in outcomes) if complete else False) if self.runner.checks else None,
            schema_valid=schema["valid"] if schema else None, updated_at=timezone.now(),
        )


class Runner:
    """One task of a run, in one worker process: feeds each endpoint's rows through CompletionRuns,
    at most `concurrency` of them in flight per endpoint (counted across all workers)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.worker = liveness.worker_id()
        self.stopping = False  # no more claims (Cancel, or the worker stops)
        self.releasing = False  # the worker stops: rows in flight go back to pending
        self.live: set[CompletionRun] = set()
        self.checks: list[dict] = []
        self.finished = 0

    async def run(self) -> str:
        run = await database_sync_to_async(self._start)()
        if run is None:
            return "nothing to run"
        self.run_obj = run
        self.checks = run.checks or []
        self.endpoints = {e.pk: e for e in await database_sync_to_async(lambda: list(run.endpoints.select_related("api_key")))()}
        restore = self._trap_signals()
        watcher = asyncio.create_task(self._watch())
        _running_here.add(self.run_id)
        try:
            indexes = await database_sync_to_async(
                lambda: sorted(set(run.results.values_list("endpoint_index", flat=True)))
            )()
            await asyncio.gather(*(self._feed(index) for index in indexes))
        finally:
            _running_here.discard(self.run_id)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            restore()
        await database_sync_to_async(self._finish)()
        return f"{self.finished} rows"

    # -- signals: the worker stops (db_worker's own handler runs too: it exits after this task)

    def _trap_signals(self):
        loop = asyncio.get_running_loop()
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._stop_for_shutdown, sig, previous[sig])
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread (tests)
                previous.pop(sig, None)

        def restore():
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
        return restore

    def _stop_for_shutdown(self, sig, previous) -> None:
        if self.releasing:  # Ctrl-C reaches the launcher's whole group, and the launcher sends SIGTERM too
            return
        log.warning("batch run %s: the worker stops; rows in flight go back to the queue", self.run_id)
        self.releasing = True
        self._stop()
        if callable(previous):  # db_worker's: it exits once this task returns (a second signal: at once)
            previous(sig, None)

    def _stop(self) -> None:
        self.stopping = True
        for completion_run in list(self.live):
            if completion_run.task is not None and not completion_run.saved:
                completion_run.stop()

    async def _watch(self) -> None:
        """Every POLL: has the run been cancelled? Every HEARTBEAT: renew this worker's lease."""
        beat = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(POLL)
            now = asyncio.get_running_loop().time()
            renew = now - beat >= HEARTBEAT
            if renew:
                beat = now
            status = await database_sync_to_async(self._look)(renew)
            if status != BatchRun.Status.RUNNING and not self.stopping:
                self._stop()

    def _look(self, renew: bool) -> str:
        if renew:
            with transaction.atomic():
                run = BatchRun.objects.select_for_update().filter(pk=self.run_id).first()
                if run is None:  # deleted meanwhile: stop
                    return ""
                run.leases[self.worker] = timezone.now().isoformat()
                run.save(update_fields=["leases", "updated_at"])
                return run.status
        return BatchRun.objects.filter(pk=self.run_id).values_list("status", flat=True).first()

    # -- rows

    async def _feed(self, index: int) -> None:
        inflight: set[asyncio.Task] = set()
        while True:
            claimed, waiting = [], 0
            if not self.stopping and len(inflight) < self.run_obj.concurrency:
                claimed, waiting = await database_sync_to_async(self._claim)(index, self.run_obj.concurrency - len(inflight))
                for result in claimed:
                    inflight.add(asyncio.create_task(self._row(result)))
            if not inflight:
                if self.stopping:
                    return
                if waiting:  # other workers hold every slot of this endpoint: wait for one
                    await asyncio.sleep(POLL / 5)
                    continue
                if await database_sync_to_async(self._take_over)(index):
                    continue
                return
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            inflight -= done

    async def _row(self, result: BatchResult) -> None:
        if self.releasing:  # claimed as the worker began to stop: back to the queue, unsent
            await database_sync_to_async(_release)([result])
            return
        completion_run = CompletionRun(result.completion, result.message, ResultSink(self, result))
        self.live.add(completion_run)
        try:
            await completion_run.start()
        except asyncio.CancelledError:
            pass  # stopped (Cancel, or the worker stops): saved as such
        except Exception:
            log.exception("batch run %s: row %s failed", self.run_id, result.pk)
        finally:
            self.live.discard(completion_run)
            self.finished += 1

    # -- database (each in one trip to the database thread) -------------------------------------

    def _start(self) -> BatchRun | None:
        with transaction.atomic():
            run = (BatchRun.objects.select_for_update(of=("self",)).select_related("prompt_version__prompt", "conversation")
                   .filter(pk=self.run_id).first())
            if run is None or run.finished:
                return None
            if run.status == BatchRun.Status.QUEUED:
                run.status = BatchRun.Status.RUNNING
                run.started_at = run.started_at or timezone.now()
            run.leases[self.worker] = timezone.now().isoformat()
            run.save(update_fields=["status", "started_at", "leases", "updated_at"])
            return run

    def _claim(self, index: int, want: int) -> tuple[list[BatchResult], int]:
        """Up to `want` pending rows of one endpoint, moved to running for this worker, each with its
        rendered messages, its Completion (the exact request body) and its assistant placeholder.
        Returns them and whether more rows wait (1) or not (0)."""
        with transaction.atomic():
            # The run's row lock: claims of one run are serialized across workers (and the count holds).
            run = BatchRun.objects.select_for_update().filter(pk=self.run_id).first()
            if run is None or run.status != BatchRun.Status.RUNNING:  # cancelled, finished or deleted
                return [], 0
            rows = run.results.filter(endpoint_index=index)
            busy = rows.filter(status=BatchResult.Status.RUNNING).count()
            take = max(0, min(want, run.concurrency - busy))
            pending = list(rows.filter(status=BatchResult.Status.PENDING).order_by("position")[: take + 1])
            claimed, left = pending[:take], max(0, len(pending) - take)
            if not claimed:
                return [], left
            now = timezone.now()
            updated = BatchResult.objects.filter(pk__in=[r.pk for r in claimed], status=BatchResult.Status.PENDING).update(
                status=BatchResult.Status.RUNNING, worker=self.worker, claimed_at=now
            )
            if updated != len(claimed):  # the lock makes this impossible; never run a row twice
                raise RuntimeError("batch rows were claimed by another worker under the run's lock")
            runnable = [result for result in claimed if self._prepare(run, result)]
            return runnable, left or int(len(runnable) < len(claimed))

    def _prepare(self, run: BatchRun, result: BatchResult) -> bool:
        """Make the row's messages, Completion and placeholder; False (and the row finished with the
        reason) when it cannot be sent: its endpoint or the prompt version was deleted meanwhile."""
        endpoint = self.endpoints.get(result.endpoint_id)
        version = self.run_obj.prompt_version
        conversation = self.run_obj.conversation
        parent = None
        gone = "endpoint" if endpoint is None else "prompt version" if version is None else ""
        if gone:
            body, messages = {}, []
        else:
            _, options = request_parts(version.values)
            messages = api_messages(version.messages, result.values, version.values)
            body = build_payload(endpoint.model_id, messages, options)
        for position, message in enumerate(messages):
            parent = Message.objects.create(conversation=conversation, parent=parent, position=position, role=message["role"],
                                            content=message["content"], is_active=position > 0)
        error = f"Not sent: the {gone} was deleted before this row ran." if gone else ""
        completion = Completion.objects.create(
            conversation=conversation, endpoint=endpoint, user_id=run.owner_id, request_body=body, worker=self.worker,
            status=Completion.Status.ERROR if gone else Completion.Status.STREAMING, error_message=error,
        )
        reply = Message.objects.create(conversation=conversation, parent=parent, position=len(messages), role="assistant",
                                       completion=completion, status=Message.Status.ERROR if gone else Message.Status.STREAMING,
                                       error=error, is_active=parent is not None)
        if gone:
            BatchResult.objects.filter(pk=result.pk).update(
                completion=completion, message=reply, status=BatchResult.Status.DONE,
                passed=False if self.checks else None, updated_at=timezone.now())
            return False
        completion.endpoint = endpoint  # with its key
        reply.conversation = conversation
        result.completion, result.message = completion, reply
        BatchResult.objects.filter(pk=result.pk).update(completion=completion, message=reply)
        return True

    def _take_over(self, index: int) -> bool:
        """Nothing pending for this endpoint: rows still running under a dead worker's lease go
        back to pending, for this worker to run. True if there were any."""
        with transaction.atomic():
            run = BatchRun.objects.select_for_update().filter(pk=self.run_id).first()
            if run is None:
                return False
            alive = {w for w, beat in run.leases.items() if w == self.worker or _lease_alive(run.pk, w, beat)}
            stale = list(run.results.filter(endpoint_index=index, status=BatchResult.Status.RUNNING).exclude(worker__in=alive))
            _release(stale, cancelled=run.status == BatchRun.Status.CANCELLED)
            return bool(stale) and run.status == BatchRun.Status.RUNNING

    def _finish(self) -> None:
        """This task is done: drop its lease; the last one out marks the run done, or, when the
        worker stopped with rows left, queues the run again for the next worker."""
        with transaction.atomic():
            run = BatchRun.objects.select_for_update().filter(pk=self.run_id).first()
            if run is None:  # deleted while it ran
                return
            run.leases.pop(self.worker, None)
            others = any(_lease_alive(run.pk, w, beat) for w, beat in run.leases.items())
            fields = ["leases", "updated_at"]
            unfinished = run.results.filter(status__in=(BatchResult.Status.PENDING, BatchResult.Status.RUNNING)).exists()
            if run.status == BatchRun.Status.RUNNING and not others:
                if unfinished and self.releasing:
                    run.status = BatchRun.Status.QUEUED
                    enqueue(run)
                    fields.append("status")
                elif not unfinished:
                    run.status, run.finished_at = BatchRun.Status.DONE, timezone.now()
                    fields += ["status", "finished_at"]
            run.save(update_fields=fields)
