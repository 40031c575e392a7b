"""A comparison's send on the conversation socket: one CompletionRun per pane, all on the socket's sink.

The runs are the conversation's runs (chat.runs), started together; each pane's fragments target
its own answer's DOM ids, so the panes stream side by side in one socket. A pane that fails
(its upstream, its endpoint) ends with its error and the others go on.
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from chat import compare, compare_fragments, fragments
from chat.runs import CompletionRun


class PaneRun(CompletionRun):
    """A pane's answer: the same run; its final render also marks the pane idle."""

    def __init__(self, pane, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pane = pane
        self.key = str(pane.public_id)  # Stop with this pane stops this run (chat.live: a detached run too)

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
    runs = []
    for pane, completion, reply in started.runs:
        run = consumer.runs[str(pane.public_id)] = PaneRun(pane, completion, reply, consumer.broadcast, opened=opened)
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
    return compare_fragments.board(board)
