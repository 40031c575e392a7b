"""Comparisons: one shared message list sent to 2–6 panes, each an endpoint plus setting overrides.

A comparison is a `Conversation` of kind "compare": the history, search, sharing, access rules,
fork, export, delete and the live group are the conversation's. Shared messages have no pane;
each pane's answers carry it. A pane's request is the shared messages plus that pane's own
answers, with the pane's endpoint and its values (family defaults of its endpoint, then the
comparison's settings, then the pane's overrides), built by the same payload builder as a send.
Every pane answer is an ordinary `Completion` run by the same `CompletionRun` (chat.runs).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from dataclasses import dataclass, field

from django.db import transaction

from chat import branches, liveness
from chat.forms import family_defaults
from chat.models import Completion, Conversation, Endpoint, Message, Pane
from chat.upstream.options import OPTIONS, OPTIONS_BY_NAME, OptionError, validate_value
from chat.upstream.payload import PayloadError, build_payload

MIN_PANES, MAX_PANES = 2, 6
THINKING = "enable_thinking"  # a pseudo-option: chat_template_kwargs.enable_thinking
# What a sweep may vary: the numeric sampling options and the seed.
SWEEPABLE = [o.name for o in OPTIONS if set(o.types) & {"number", "integer"}]
# Not settable per pane: they define the request's shape, not a setting to compare.
NOT_OVERRIDABLE = {"messages", "model", "stream"}


class CompareError(ValueError):
    """A request about a comparison that cannot be carried out; the message is for the user."""


# --- overrides: "temperature=1.0, enable_thinking=off" ----------------------------------------------


def _split_top(text: str, separators: str) -> list[str]:
    """Split at separators outside brackets and quotes (a value may be a JSON list or object)."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            if ch == quote and (not current or current[-1] != "\\"):
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch in separators and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_value(text: str):
    """A typed value: JSON when it reads as JSON; on/off, yes/no; unset/none = unset; else a string."""
    lowered = text.strip().lower()
    if lowered in ("on", "yes", "true"):
        return True
    if lowered in ("off", "no", "false"):
        return False
    if lowered in ("unset", "none", "null"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text.strip().strip("'\"")
    if isinstance(value, float) and not math.isfinite(value):
        raise CompareError(f"{text!r} is not a finite number.")
    return value


def check_override(name: str, value):
    """The value as it will be sent; CompareError says what is wrong with it."""
    if name == THINKING:
        if value is not None and not isinstance(value, bool):
            raise CompareError(f"{THINKING} must be on or off (got {value!r}).")
        return value
    if name not in OPTIONS_BY_NAME or name in NOT_OVERRIDABLE:
        raise CompareError(f"{name!r} is not a setting a pane can change (e.g. temperature, top_p, seed, max_tokens, logprobs, {THINKING}).")
    try:
        return validate_value(name, value)
    except OptionError as e:
        raise CompareError(f"{name}: {e.message}") from None


def parse_overrides(text: str) -> dict:
    """"name=value" pairs separated by commas, semicolons or new lines; each checked as a send would."""
    overrides: dict = {}
    for item in _split_top(text or "", ",;\n"):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise CompareError(f"{item!r} is not name=value (e.g. temperature=0.7, {THINKING}=off).")
        overrides[name] = check_override(name, parse_value(raw))
    return overrides


def _show(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "unset"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def chips(overrides: dict) -> list[str]:
    """The overrides as the pane shows them: "temperature 1.0", "enable_thinking off"."""
    return [f"{name} {_show(value)}" for name, value in overrides.items()]


def shared_chips(conversation: Conversation) -> list[str]:
    """The comparison's own settings as chips: its options, its tools by name, its response format."""
    shown = chips(conversation.options)
    names = [t.get("function", {}).get("name", "?") for t in conversation.tools or [] if isinstance(t, dict)]
    if names:
        shown.append("tools " + ", ".join(names))
    if isinstance(conversation.response_format, dict):
        shown.append(f"response_format {conversation.response_format.get('type', '?')}")
    return shown


def overrides_text(overrides: dict) -> str:
    """The overrides as they are typed (to edit them again)."""
    return ", ".join(f"{name}={_show(value) if not isinstance(value, str) else json.dumps(value)}" for name, value in overrides.items())


def merge(values: dict, overrides: dict) -> dict:
    """Option values with overrides on top (None unsets; enable_thinking goes into chat_template_kwargs)."""
    merged = dict(values)
    for name, value in overrides.items():
        if name == THINKING:
            kwargs = dict(merged.get("chat_template_kwargs") or {})
            if value is None:
                kwargs.pop(THINKING, None)
            else:
                kwargs[THINKING] = value
            merged["chat_template_kwargs"] = kwargs or None
        elif value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return {k: v for k, v in merged.items() if v is not None}


def pane_values(conversation: Conversation, pane: Pane) -> dict:
    """What a pane sends: its endpoint's family defaults, the comparison's settings, its overrides."""
    base = family_defaults(pane.endpoint) if pane.endpoint else {}
    shared = {**conversation.options}
    if conversation.tools:
        shared["tools"] = conversation.tools
    if conversation.response_format:
        shared["response_format"] = conversation.response_format
    return merge(base, {**shared, **pane.overrides})


# --- sweeps ---------------------------------------------------------------------------------------


def sweep_values(name: str, text: str) -> list:
    """"0, 0.7, 1.2" or "1..4" (whole numbers, both ends included): each a checked value."""
    if name not in SWEEPABLE:
        raise CompareError(f"Pick a setting to sweep ({', '.join(SWEEPABLE)}).")
    text = (text or "").strip()
    if not text:
        raise CompareError("Give the values to sweep, e.g. 0, 0.7, 1.2 or 1..4.")
    span = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)", text)
    if span:
        low, high = int(span[1]), int(span[2])
        if high < low:
            raise CompareError(f"{text}: the range must go up (e.g. 1..4).")
        if high - low + 1 > MAX_PANES:
            raise CompareError(f"{text} makes {high - low + 1} panes; a comparison has at most {MAX_PANES}.")
        raw = list(range(low, high + 1))
    else:
        raw = [parse_value(part) for part in _split_top(text, ",;\n")]
    values = []
    for value in raw:
        checked = check_override(name, value)
        if checked is None:
            raise CompareError(f"{name}: each value must be set (got unset).")
        if checked in values:
            raise CompareError(f"{name} = {_show(checked)} is listed twice.")
        values.append(checked)
    if len(values) < 2:
        raise CompareError("A sweep needs at least two values.")
    return values


# --- building comparisons -----------------------------------------------------------------------


def new_comparison(user, panes: list[tuple[Endpoint, dict]], *, title: str = "", options: dict | None = None,
                   system_prompt: str = "", source: Conversation | None = None) -> Conversation:
    if not MIN_PANES <= len(panes) <= MAX_PANES:
        raise CompareError(f"A comparison has {MIN_PANES} to {MAX_PANES} panes (got {len(panes)}).")
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user, kind=Conversation.Kind.COMPARE, endpoint=panes[0][0], title=title[:200],
            options=options or {}, system_prompt=system_prompt, forked_from=source,
        )
        for position, (endpoint, overrides) in enumerate(panes):
            Pane.objects.create(conversation=conversation, position=position, endpoint=endpoint, overrides=overrides)
    return conversation


def add_panes(conversation: Conversation, panes: list[tuple[Endpoint, dict]]) -> list[Pane]:
    with transaction.atomic():
        existing = list(Conversation.objects.select_for_update().get(pk=conversation.pk).panes.all())
        if len(existing) + len(panes) > MAX_PANES:
            raise CompareError(f"A comparison has at most {MAX_PANES} panes: this one has {len(existing)}; remove some first.")
        start = max((p.position for p in existing), default=-1) + 1
        return [Pane.objects.create(conversation=conversation, position=start + i, endpoint=e, overrides=o)
                for i, (e, o) in enumerate(panes)]


def streaming(conversation: Conversation) -> bool:
    liveness.finalize_orphans(conversation.messages.all())
    return conversation.messages.filter(status=Message.Status.STREAMING).exists()


# --- the board: shared messages in turns, each with one answer per pane ------------------------------


@dataclass
class Turn:
    shared: list  # the shared messages of this turn (a user message, or several added at once)
    answers: dict = field(default_factory=dict)  # pane pk -> [answer messages] (n choices side by side)

    @property
    def shared_rows(self) -> list[list]:
        return [[m] for m in self.shared]

    @property
    def key(self) -> str:
        return str(self.shared[-1].public_id) if self.shared else "start"


def mark_source(conversation: Conversation) -> Conversation:
    """Whether its answers offer *Continue in the source conversation*: it was made (Replay on…) from a
    conversation of its own owner; the view checks again. Read by every render of an answer, the
    socket's too (which has no user: compare.js drops the action on read-only pages)."""
    conversation.continues_source = bool(conversation.forked_from_id) and Conversation.objects.filter(
        pk=conversation.forked_from_id, kind=Conversation.Kind.CHAT, owner_id=conversation.owner_id).exists()
    return conversation


def messages_of(conversation: Conversation) -> list[Message]:
    messages = list(conversation.messages.filter(removed=False).select_related("completion"))
    for m in messages:
        m.conversation = conversation
    return sorted(messages, key=lambda m: (m.position, m.created_at, m.choice_index, m.pk))


def turns(messages: list[Message]) -> list[Turn]:
    result: list[Turn] = []
    for m in messages:
        if m.pane_id is None:
            if not result or result[-1].answers:
                result.append(Turn([]))
            result[-1].shared.append(m)
        else:
            if not result:
                result.append(Turn([]))
            result[-1].answers.setdefault(m.pane_id, []).append(m)
    return result


def pane_thread(messages: list[Message], pane: Pane) -> list[Message]:
    """What this pane's next request answers: the shared messages and this pane's own answers."""
    return [m for m in messages if m.pane_id is None or m.pane_id == pane.pk]


# --- sending (in the database thread, from the socket) ----------------------------------------------


@dataclass
class Started:
    user_message: Message | None  # None: a replay (its messages were saved with the comparison)
    runs: list  # (pane, completion, reply) for each pane that runs
    failed: list  # (pane, reply) for panes that could not be sent (the reply holds the error)
    problem: str = ""


class Forbidden(Exception):
    """The user may not see this comparison (any more)."""


def _lock_for_owner(public_id, user) -> Conversation:
    """The comparison locked (inside the caller's transaction) for a send by its owner. A viewer who is
    not the owner is told it is read-only; anyone who cannot see it gets Forbidden, as if it were gone."""
    conversation = (
        Conversation.objects.select_for_update(of=("self",)).filter(public_id=public_id, kind=Conversation.Kind.COMPARE).first()
    )
    if conversation is None or conversation.owner_id != user.pk:
        if conversation is not None and Conversation.objects.visible_to(user).filter(pk=conversation.pk).exists():
            raise CompareError("This comparison is read-only for you: only its owner can send or stop.")
        raise Forbidden
    return conversation


def start_send(public_id, user, content: str) -> Started:
    """Save the shared user message, and for every pane a Completion with its exact request and a
    placeholder answer, before any upstream is called. A pane that cannot be sent (its endpoint
    gone, not usable by the user, an invalid combination) gets its error as its answer; the others run."""
    if not user.is_active:
        raise Forbidden
    with transaction.atomic():
        conversation = _lock_for_owner(public_id, user)
        mark_source(conversation)
        panes = list(conversation.panes.select_related("endpoint__api_key"))
        if len(panes) < MIN_PANES:
            raise CompareError(f"Add at least {MIN_PANES} panes first.")
        messages = messages_of(conversation)
        if any(m.status == Message.Status.STREAMING for m in messages) and streaming(conversation):
            raise CompareError("The panes are still answering; stop them first.")
        usable = set(Endpoint.objects.usable_by(user).filter(pk__in=[p.endpoint_id for p in panes if p.endpoint_id]).values_list("pk", flat=True))
        # The new message follows the thread as Conversation.thread() walks it (history, fork, search).
        parent = branches.tail(conversation.thread_of(branches.Tree(messages)))
        user_message = branches.add_child(conversation, parent, siblings_selected=False, role="user", content=content)
        user_message.conversation = conversation
        started = Started(user_message, [], [])
        # Every row is written in two queries (bulk), not two per pane: this is before any first token.
        planned = []
        for pane in panes:
            problem, body = "", None
            endpoint = pane.endpoint
            if endpoint is None or not endpoint.is_active:
                problem = "This pane's endpoint is gone or inactive; remove the pane or add another."
            elif endpoint.pk not in usable:
                problem = f"You may not use {endpoint.name}; remove this pane."
            else:
                api = conversation.api_messages([*pane_thread(messages, pane), user_message])
                try:
                    body = build_payload(endpoint.model_id, api, pane_values(conversation, pane))
                except PayloadError as e:
                    problem = f"Not sent: the request is not valid: {e}"
            completion = None if body is None else Completion(
                conversation=conversation, endpoint=endpoint, user=user, request_body=body,
                status=Completion.Status.STREAMING, worker=liveness.worker_id(),
            )
            planned.append((pane, completion, problem))
        Completion.objects.bulk_create([c for _, c, _ in planned if c is not None])
        replies = Message.objects.bulk_create([
            Message(conversation=conversation, parent=user_message, position=user_message.position + 1, role="assistant",
                    completion=completion, pane=pane,  # every pane's answer is searched (is_active)
                    status=Message.Status.STREAMING if completion else Message.Status.ERROR, error=problem)
            for pane, completion, problem in planned
        ])
        for (pane, completion, _), reply in zip(planned, replies):
            reply.conversation, reply.pane = conversation, pane
            if completion is not None:
                started.runs.append((pane, completion, reply))
            else:
                started.failed.append((pane, reply))
        if not conversation.title:
            conversation.title = f"Compare: {user_message.text[:70]}"
        conversation.save(update_fields=["title", "updated_at"])
    return started


# --- Replay on…: the exact stored request, only `model` changed -------------------------------------


def replay(source: Completion, endpoint: Endpoint, user) -> Conversation:
    """A comparison of the source answer and the same request body for `endpoint` (only `model`
    changed), saved as a pending Completion: the comparison's page starts it over its socket
    (start_pending), so that it streams there like any pane."""
    body = copy.deepcopy(source.request_body)
    body["model"] = endpoint.model_id
    original = next((m for m in source.messages.order_by("choice_index") if m.role == "assistant"), None)
    values = {k: v for k, v in source.request_body.items() if k not in ("model", "messages")}
    options = {k: v for k, v in values.items() if k in OPTIONS_BY_NAME and k not in ("tools", "response_format")}
    unknown = {k: v for k, v in values.items() if k not in OPTIONS_BY_NAME}
    if unknown:
        options["extra_body"] = {**(options.get("extra_body") or {}), **unknown}
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user, kind=Conversation.Kind.COMPARE, endpoint=endpoint, forked_from=source.conversation,
            title=f"Replay: {source.conversation.title or 'a completion'}"[:200], options=options,
            tools=values.get("tools") or [], response_format=values.get("response_format"),
        )
        left = Pane.objects.create(conversation=conversation, position=0, endpoint=source.endpoint)
        right = Pane.objects.create(conversation=conversation, position=1, endpoint=endpoint)
        # The shared messages are the request's (a system message first becomes the system prompt).
        parent = None
        sent = list(source.request_body.get("messages") or [])
        if sent and sent[0].get("role") == "system" and isinstance(sent[0].get("content"), str):
            conversation.system_prompt = sent.pop(0)["content"]
            conversation.save(update_fields=["system_prompt"])
        for m in sent:
            parent = branches.add_child(
                conversation, parent, siblings_selected=False, role=m.get("role", "user"), content=m.get("content") or "",
                tool_calls=m.get("tool_calls"), tool_call_id=m.get("tool_call_id", ""), name=m.get("name", ""),
            )
        # The source answer, as it was: its Completion copied (the exact body, response and timings).
        kept = Completion.objects.create(**{
            f.attname: getattr(source, f.attname) for f in Completion._meta.concrete_fields
            if f.name not in ("id", "public_id", "conversation")
        }, conversation=conversation)
        position = parent.position + 1 if parent else 0
        if original is not None:
            Message.objects.create(**{
                f.attname: getattr(original, f.attname) for f in Message._meta.concrete_fields
                if f.name not in ("id", "public_id", "conversation", "parent", "completion", "pane", "position", "is_active", "created_at", "updated_at")
            }, conversation=conversation, parent=parent, completion=kept, pane=left, position=position, is_active=True)
        Completion.objects.create(conversation=conversation, endpoint=endpoint, user=user, request_body=body,
                                  status=Completion.Status.PENDING)
    return conversation


def start_pending(public_id, user) -> Started:
    """Start a replay saved by `replay`: its placeholder answer in the replay pane (the last pane on
    the completion's endpoint), after the messages its body sends; the body is sent as stored."""
    if not user.is_active:
        raise Forbidden
    with transaction.atomic():
        conversation = _lock_for_owner(public_id, user)
        pending = list(conversation.completions.filter(status=Completion.Status.PENDING, messages__isnull=True)
                       .select_related("endpoint__api_key"))
        if not pending:
            raise CompareError("Nothing is waiting to be replayed here.")
        mark_source(conversation)
        messages = messages_of(conversation)
        shared = [m for m in messages if m.pane_id is None]
        parent = shared[-1] if shared else None
        panes = list(conversation.panes.all())
        started = Started(None, [], [])
        for completion in pending:
            pane = next((p for p in reversed(panes) if p.endpoint_id == completion.endpoint_id), None)
            endpoint = completion.endpoint
            problem = ""
            if pane is None or endpoint is None or not endpoint.is_active:
                problem = "The replay's endpoint is gone or inactive."
            elif not Endpoint.objects.usable_by(user).filter(pk=endpoint.pk).exists():
                problem = f"You may not use {endpoint.name} any more."
            if problem:
                Completion.objects.filter(pk=completion.pk).update(status=Completion.Status.ERROR, error_message=problem)
                started.problem = problem
                continue
            Completion.objects.filter(pk=completion.pk).update(status=Completion.Status.STREAMING, worker=liveness.worker_id())
            completion.status, completion.worker = Completion.Status.STREAMING, liveness.worker_id()
            reply = Message.objects.create(
                conversation=conversation, parent=parent, position=parent.position + 1 if parent else 0, role="assistant",
                completion=completion, pane=pane, status=Message.Status.STREAMING,
            )
            reply.conversation, reply.pane = conversation, pane
            started.runs.append((pane, completion, reply))
        conversation.save(update_fields=["updated_at"])
    if started.problem and not started.runs:
        raise CompareError(f"Not replayed: {started.problem}")
    return started


# --- Continue with this answer -------------------------------------------------------------------


def continue_in_new(answer: Message, user) -> Conversation:
    """A new conversation on the pane's endpoint and values, holding the pane's thread up to this answer."""
    comparison, pane = answer.conversation, answer.pane
    messages = [m for m in pane_thread(messages_of(comparison), pane) if m.position <= answer.position
                and (m.pane_id is None or m.pk == answer.pk or m.position < answer.position)]
    values = pane_values(comparison, pane)
    with transaction.atomic():
        target = Conversation.objects.create(
            owner=user, endpoint=pane.endpoint, system_prompt=comparison.system_prompt, forked_from=comparison,
            title=(comparison.title or "Continued")[:200], tools=values.pop("tools", None) or [],
            response_format=values.pop("response_format", None), options=values,
        )
        parent = None
        for m in messages:
            parent = branches.add_child(
                target, parent, siblings_selected=False, role=m.role, content=m.content, reasoning=m.reasoning,
                tool_calls=m.tool_calls, tool_call_id=m.tool_call_id, name=m.name, logprobs=m.logprobs,
                finish_reason=m.finish_reason, completion=m.completion, status=m.status, error=m.error,
            )
    return target


def continue_in_source(answer: Message, source: Conversation) -> Message:
    """The answer becomes the next assistant message of the source conversation."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=source.pk)
        if locked.messages.filter(status=Message.Status.STREAMING).exists() and streaming(locked):
            raise CompareError("An answer is streaming in that conversation; stop it first.")
        parent = branches.tail(locked.thread())
        message = branches.add_child(
            locked, parent, siblings_selected=parent is not None and bool(locked.messages.filter(parent=parent, is_active=True).exists()),
            role="assistant", content=answer.content, reasoning=answer.reasoning, tool_calls=answer.tool_calls,
            logprobs=answer.logprobs, finish_reason=answer.finish_reason, completion=answer.completion,
            status=answer.status, error=answer.error,
        )
        locked.save(update_fields=["updated_at"])
    return message


# --- diffs -----------------------------------------------------------------------------------------

_WORDS = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)
MAX_DIFF_CHARS = 200_000


def text_diff(a: str, b: str) -> list[tuple[str, str]]:
    """A word-level diff: [(op, text)] with op "equal", "delete" (only in a) or "insert" (only in b)."""
    wa, wb = _WORDS.findall(a[:MAX_DIFF_CHARS]), _WORDS.findall(b[:MAX_DIFF_CHARS])
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("equal", "".join(wa[i1:i2])))
        else:
            if i2 > i1:
                out.append(("delete", "".join(wa[i1:i2])))
            if j2 > j1:
                out.append(("insert", "".join(wb[j1:j2])))
    return out


def diff_ratio(a: str, b: str) -> float:
    wa, wb = _WORDS.findall(a[:MAX_DIFF_CHARS]), _WORDS.findall(b[:MAX_DIFF_CHARS])
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def visible(token: str) -> str:
    """A token as the divergence view shows it: white space made visible (a newline is ↵)."""
    shown = token.replace("\n", "↵").replace("\t", "⇥")
    return shown.replace(" ", "␣") if not shown.strip() else shown


@dataclass
class Side:
    token: str  # shown with visible white space
    prob: float
    alternatives: list  # [(token, prob, chosen)]


@dataclass
class Divergence:
    index: int  # the token position (0-based) where the answers part
    prefix: str  # the text both answers share before it
    a: Side | None
    b: Side | None  # None: that answer ended there


def _tokens(logprobs) -> list[dict] | None:
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return [t for t in content if isinstance(t, dict)] if isinstance(content, list) else None


def _prob(logprob) -> float:
    try:
        return math.exp(float(logprob))
    except (TypeError, ValueError, OverflowError):
        return 0.0


def _side(entry: dict) -> Side:
    token = str(entry.get("token", ""))
    alternatives = []
    for alt in entry.get("top_logprobs") or []:
        if isinstance(alt, dict):
            alternatives.append((visible(str(alt.get("token", ""))), _prob(alt.get("logprob")), str(alt.get("token", "")) == token))
    if not any(chosen for *_, chosen in alternatives):
        alternatives.insert(0, (visible(token), _prob(entry.get("logprob")), True))
    return Side(visible(token), _prob(entry.get("logprob")), alternatives)


def first_divergence(logprobs_a, logprobs_b) -> Divergence | None | bool:
    """Where two answers' token lists part, with both sides' alternatives there. None when either
    has no logprobs; False when they are the same token for token."""
    ta, tb = _tokens(logprobs_a), _tokens(logprobs_b)
    if not ta or not tb:
        return None
    for i in range(max(len(ta), len(tb))):
        a = ta[i] if i < len(ta) else None
        b = tb[i] if i < len(tb) else None
        if a is None or b is None or a.get("token") != b.get("token"):
            prefix = "".join(str(t.get("token", "")) for t in ta[:i])
            return Divergence(i, prefix[-160:], _side(a) if a else None, _side(b) if b else None)
    return False


# --- export -------------------------------------------------------------------------------------------


def export_data(conversation: Conversation) -> dict:
    """Every pane with its settings and the exact request each of its answers sent (never a key)."""
    messages = messages_of(conversation)
    panes = list(conversation.panes.select_related("endpoint"))
    return {
        "kind": "compare",
        "title": str(conversation),
        "system_prompt": conversation.system_prompt,
        "options": conversation.options,
        "panes": [
            {
                "pane": i + 1,
                "endpoint": pane.endpoint.name if pane.endpoint else None,
                "model": pane.endpoint.model_id if pane.endpoint else None,
                "overrides": pane.overrides,
                "messages": [
                    {"role": m.role, "content": m.content, **({"reasoning": m.reasoning} if m.reasoning else {}),
                     **({"tool_calls": m.tool_calls} if m.tool_calls else {}), **({"error": m.error} if m.error else {}),
                     **({"request": m.completion.request_body} if m.pane_id and m.completion else {})}
                    for m in pane_thread(messages, pane)
                ],
            }
            for i, pane in enumerate(panes)
        ],
    }


def export_markdown(conversation: Conversation) -> str:
    from chat.sharing import escape_html, fence

    data_panes = list(conversation.panes.select_related("endpoint"))
    names = {p.pk: f"Pane {i + 1}: {p.endpoint.name_and_model if p.endpoint else '(no endpoint)'}"
             + (f" ({', '.join(chips(p.overrides))})" if p.overrides else "") for i, p in enumerate(data_panes)}
    lines = [f"# {escape_html(str(conversation))}", "", "Comparison of:", ""]
    lines += [f"- {escape_html(name)}" for name in names.values()]
    lines += ["", "## Shared settings", "", fence(json.dumps(conversation.options, indent=2, ensure_ascii=False), "json"), ""]
    if conversation.system_prompt:
        lines += ["## System", "", escape_html(conversation.system_prompt), ""]
    for turn in turns(messages_of(conversation)):
        for m in turn.shared:
            lines += [f"## {m.get_role_display()}", "", escape_html(m.text), ""]
        for pane in data_panes:
            for m in turn.answers.get(pane.pk, []):
                lines += [f"### {escape_html(names[pane.pk])}", ""]
                if m.reasoning:
                    lines += ["<details><summary>Thinking</summary>", "", escape_html(m.reasoning), "", "</details>", ""]
                if m.text:
                    lines += [escape_html(m.text), ""]
                if m.error:
                    lines += [f"> Error: {escape_html(m.error)}", ""]
    return "\n".join(lines)


# --- fork -------------------------------------------------------------------------------------------


def fork(source: Conversation, *, user, endpoint: Endpoint) -> Conversation:
    """A private copy: the panes (an endpoint the user may not use is replaced by `endpoint`), the
    settings and every shown message with its pane; completions stay with the source."""
    usable = set(Endpoint.objects.usable_by(user).values_list("pk", flat=True))
    with transaction.atomic():
        copy_ = Conversation.objects.create(
            owner=user, kind=Conversation.Kind.COMPARE, endpoint=endpoint, title=source.title, options=source.options,
            system_prompt=source.system_prompt, tools=source.tools, response_format=source.response_format,
            canned_results=source.canned_results, forked_from=source,
        )
        panes = {}
        for pane in source.panes.all():
            panes[pane.pk] = Pane.objects.create(
                conversation=copy_, position=pane.position, overrides=pane.overrides,
                endpoint_id=pane.endpoint_id if pane.endpoint_id in usable else endpoint.pk,
            )
        copies: dict[int, Message] = {}
        for m in messages_of(source):
            if m.status == Message.Status.STREAMING:
                continue
            copies[m.pk] = Message.objects.create(
                conversation=copy_, parent=copies.get(m.parent_id), position=m.position, role=m.role, content=m.content,
                reasoning=m.reasoning, tool_calls=m.tool_calls, tool_call_id=m.tool_call_id, name=m.name,
                logprobs=m.logprobs, finish_reason=m.finish_reason, choice_index=m.choice_index, status=m.status,
                error=m.error, is_active=m.is_active, pane=panes.get(m.pane_id),
            )
    return copy_
