"""A comparison's send on the conversation socket: one CompletionRun per pane, all on the socket's sink.

The runs are the conversation's runs (chat.runs), started together; each pane's fragments target
its own answer's DOM ids, so the panes stream side by side in one socket. A pane that fails
(its upstream, its endpoint) ends with its error and the others go on.
"""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async
from django.db import transaction

from chat import compare, compare_fragments, fragments
from chat.runs import CompletionRun


LIVE_INTERVAL = 0.5  # s between a streaming pane's live numbers


class SaveBatch:
    """The final saves of one send's panes, in one transaction. Panes paced alike finish within
    milliseconds of each other, and each commit is a write to disk that the others would queue
    behind in the database thread: a save waits (at most WINDOW) for the other panes still
    streaming, then all are written at once. If that transaction fails, each is saved on its own,
    so that one answer's failure is not the others'."""

    WINDOW = 0.02  # s

    def __init__(self) -> None:
        self.runs: list[PaneRun] = []
        self.pending: list[tuple] = []
        self.timer: asyncio.TimerHandle | None = None

    def save(self, run: PaneRun, args: tuple) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((run, args, future))
        waiting = {id(r) for r, *_ in self.pending}
        if all(id(r) in waiting or r.saved or r.task.done() for r in self.runs):
            self._go()
        elif self.timer is None:
            self.timer = loop.call_later(self.WINDOW, self._go)
        return future

    def _go(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        if batch:
            asyncio.ensure_future(self._write(batch))

    async def _write(self, batch: list[tuple]) -> None:
        try:
            await database_sync_to_async(self._save_all)(batch)
        except Exception:
            for run, args, future in batch:  # one by one: a failure stays with its own answer
                run.choices = []
                try:
                    await database_sync_to_async(run._save)(*args)
                except Exception as error:
                    future.set_exception(error)
                else:
                    future.set_result(None)
            return
        for *_, future in batch:
            future.set_result(None)

    @staticmethod
    def _save_all(batch: list[tuple]) -> None:
        with transaction.atomic():
            for run, args, _ in batch:
                run._save(*args)


class PaneRun(CompletionRun):
    """A pane's answer: the same run; its final save joins its send's batch, and its final render
    also marks the pane idle."""

    def __init__(self, pane, *args, batch: SaveBatch | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pane = pane
        self.key = str(pane.public_id)  # Stop with this pane stops this run (chat.live: a detached run too)
        self.batch = batch
        if batch is not None:
            batch.runs.append(self)

    def persist(self, *args):
        return self.batch.save(self, args) if self.batch is not None else super().persist(*args)

    async def emit(self, html: str) -> None:
        # While it streams, the pane's head shows its live numbers, about twice a second, riding on a
        # fragment that goes out anyway (no frame of its own).
        if not self.saved and self.first_token_at is not None:
            now = time.monotonic()
            if now - getattr(self, "live_shown", 0.0) >= LIVE_INTERVAL:
                self.live_shown = now
                html += compare_fragments.live_metrics(self, now)
        await super().emit(html)

    def final_fragment(self) -> str:
        return compare_fragments.pane_final(self.message, self.completion, self.choices)


async def send(consumer, data: dict) -> None:
    if data["action"] not in ("send", "replay"):
        raise compare.CompareError("A comparison sends new messages only (Regenerate and Edit are for conversations).")
    if consumer._running():
        raise compare.CompareError("The panes are still answering; stop them first.")
    user = consumer.scope["user"]
    if data["action"] == "replay":
        started = await database_sync_to_async(compare.start_pending)(consumer.public_id, user)
    else:
        started = await database_sync_to_async(compare.start_send)(consumer.public_id, user, data.get("content") or "")
    if consumer.error_shown:
        consumer.error_shown = False
        await consumer.send(text_data=fragments.clear_frame_error())
    opened = asyncio.Event()
    runs, batch = [], SaveBatch()
    for pane, completion, reply in started.runs:
        run = consumer.runs[str(pane.public_id)] = PaneRun(pane, completion, reply, consumer.broadcast, opened=opened, batch=batch)
        run.start()
        runs.append(run)
    try:
        # A replay's placeholder goes into a turn already shown: the board is sent whole (read from the
        # database: in its thread).
        opening = asyncio.to_thread(compare_fragments.opening, started) if started.user_message else \
            database_sync_to_async(compare_fragments.redraw)(consumer.public_id, user)
        html, *_ = await asyncio.gather(opening, *(consumer.broadcast.follow(run) for run in runs))
        await consumer.broadcast(html)
    finally:
        opened.set()


def snapshot(conversation, user, known: str = "") -> str:
    """The board for a (re)connecting page; only the sync mark when its page is current."""
    board = compare_fragments.Board(conversation, user)
    if known and known == board.version:
        return fragments.synced()
    return compare_fragments.board(board) + compare_fragments.setup(board)
