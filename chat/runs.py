"""One completion run: call the upstream, relay batched fragments, checkpoint, and always finalize.

The consumer starts `CompletionRun.run()` as its own asyncio task (Channels handles one
frame at a time, so a stream inside `receive()` would block Stop). Cancelling the task
closes the upstream request; whatever happens, the answer so far is saved with a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from chat import branches, fragments, liveness
from chat.crypto import DecryptionError
from chat.logprobs import LiveTokens
from chat.models import Completion, Message
from chat.upstream.chunks import (
    ChoiceFinished,
    ContentDelta,
    ReasoningDelta,
    StreamAccumulator,
    StreamMeta,
    ToolCallDelta,
    UsageReport,
)
from chat.upstream.errors import UpstreamError
from chat.upstream.families import FAMILIES
from chat.upstream.thinking import ThinkSplitter, split_thinking

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.04  # s: batch token fragments, never one frame per token
CHECKPOINT_INTERVAL = 2.0  # s: save the partial answer, by time, not per token (chat.liveness, batched)
# Under load the batches grow: each websocket frame costs the process far more than a token in
# it (Daphne, Twisted, a write). Up to BUSY[0] runs streaming in this process, 40 ms; from there
# longer, up to BUSY_FLUSH_INTERVAL at BUSY[1] runs and beyond (10 updates a second, still smooth).
BUSY_FLUSH_INTERVAL = 0.1
BUSY = (25, 100)


def flush_interval(live: int) -> float:
    """The batch interval when `live` runs stream in this process."""
    low, high = BUSY
    if live <= low:
        return FLUSH_INTERVAL
    return min(BUSY_FLUSH_INTERVAL, FLUSH_INTERVAL + (BUSY_FLUSH_INTERVAL - FLUSH_INTERVAL) * (live - low) / (high - low))


Emit = Callable[[str], Awaitable[None]]

# The Completion columns a run's final save writes.
FINAL_FIELDS = ["response_id", "response_model", "usage", "chunk_count", "response_body", "status", "error_status",
                "error_message", "finished_at", "duration_ms", "ttft_ms", "tokens_per_s"]


def describe_error(error: UpstreamError) -> str:
    """What the user sees for an upstream failure: the status and vLLM's own message."""
    hints = {401: "the endpoint rejected its API key (ask an admin)", 403: "the endpoint refused access (ask an admin)",
             404: "not found at this endpoint (is the model served there?)", 429: "the server is busy; retry shortly",
             503: "the server is busy or starting; retry shortly"}
    parts = []
    if error.status:
        parts.append(f"HTTP {error.status}")
    if error.status in hints:
        parts.append(hints[error.status])
    kind = {"connect": "could not connect", "stream": "error during the stream"}.get(error.phase)
    if not error.status and kind:
        parts.append(kind)
    if error.message:
        parts.append(error.message)
    return "Upstream error: " + " — ".join(parts)


class CompletionRun:
    """Streams one completion into one assistant message; `emit` sends HTML to every viewer."""

    def __init__(self, completion: Completion, message: Message, emit: Emit, opened: asyncio.Event | None = None) -> None:
        self.completion = completion
        self.message = message
        self.endpoint = completion.endpoint
        self._send = emit
        # A sink without viewers (a batch row, chat.batch) says renders = False: no fragments are made.
        self.renders = getattr(emit, "renders", True)
        self.opened = opened  # set once the placeholder is out: fragments that target it wait for it
        self.acc = StreamAccumulator()
        family = FAMILIES.get(self.endpoint.family, FAMILIES["generic"])
        self.think_tags = family.think_tags
        # Without a reasoning parser, thinking arrives inline as <think>…</think>: split it live.
        self.splitter = None if self.endpoint.reasoning_parser else ThinkSplitter(family.think_tags)
        self.tokens = LiveTokens(route_inline=self.splitter is not None)  # the live token view (logprobs)
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.pending_content: list[str] = []
        self.pending_reasoning: list[str] = []
        self.tools_dirty = False
        self.thinking_state = "none"  # none -> open (reasoning streaming) -> closed (answer started)
        self.started = 0.0
        self.first_token_at: float | None = None
        self.last_flush = 0.0
        self.last_checkpoint = 0.0
        self.checkpointed = (0, 0)  # how many content and reasoning pieces the last checkpoint held
        self.flush_handle: asyncio.TimerHandle | None = None
        self.choices: list[Message] = []  # the other choices when n > 1
        self.chunks = 0
        self.saved = False
        self.response: dict | None = None  # the answer of a non-streamed request
        self.stop_requested = False
        self.task: asyncio.Task | None = None  # set by start()

    async def emit(self, html: str) -> None:
        if self.opened is not None:
            await self.opened.wait()
        await self._send(html)

    # --- the task ---------------------------------------------------------------

    def start(self) -> asyncio.Task:
        """Run in a task of its own (Channels finishes one handler before reading the next frame).
        The process keeps the row fresh while it runs and stops it on shutdown (chat.liveness)."""
        self.task = asyncio.create_task(self.run())
        liveness.register(self)
        self.task.add_done_callback(lambda _: liveness.unregister(self))
        return self.task

    def stop(self) -> None:
        """Cancel the run's task. The flag makes the next chunk stop it even if the cancel was lost:
        Python 3.11's asyncio.wait_for (used inside libraries) returns normally when a cancel
        arrives just as the awaited call finishes."""
        self.stop_requested = True
        self.task.cancel()

    async def run(self) -> None:
        body = self.completion.request_body
        # last_flush stays 0: the first token goes out at once, later ones in 40 ms batches.
        self.started = self.last_checkpoint = time.monotonic()
        outcome, cancelled = {"status": Message.Status.COMPLETE}, False
        try:
            client = self.endpoint.client()
            if body.get("stream"):
                # aclosing: a cancel that lands in _handle (not in the generator) still closes the
                # upstream request at once, instead of whenever the suspended generator is collected.
                stream = client.stream_chat(body, headers=self.completion.request_headers, pace=self._pace)
                async with contextlib.aclosing(stream) as events:
                    async for event in events:
                        await self._handle(event)
                        if self.stop_requested:  # stop() was called but a library swallowed the cancel
                            raise asyncio.CancelledError
            else:
                self._take_response(await client.create_chat(body, headers=self.completion.request_headers))
        except asyncio.CancelledError:
            outcome, cancelled = {"status": Message.Status.CANCELLED}, True
        except UpstreamError as error:
            outcome = {"status": Message.Status.ERROR, "error": describe_error(error), "status_code": error.status}
        except DecryptionError as error:
            outcome = {"status": Message.Status.ERROR, "error": f"{error} Ask an admin to enter it again in the endpoint's settings."}
        except Exception:  # never a stack trace to the user; the log has it (no key: it is a header)
            log.exception("completion %s failed", self.completion.public_id)
            outcome = {"status": Message.Status.ERROR, "error": "Internal error while running the completion; see the server log."}
        # Outside the try: a cancel that lands while the final fragments go out must not
        # turn a finished answer into a stopped one (the save itself is shielded).
        await self._finish(**outcome)
        if cancelled:
            raise asyncio.CancelledError

    async def _handle(self, event) -> None:
        self.acc.feed(event)  # it also counts the chunks, for the inspector
        if isinstance(event, StreamMeta | UsageReport | ChoiceFinished):
            return
        if getattr(event, "choice", 0) != 0:
            return  # only the first choice streams live; all choices are saved at the end
        self.tokens.feed(event)
        if isinstance(event, ContentDelta):
            pieces = self.splitter.feed(event.text) if self.splitter else [("content", event.text)]
            for kind, text in pieces:
                self._add(kind, text)
        elif isinstance(event, ReasoningDelta):
            self._add("reasoning", event.text)
        elif isinstance(event, ToolCallDelta):
            self.tools_dirty = True
            self._first_token()
        await self._maybe_flush()

    def _add(self, kind: str, text: str) -> None:
        if not text:
            return
        self._first_token()
        (self.content if kind == "content" else self.reasoning).append(text)
        (self.pending_content if kind == "content" else self.pending_reasoning).append(text)

    def _first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    # --- batching and checkpoints ---------------------------------------------------

    async def _pace(self) -> None:
        """Between two reads of the stream (stream_chat's `pace`): wait until the next batch is due.
        Tokens that arrive meanwhile wait in the connection's buffer and are read, handled and sent
        together then: one wake-up of this task per batch, not per token (they would wait for the
        batch anyway). Never before the first batch (the first token goes out at once); a stop
        cancels the sleep."""
        if not self.last_flush:
            return
        delay = self.last_flush + flush_interval(liveness.live_count()) - time.monotonic()
        if delay <= 0:
            return
        if self.flush_handle is not None:  # this wake-up sends them, with what the next read adds
            self.flush_handle.cancel()
            self.flush_handle = None
        await asyncio.sleep(delay)
        # If the next read must wait (the stream paused), what is pending goes out now; when the read
        # finds data, its events reach _maybe_flush first and that flush cancels this one.
        self.flush_handle = asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.flush()))

    async def _maybe_flush(self) -> None:
        if not self.renders:
            return
        now = time.monotonic()
        interval = flush_interval(liveness.live_count())
        if now - self.last_flush >= interval:
            await self.flush()
        elif self.flush_handle is None:
            # Deltas are waiting: make sure they go out even if the stream pauses.
            loop = asyncio.get_running_loop()
            self.flush_handle = loop.call_later(self.last_flush + interval - now, lambda: asyncio.ensure_future(self.flush()))
        # Checkpoints: chat.liveness saves every due run's partial answer in one UPDATE per tick
        # (checkpoint_due), so 500 streams never queue 500 writes in the database thread.

    async def flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.renders:
            self.pending_content, self.pending_reasoning, self.tools_dirty = [], [], False
            return
        parts = []
        if self.pending_reasoning:
            if self.thinking_state == "none":
                self.thinking_state = "open"
                parts.append(fragments.thinking(self.message, "".join(self.reasoning), is_open=True))
            else:
                parts.append(fragments.append_reasoning(self.message, "".join(self.pending_reasoning)))
            self.pending_reasoning = []
        if self.pending_content:
            if self.thinking_state == "open":  # the answer started: fold the thinking away
                self.thinking_state = "closed"
                parts.append(fragments.thinking(self.message, "".join(self.reasoning), is_open=False))
            parts.append(fragments.append_content(self.message, "".join(self.pending_content)))
            self.pending_content = []
        if self.tools_dirty:
            self.tools_dirty = False
            choices = self.acc.result()["choices"]
            parts.append(fragments.tool_calls(self.message, choices[0]["message"]["tool_calls"] if choices else []))
        tokens = self.tokens.take()
        if tokens:
            parts.append(fragments.append_tokens(self.message, tokens))
        if parts:
            # Only a flush that sends starts the next 40 ms batch: an empty one (the role-only first
            # chunk) must not hold back the first token.
            self.last_flush = time.monotonic()
            await self.emit("".join(parts))

    def snapshot(self) -> str:
        """The streaming message as it stands, for a viewer who (re)connects mid-stream."""
        # Only what was already sent: the pending tail goes out with the next flush to everyone.
        # A copy: the saved message (and the final render made from it) must not take the live text.
        live = copy.copy(self.message)
        live.content = "".join(self.content[: len(self.content) - len(self.pending_content)])
        live.reasoning = "".join(self.reasoning[: len(self.reasoning) - len(self.pending_reasoning)])
        live.logprobs = self.tokens.logprobs()
        html = fragments.row([live], oob="outerHTML")
        if self.thinking_state == "open":  # the row folds it: keep it open while the reasoning streams
            html += fragments.thinking(live, live.reasoning, is_open=True)
        return html

    def checkpoint_due(self, now: float) -> Message | None:
        """The partial answer to save, when it changed and the last checkpoint is CHECKPOINT_INTERVAL
        old (chat.liveness batches them); None otherwise. Counted as saved from here on."""
        if self.saved or now - self.last_checkpoint < CHECKPOINT_INTERVAL:
            return None
        held = (len(self.content), len(self.reasoning))
        if held == self.checkpointed:
            return None
        self.last_checkpoint, self.checkpointed = now, held
        return Message(pk=self.message.pk, content="".join(self.content), reasoning="".join(self.reasoning))

    # --- finishing -----------------------------------------------------------------

    def _take_response(self, response: dict) -> None:
        """A non-streamed answer: fill the accumulator's view from the response."""
        self._first_token()
        self.acc.id, self.acc.model, self.acc.usage = response.get("id"), response.get("model"), response.get("usage")
        self.response = response

    async def _finish(self, status: str, error: str = "", status_code: int | None = None) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if self.splitter:
            for kind, text in self.splitter.flush():
                self._add(kind, text)
        result = self.response or self.acc.result()
        finished = time.monotonic()
        try:
            await asyncio.shield(self.persist(status, error, status_code, result, finished))
        except Exception:  # whatever came back, the answer must not stay "streaming"
            log.exception("completion %s: the final save failed", self.completion.public_id)
            status, error = Message.Status.ERROR, "Internal error while saving the answer; the text so far is kept. See the server log."
            await asyncio.shield(database_sync_to_async(self._save_failure)(error))
        self.saved = True  # from here on only fragments go out: a new run may start
        if not self.renders:
            return
        await self.flush()  # the last batch: the live view is whole before the final render replaces it
        # Markdown + Pygments can take tens of ms on a long answer: keep it off the event loop.
        final = await asyncio.to_thread(self.final_fragment)
        refresh = getattr(self._send, "refresh", None)  # who else watches, read after the save (chat.live)
        if refresh is not None:
            await refresh()
        await self.emit(final)

    def persist(self, *args) -> Awaitable[None]:
        """The final save, in the database thread (a comparison's panes save together: chat.compare_runs)."""
        return database_sync_to_async(self._save)(*args)

    def final_fragment(self) -> str:
        """The finished answer for every viewer (a comparison's pane renders its own: chat.compare_runs)."""
        return fragments.final(self.message, self.completion, self.choices)

    def _save_failure(self, error: str) -> None:
        """The final state when the full save failed: the streamed text as plain strings, an error."""
        self.message.content, self.message.reasoning = "".join(self.content), "".join(self.reasoning)
        self.message.tool_calls = self.message.logprobs = None
        self.message.status, self.message.error = Message.Status.ERROR, error
        Message.objects.filter(pk=self.message.pk).update(
            content=self.message.content, text_index=self.message.content, reasoning=self.message.reasoning,
            tool_calls=None, logprobs=None, status=Message.Status.ERROR, error=error,
        )
        Completion.objects.filter(pk=self.completion.pk).update(
            status=Completion.Status.ERROR, error_message=error, finished_at=timezone.now()
        )
        self.completion.status, self.completion.error_message = Completion.Status.ERROR, error

    @transaction.atomic
    def _save(self, status, error, status_code, result: dict, finished) -> None:
        """The final state in one transaction, in one trip to the database thread."""
        choices = result.get("choices") or []
        first = choices[0] if choices else None
        self._fill(self.message, first, streamed_text=True)
        self.message.status = status
        self.message.error = error
        self.message.save()
        for choice in choices[1:]:  # n > 1: the other choices, kept beside the first
            extra = Message(
                conversation=self.message.conversation, parent_id=self.message.parent_id,
                position=self.message.position, role="assistant",
                completion=self.completion, choice_index=choice.get("index", 0), status=status,
            )
            self._fill(extra, choice, streamed_text=False)
            extra.save()
            self.choices.append(extra)
        completion = self.completion
        # Cut to the columns' sizes: PostgreSQL refuses longer values (an odd upstream can send them).
        completion.response_id = (self.acc.id or "")[:200]
        completion.response_model = (self.acc.model or "")[:300]
        completion.usage = self.acc.usage
        completion.chunk_count = self.acc.chunks
        completion.response_body = result
        completion.status = {Message.Status.COMPLETE: Completion.Status.COMPLETE, Message.Status.CANCELLED: Completion.Status.CANCELLED}.get(status, Completion.Status.ERROR)
        completion.error_status = status_code
        completion.error_message = error
        completion.finished_at = timezone.now()
        completion.duration_ms = (finished - self.started) * 1000
        # Only a stream has a first token to time and a decode rate to measure: a non-streamed answer
        # arrives whole, so its "first token" is the end and tokens / ~0 s gave millions of tok/s.
        if self.completion.request_body.get("stream") and self.first_token_at is not None:
            completion.ttft_ms = (self.first_token_at - self.started) * 1000
            tokens = (self.acc.usage or {}).get("completion_tokens")
            generating = finished - self.first_token_at
            if tokens and generating > 0:
                completion.tokens_per_s = tokens / generating
        # Only what the run changed (the request body, saved before the upstream was called, stays).
        completion.save(update_fields=FINAL_FIELDS)
        saved = getattr(self._send, "saved", None)  # a batch row's result, in the answer's transaction
        if saved is not None:
            saved(self, status)
        if not self.renders:
            return
        # The final render replaces the placeholder's row: it keeps the ◀ i/N ▶ of a regenerated answer
        # (its alternatives: the messages beside it, read now, not the whole conversation).
        siblings = self.message.conversation.messages.filter(parent_id=self.message.parent_id, removed=False).order_by()  # (the Tree sorts)
        branches.Tree(siblings).annotate([self.message])

    def _fill(self, message: Message, choice: dict | None, streamed_text: bool) -> None:
        """Copy one choice onto a message; the first choice keeps the live-split text on cancel/error."""
        data = (choice or {}).get("message") or {}
        content, reasoning = data.get("content") or "", data.get("reasoning") or data.get("reasoning_content") or ""
        if self.splitter and not reasoning:
            reasoning, content = split_thinking(content, self.think_tags)
        if streamed_text and not choice:
            content, reasoning = "".join(self.content), "".join(self.reasoning)
        message.content = content
        message.reasoning = reasoning
        message.tool_calls = data.get("tool_calls") or None
        message.logprobs = (choice or {}).get("logprobs")
        message.finish_reason = ((choice or {}).get("finish_reason") or "")[:30]
