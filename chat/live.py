"""Where a run's fragments go, and how a run outlives its owner's socket for a grace period.

A run sends through a `RunSink`: straight to the owner's socket that started it, and through the
conversation's channel-layer group to every other viewer, only while there is one: with the
in-memory layer the group is read at each send; with Redis (chat.layers) the sink knows whether
anyone else is in the group (the group's sorted set, read when the run starts, about once a second
while it streams, and before its final fragment; and at once when a page announces itself with
`conversation.resync`). A viewer that joins between two reads misses nothing: its page read the
database after joining the group (the opening and the final fragment are read again after the
writes they show), and its resync makes the run send a snapshot of the live message before any
further fragment, through the group. When that socket closes mid-stream (a
reload, a closed tab), `RunSink.release` stops the run at once (RUN_GRACE_SECONDS = 0) or detaches
it (`Detached`): the run gets a channel of its own on the layer, joins the group and listens there,
so the owner's next page reaches it whichever process it lands on:

- `conversation.stop` (Stop, Esc from any of the owner's pages): stops the run at once;
- `conversation.resync` (a page connected): sends the live message to the group, where the new page
  gets it and every fragment after it; when the page is the owner's (`owner`: its socket's channel),
  the grace timer is cancelled;
- `conversation.owner_gone` (one of the owner's sockets closed): when it was the last one the run
  knows of, the timer is armed again;
- `run.owner_here`: an owner's socket answering `conversation.roll_call`, which the run sends when it
  detaches (the owner may still have the conversation open in another tab).

When the grace period ends with none of the owner's sockets open, the run is stopped as Stop does:
the upstream request is closed and the partial answer saved as cancelled. Whenever the run ends, it
leaves the group and stops listening.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from chat import liveness

if TYPE_CHECKING:
    from chat.runs import CompletionRun

log = logging.getLogger(__name__)

# Strong references: a detached run's tasks are held by nothing else once its socket's consumer is gone.
_detached: set[Detached] = set()

WATCH_REFRESH = 1.0  # s between reads of the group's members for this process's streaming runs (Redis)
_watched: set[RunSink] = set()  # sinks of this process's streaming runs, on a layer that counts members
_watching: asyncio.Task | None = None


def others_may_watch(layer, group: str, own: str) -> bool:
    """Whether a group send can reach anyone but `own` (the sender's channel). The in-memory layer
    knows its groups exactly: nobody else there means no send (its group_send scans every channel,
    which costs O(streams) per fragment). Other layers: always send."""
    groups = getattr(layer, "groups", None)
    if isinstance(groups, dict):
        members = groups.get(group) or ()  # (per fragment: no generator for the usual lone owner)
        return len(members) > 1 or bool(members) and own not in members
    return True


class RunSink:
    """A run's viewers: the socket that started it (sent to directly) and the conversation's group
    (everyone else). One per socket, made when it connects; a run emits through it, and so do the
    socket's own broadcasts (the opening fragments, snapshots), in one queue: a snapshot taken just
    before it is queued holds exactly what the fragments queued before it hold, so a (re)connecting
    page never sees text twice or misses any."""

    def __init__(self, consumer) -> None:
        self.layer = consumer.channel_layer
        self.group = consumer.group
        self.socket = consumer  # None once the socket has closed
        self.channel = consumer.channel_name  # the sender named in group messages (members skip their own)
        self.lock = asyncio.Lock()  # FIFO: fragments leave in the order they were made
        # A layer that counts a group's members (Redis): whether anyone else may be there, as last read
        # or announced; True until read. Other layers are asked at each send (others_may_watch).
        self.counts = callable(getattr(self.layer, "others_in_groups", None))
        self.watched = True
        self.announced = 0  # bumped by each announcement: a read begun before one must not undo it

    async def __call__(self, html: str) -> None:
        async with self.lock:
            socket = self.socket
            if socket is not None:
                try:
                    await socket.send(text_data=html)
                except Exception:  # the socket closed mid-send (Daphne raises); its disconnect releases the run
                    self.socket = None
            if self.watched if self.counts else others_may_watch(self.layer, self.group, self.channel):
                await self.layer.group_send(
                    self.group, {"type": "conversation.fragment", "html": html, "sender": self.channel}
                )

    def viewer_joined(self, channel: str | None) -> None:
        """A page connected to the conversation (its `conversation.resync`): from now on every fragment
        goes through the group too. Called before the snapshot it asks for is queued."""
        if channel != self.channel:
            self.watched = True
            self.announced += 1

    async def refresh(self) -> None:
        """Read now whether anyone else is in the group (Redis): before a fragment that shows what was
        just written to the database (a page that joins after this read reads the write itself)."""
        if self.counts:
            await _refresh([self])

    async def follow(self, run: CompletionRun) -> None:
        """A run starts on this sink: read the group now, and about once a second while it streams."""
        global _watching
        if not self.counts:
            return
        await self.refresh()
        _watched.add(self)
        run.task.add_done_callback(lambda _: _watched.discard(self))
        loop = asyncio.get_running_loop()
        if _watching is None or _watching.done() or _watching.get_loop() is not loop:  # (tests: a loop each)
            _watching = loop.create_task(_watch())

    async def snapshot(self, run: CompletionRun) -> None:
        """The streaming message as it stands, to every viewer (for a page that just connected)."""
        if not run.saved:  # once saved, the final fragment is on its way to everyone
            await self(run.snapshot())  # (taken right before it queues: see the class's docstring)

    async def release(self, run: CompletionRun | None, grace: float) -> None:
        """The socket closed (its consumer's disconnect). A run still streaming goes on for `grace`
        seconds without it (a reload reattaches to it), or is stopped now when `grace` is 0."""
        self.socket = None
        if run is None or run.task is None or run.task.done():
            return
        if not run.saved and grace > 0 and not liveness.stopping:  # a stopping server stops its runs
            await Detached(run, self, grace).start()
            return
        if not run.saved:  # a saved run is only sending its last fragments (to the other viewers)
            run.stop()  # closes the upstream request; the run saves the partial answer
        # asyncio.wait, not gather: if the server gives up on this consumer, the run still finishes.
        await asyncio.wait([run.task])


async def _refresh(sinks: list[RunSink]) -> None:
    """One pipelined read of every sink's group. A failure leaves them sending (the safe side)."""
    by_layer: dict[int, list[RunSink]] = {}
    for sink in sinks:
        by_layer.setdefault(id(sink.layer), []).append(sink)
    for group in by_layer.values():
        marks = [sink.announced for sink in group]
        try:
            counts = await group[0].layer.others_in_groups([(sink.group, sink.channel) for sink in group])
        except Exception:
            log.warning("could not read who watches %d conversation(s); sending to their groups", len(group), exc_info=True)
            for sink in group:
                sink.watched = True
            continue
        for sink, mark, others in zip(group, marks, counts):
            if others > 0:
                sink.watched = True
            elif sink.announced == mark:  # nobody announced themselves while we read
                sink.watched = False


async def _watch() -> None:
    """While this process streams runs on a counting layer: re-read their groups every WATCH_REFRESH."""
    while _watched:
        await asyncio.sleep(WATCH_REFRESH)
        if _watched:
            await _refresh(list(_watched))


async def owner_gone(layer, group: str, channel: str) -> None:
    """One of the owner's sockets closed: a run detached from an earlier one counts what is left."""
    if others_may_watch(layer, group, channel):
        await layer.group_send(group, {"type": "conversation.owner_gone", "channel": channel})


class Detached:
    """A run whose owner's socket closed mid-stream, listening on the conversation's group."""

    def __init__(self, run: CompletionRun, sink: RunSink, grace: float) -> None:
        self.run = run
        self.sink = sink
        self.grace = grace
        self.layer, self.group = sink.layer, sink.group
        self.owners: set[str] = set()  # channels of the owner's open sockets the run has heard of
        self.timer: asyncio.TimerHandle | None = None
        self.channel = ""
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        """From the closing socket's disconnect, before its channel leaves the group: from here on a
        stop or a resync always finds a member of the group that acts on it."""
        _detached.add(self)
        self._arm()
        try:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)
        except BaseException as error:  # no listening then: the timer still ends the run
            self.task = asyncio.create_task(self._until_done())
            if not isinstance(error, Exception):
                raise
            log.exception("completion %s: could not listen on the channel layer", self.run.completion.public_id)
            return
        self.sink.channel = self.channel
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        listening = asyncio.create_task(self._listen())
        try:
            # A page that connected meanwhile asked the closing socket for the live message, which it
            # could not answer: send it now; and ask the owner's other sockets, if any, to speak up.
            await self.sink.refresh()  # (its own channel is in the group now, the socket's is leaving)
            await self.sink.snapshot(self.run)
            if not self.run.saved and others_may_watch(self.layer, self.group, self.channel):
                await self.layer.group_send(self.group, {"type": "conversation.roll_call", "reply_to": self.channel})
        except Exception:
            log.exception("completion %s: a detached run could not reach its viewers", self.run.completion.public_id)
        try:
            await self._until_done()
        finally:
            listening.cancel()
            await asyncio.wait([listening])
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                log.exception("completion %s: could not leave the group", self.run.completion.public_id)

    async def _until_done(self) -> None:
        try:
            await asyncio.wait([self.run.task])
        finally:
            self._disarm()
            _detached.discard(self)

    async def _listen(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
                await self._on(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # a layer hiccup: keep listening (the timer is armed regardless)
                log.exception("completion %s: a detached run's listener failed", self.run.completion.public_id)
                await asyncio.sleep(1)

    async def _on(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "conversation.stop":
            if not self.run.saved and event.get("pane", "") in ("", getattr(self.run, "key", "")):
                self.run.stop()
        elif kind == "conversation.resync":
            if event.get("owner"):
                self._owner_here(event["owner"])
            self.sink.viewer_joined(event.get("channel"))
            await self.sink.snapshot(self.run)
        elif kind == "run.owner_here":
            self._owner_here(event["channel"])
        elif kind == "conversation.owner_gone":
            self.owners.discard(event.get("channel"))
            if not self.owners:
                self._arm()
        # Anything else (its own fragments, list redraws, access rechecks) is for sockets.

    def _owner_here(self, channel: str) -> None:
        self.owners.add(channel)
        self._disarm()

    def _arm(self) -> None:
        """The grace period starts (not again while it runs: it counts from the last owner's leaving)."""
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.grace, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if not self.run.saved and not self.run.task.done():
            log.info("completion %s: its owner left %g s ago; stopping it", self.run.completion.public_id, self.grace)
            self.run.stop()
