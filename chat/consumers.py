"""The conversation socket. Thin: authenticate, authorize every frame, validate, persist, start or stop a run.

Each frame is checked again (the user may have lost access since connecting). A run is its own
asyncio task because Channels finishes one handler before reading the next frame (Stop must get
through). Every viewer of the conversation is in its channel-layer group and gets the same fragments.
A run outlives its owner's socket for a grace period, reachable through the group (chat.live).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import transaction

from chat import branches, compare, compare_fragments, compare_runs, fragments, live, liveness, membership, nextrequest
from chat.forms import FrameForm
from chat.models import Completion, Conversation, Endpoint, Message
from chat.runs import CompletionRun

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
MAX_FRAME_CHARS = 8_000_000  # a frame: the composer's text plus the settings panel's values


def group_name(public_id) -> str:
    return f"conversation-{public_id}"


def user_group_name(user_pk) -> str:
    """Every socket of one user: told to re-check access when the user's teams change."""
    return f"user-{user_pk}"


async def admit(consumer: AsyncWebsocketConsumer, find) -> object | None:
    """A page socket's opening check, alike for every page: no user, closed as unauthenticated; then
    consumer.public_id is read from the URL and find() (the consumer's own lookup) must see the object,
    or the socket is closed as forbidden. The object found, or None once the socket is closed."""
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        await consumer.close(code=CLOSE_UNAUTHENTICATED)
        return None
    consumer.public_id = consumer.scope["url_route"]["kwargs"]["public_id"]
    found = await find()
    if found is None:
        await consumer.close(code=CLOSE_FORBIDDEN)
    return found


class Refused(Exception):
    """A frame that cannot be carried out; the message is shown inline to the sender."""


class Forbidden(Exception):
    """The user may no longer see this conversation: the socket is closed."""


READ_ONLY = "This conversation is read-only for you: only its owner can run or stop completions."


class ConversationConsumer(AsyncWebsocketConsumer):
    """Everyone allowed to see a conversation joins its group; its owner may also run completions."""

    # The runs this socket started, by pane public id ("" for a conversation's answer): a comparison
    # streams one per pane; Stop with a pane stops one, Stop without one stops them all.
    runs: dict[str, CompletionRun]
    kind = Conversation.Kind.CHAT
    is_owner = False
    error_shown = False  # this page's error line (#frame-error) shows a refusal, cleared by the next accepted send
    # Callable: this socket, and the group for every other viewer. The run emits through it too, and
    # it keeps the run going when this socket closes mid-stream (chat.live).
    broadcast: live.RunSink

    async def connect(self) -> None:
        conversation = await admit(self, self._conversation)
        if conversation is None:
            return
        user = self.scope["user"]
        self.is_owner = conversation.can_edit(user)
        self.kind, self.runs = conversation.kind, {}
        self.group = group_name(self.public_id)
        self.user_group = user_group_name(user.pk)
        self.broadcast = live.RunSink(self)
        # Renewed while the socket is open: a layer forgets members after its group_expiry.
        self.memberships = membership.Memberships(self.channel_layer, self.channel_name, [self.group, self.user_group])
        await self.memberships.join()
        await self.accept()
        # The page says which list it shows (?v=): send the list only if it has changed since.
        await self.send(text_data=await self._snapshot(known=self._page_version()))
        # If a run is in progress (in any process, or detached after a reload), it re-sends the live
        # message; a run waiting for its owner to come back learns that they are.
        # It also tells a run that someone else now watches (chat.live: fragments cross the layer only then).
        await self.channel_layer.group_send(
            self.group,
            {"type": "conversation.resync", "owner": self.channel_name if self.is_owner else "", "channel": self.channel_name},
        )

    async def disconnect(self, code: int) -> None:
        for run in getattr(self, "runs", {}).values():
            # Mid-stream, the run goes on for RUN_GRACE_SECONDS (a reload reattaches to it), or stops
            # now (0): the upstream request is closed and the partial answer saved.
            await self.broadcast.release(run, settings.RUN_GRACE_SECONDS)
        if hasattr(self, "memberships"):
            await self.memberships.leave()
            if self.is_owner:
                await live.owner_gone(self.channel_layer, self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        size = len(text_data or bytes_data or "")
        if size > MAX_FRAME_CHARS:  # the server's own cap (playground/serve.py) is above this one
            await self._refuse(
                f"That is too large to send ({size / 1e6:.1f} MB; the limit is {MAX_FRAME_CHARS // 1_000_000} MB). Nothing was sent."
            )
            return
        try:
            data = json.loads(text_data or "")
            if not isinstance(data, dict):
                raise ValueError
            # JSON escapes can make lone UTF-16 surrogates, which no database or page can hold.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            await self._refuse("That text holds an invalid character (a lone UTF-16 surrogate). Nothing was sent.")
            return
        except ValueError:
            await self._refuse("That frame was not understood (expected a JSON object).")
            return
        form = FrameForm(data)
        if not form.is_valid():
            errors = "; ".join(e for errs in form.errors.values() for e in errs)
            await self._refuse(errors)
            return
        try:
            await self._dispatch(form.cleaned_data)
        except (Forbidden, compare.Forbidden):  # access was withdrawn since connecting
            await self.close(code=CLOSE_FORBIDDEN)
        except (Refused, compare.CompareError) as refusal:
            await self._refuse(str(refusal))

    async def _dispatch(self, data: dict) -> None:
        action = data["action"]
        if action in ("stop", "resync"):
            conversation = await self._conversation()
            if conversation is None:
                raise Forbidden
            if action == "resync":
                await self.send(text_data=await self._snapshot())
            elif not conversation.can_edit(self.scope["user"]):
                raise Refused(READ_ONLY)
            else:
                pane = str(data["pane"]) if data.get("pane") else ""
                if not self._stop(pane):  # started from another tab or process: its consumer stops it
                    await self.channel_layer.group_send(self.group, {"type": "conversation.stop", "pane": pane})
            return
        if self.kind == Conversation.Kind.BATCH:  # its rows are run by a batch worker (chat.batch), never from a page
            raise Refused("This is a batch run's conversation: its answers come from the run. Nothing was sent.")
        if self.kind == Conversation.Kind.COMPARE:  # one message to every pane (chat.compare_runs)
            await compare_runs.send(self, data)
            return
        if self._running():
            raise Refused("A completion is already running; stop it first.")
        # One trip to the database thread: authorize and save.
        completion, reply, user_message, redraw = await self._start(action, data)
        if self.error_shown:  # a refusal shows on this page: the send went through
            self.error_shown = False
            await self.send(text_data=fragments.clear_frame_error())
        # The upstream request goes out first, and the opening fragments render while it waits for
        # its first token; the run's own fragments target the placeholder, so they wait for it.
        opened = asyncio.Event()
        run = self.runs[""] = CompletionRun(completion, reply, self.broadcast, opened=opened)
        run.start()
        try:
            # The opening renders what _start returned, without a query: in a worker thread, not
            # behind other sends' work in the database thread (100 sends at once would each wait
            # for all of them). A redraw reads the thread: in the database thread.
            opening = database_sync_to_async(self._redraw)(user_message, reply) if redraw else \
                asyncio.to_thread(fragments.opening, user_message, reply)
            # While it renders, the sink reads who else is in the group (after the save: a page that
            # joins later reads the new messages from the database).
            html, _ = await asyncio.gather(opening, self.broadcast.follow(run))
            await self.broadcast(html)
        finally:
            opened.set()

    async def _refuse(self, text: str) -> None:
        """Show why a frame was not carried out on this page's error line."""
        self.error_shown = True
        await self.send(text_data=fragments.frame_error(text))

    def _running(self) -> bool:
        """A run is streaming (once saved, it is only sending its last fragments)."""
        return any(not run.task.done() and not run.saved for run in self.runs.values())

    def _stop(self, pane: str = "") -> bool:
        """Stop this socket's streaming run of `pane`, or all of them ("" ); whether any was."""
        streaming = [run for key, run in self.runs.items() if (not pane or key == pane) and not run.task.done() and not run.saved]
        for run in streaming:
            run.stop()
        return bool(streaming)

    # --- group events ------------------------------------------------------------

    async def conversation_fragment(self, event: dict) -> None:
        if event.get("sender") != self.channel_name:
            await self.send(text_data=event["html"])

    async def conversation_stop(self, event: dict) -> None:
        self._stop(event.get("pane") or "")

    async def conversation_resync(self, event: dict) -> None:
        self.broadcast.viewer_joined(event.get("channel"))
        for run in list(self.runs.values()):  # once saved, the final fragment is on its way to everyone
            await self.broadcast.snapshot(run)

    async def conversation_changed(self, event: dict) -> None:
        """A comparison's panes or shared settings changed (chat.views_compare.announce): this page is
        redrawn for its own viewer (a teammate's has no owner controls)."""
        html = await self._changed()
        if html:
            await self.send(text_data=html)

    @database_sync_to_async
    def _changed(self) -> str:
        user = self.scope["user"]
        conversation = Conversation.objects.visible_to(user).filter(
            public_id=self.public_id, kind=Conversation.Kind.COMPARE).select_related("owner").first() if user.is_active else None
        if conversation is None:
            return ""  # no longer visible: conversation_recheck closes this socket
        return compare_fragments.changed(conversation, self.scope["user"])

    async def conversation_roll_call(self, event: dict) -> None:
        """A run whose owner's socket closed mid-stream asks whether the owner still has one open."""
        if self.is_owner:
            await self.channel_layer.send(event["reply_to"], {"type": "run.owner_here", "channel": self.channel_name})

    async def conversation_owner_gone(self, event: dict) -> None:
        """For a detached run (chat.live): sockets have nothing to do."""

    async def conversation_recheck(self, event: dict) -> None:
        """Shared, unshared or deleted, or the user's teams changed (chat.sharing): a viewer who lost
        access is shown nothing more."""
        # The scope's user was loaded at connect: read is_active again (a deactivation is a recheck too).
        await database_sync_to_async(self.scope["user"].refresh_from_db)(fields=["is_active"])
        if await self._conversation() is None:
            await self.send(text_data=event["html"])
            await self.close(code=CLOSE_FORBIDDEN)

    # --- database -------------------------------------------------------------------

    @database_sync_to_async
    def _conversation(self) -> Conversation | None:
        user = self.scope["user"]
        if not user.is_active:
            return None
        return (
            Conversation.objects.visible_to(user)
            .select_related("endpoint", "endpoint__api_key", "owner")
            .filter(public_id=self.public_id)
            .first()
        )

    def _page_version(self) -> str:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return (query.get("v") or [""])[0]

    @database_sync_to_async
    def _snapshot(self, known: str = "") -> str:
        conversation = Conversation.objects.get(public_id=self.public_id)
        if conversation.kind == Conversation.Kind.COMPARE:
            return compare_runs.snapshot(conversation, self.scope["user"], known)
        messages = conversation.thread(annotate=True)
        if known and known == fragments.list_version(messages):
            return fragments.synced()
        return fragments.message_list(messages, streaming=any(m.status == Message.Status.STREAMING for m in messages))

    @staticmethod
    def _redraw(user_message, reply) -> str:
        """The whole shown branch with the new placeholder (after an edit or a regenerate)."""
        messages = reply.conversation.thread(annotate=True)
        return fragments.message_list(messages, streaming=True) + fragments.title(reply.conversation)

    @database_sync_to_async
    def _start(self, action: str, data: dict):
        """Authorize, save what the user asked for and a Completion row before the upstream is
        called; returns the completion, the placeholder answer and the new user message (if any).
        The request is built from the settings the page showed (stored first when they changed).
        Every query here delays the first token: the owner's case takes nine, BEGIN and COMMIT
        included (tests/chat/test_send_queries.py)."""
        user = self.scope["user"]
        if not user.is_active:
            raise Forbidden
        with transaction.atomic():
            # The conversation (locked: one send at a time), its endpoint and key, in one query;
            # unordered (public_id is unique): .first()'s ORDER BY and LIMIT cost a third of it.
            conversation = next(iter(
                Conversation.objects.select_for_update(of=("self",)).select_related("endpoint__api_key")
                .filter(public_id=self.public_id).order_by()
            ), None)
            if conversation is None or conversation.owner_id != user.pk:
                visible = conversation is not None and Conversation.objects.visible_to(user).filter(pk=conversation.pk).exists()
                raise Refused(READ_ONLY) if visible else Forbidden
            try:
                form = nextrequest.panel_form(conversation, user, data.get("settings") or None)
            except nextrequest.NotSendable as e:
                raise Refused(str(e)) from None
            endpoint_checked = False
            if form is not None:
                loaded = conversation.endpoint  # with its key, which the run needs
                form.save(if_changed=True)
                if conversation.endpoint_id == getattr(loaded, "pk", None):
                    conversation.endpoint = loaded
                else:  # another endpoint, picked from those the user may use
                    conversation.endpoint = Endpoint.objects.select_related("api_key").get(pk=conversation.endpoint_id)
                    endpoint_checked = True
            endpoint = conversation.endpoint
            if endpoint is None or not endpoint.is_active:
                raise Refused("This conversation has no active endpoint; pick one in the settings.")
            # (A separate query: folded into the one above as an Exists annotation, it cost more to compile.)
            if not endpoint_checked and not Endpoint.objects.usable_by(user).filter(pk=endpoint.pk).exists():
                raise Refused("You may not use this endpoint; pick another one in the settings.")
            tree = branches.load(conversation, related=())
            if self._live_stream(conversation, tree.messages):
                raise Refused("A completion is already running in this conversation.")
            shown = conversation.thread_of(tree)
            try:
                plan = nextrequest.plan(shown, action, content=data.get("content") or "", message=data.get("message"))
                values = nextrequest.option_values(conversation, form, plan=plan, tool_choice=data.get("tool_choice") or "")
                body = nextrequest.build(conversation, plan, values, model=endpoint.model_id)
            except nextrequest.NotSendable as e:
                raise Refused(str(e)) from None
            parent, user_message = plan.parent, None
            if plan.content is not None:
                user_message = branches.add_child(
                    conversation, parent, siblings_selected=tree.has_selected_child(parent), role="user", content=plan.content
                )
                parent = user_message
            if not conversation.title and user_message is not None:
                conversation.title = user_message.text[:80]
            conversation.save(update_fields=["title", "updated_at"])
            completion = Completion.objects.create(
                conversation=conversation, endpoint=endpoint, user=user, request_body=body,
                status=Completion.Status.STREAMING, worker=liveness.worker_id(),
            )
            reply = branches.add_child(
                conversation, parent, siblings_selected=user_message is None and tree.has_selected_child(parent),
                role="assistant", completion=completion, status=Message.Status.STREAMING,
            )
        # A send or run continues the shown list; an edit or a regenerate changes it: send it whole.
        redraw = action in ("edit", "regenerate")
        return completion, reply, user_message, redraw

    @staticmethod
    def _live_stream(conversation: Conversation, messages) -> bool:
        """Whether an answer is streaming now. One left by a server process that stopped or died
        is finalized as interrupted first (chat.liveness), so the conversation goes on."""
        if not any(m.status == Message.Status.STREAMING for m in messages):
            return False
        liveness.finalize_orphans(conversation.messages.all())
        return conversation.messages.filter(status=Message.Status.STREAMING).exists()
