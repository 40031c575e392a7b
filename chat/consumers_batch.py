"""A batch run's page socket: the live progress bar, read from the database.

The run goes on in a worker process (chat.batch), so the socket does not relay anything: every
PROGRESS_INTERVAL it reads the run's counts (one grouped query) and, when they changed, sends the
progress fragment; while rows finish it sends the results table again (at most every
TABLE_INTERVAL), and once more when the run ends. It works the same with the in-memory channel
layer and with Redis, on any server process. Access is checked at connect and again every
ACCESS_INTERVAL (a run unshared meanwhile closes the socket). While the page is open it also
takes the run up again if its workers died (chat.batch.recover).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from chat import batch, batch_results
from chat.consumers import CLOSE_FORBIDDEN, admit
from chat.models import BatchRun

PROGRESS_INTERVAL = 0.75
TABLE_INTERVAL = 2.0
ACCESS_INTERVAL = 5.0
RECOVER_INTERVAL = 10.0
TABLE_LIVE_LIMIT = 400  # rows: a longer table is sent again only when the run ends


class BatchProgressConsumer(AsyncWebsocketConsumer):
    poller: asyncio.Task | None = None

    async def connect(self) -> None:
        if await admit(self, self._run) is None:
            return
        await self.accept()
        self.poller = asyncio.create_task(self._poll())

    async def disconnect(self, code: int) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """The page sends nothing the socket acts on (Cancel is a form post)."""

    async def _poll(self) -> None:
        last, table_sent, checked, recovered = None, 0.0, time.monotonic(), time.monotonic()
        last_finished = None
        while True:
            now = time.monotonic()
            if now - checked >= ACCESS_INTERVAL:
                checked = now
                if await self._run() is None:
                    await self.close(code=CLOSE_FORBIDDEN)
                    return
            if now - recovered >= RECOVER_INTERVAL:
                recovered = now
                await database_sync_to_async(batch.recover)(BatchRun.objects.filter(public_id=self.public_id))
            state, html = await database_sync_to_async(self._progress)()
            if state != last:
                finished_now = state[0] in BatchRun.FINISHED
                rows_changed = last_finished is not None and state[1] != last_finished
                live_table = state[2] <= TABLE_LIVE_LIMIT and now - table_sent >= TABLE_INTERVAL
                if finished_now or (rows_changed and live_table):
                    html += await database_sync_to_async(self._table)()
                    table_sent = now
                last, last_finished = state, state[1]
                await self.send(text_data=html)
                if finished_now:
                    return  # nothing changes any more
            await asyncio.sleep(PROGRESS_INTERVAL)

    @database_sync_to_async
    def _run(self) -> BatchRun | None:
        user = self.scope["user"]
        user.refresh_from_db(fields=["is_active"])
        if not user.is_active:
            return None
        return BatchRun.objects.visible_to(user).filter(public_id=self.public_id).first()

    def _progress(self) -> tuple[tuple, str]:
        run = BatchRun.objects.get(public_id=self.public_id)
        progress = batch.progress(run)
        state = (run.status, progress["finished"], progress["total"],
                 tuple((e["finished"], e["passed"], e["failed"], e["running"]) for e in progress["endpoints"]))
        html = render_to_string("chat/batch_run.html#progress", {"run": run, "progress": progress, "oob": True,
                                                                   "can_edit": run.can_edit(self.scope["user"])})
        return state, html

    def _table(self) -> str:
        run = BatchRun.objects.get(public_id=self.public_id)
        context = batch_results.page_context(run, self.scope["user"])
        return render_to_string("chat/batch_run.html#results", {**context, "oob": True})
