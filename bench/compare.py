"""Compare benchmark (issue 15): a 6-pane comparison relaying 200 tokens per pane at 50 tokens/s,
against a direct client sending the same 6 requests at once to the same upstream, in the same run.

    .venv/bin/python bench/compare.py               # 5 rounds (~1 min on 2 cores)
    .venv/bin/python bench/compare.py --rounds 9

The setup is bench/relay.py's "single" one (SQLite + the in-memory channel layer, one Daphne
process started by the launcher `make run` uses) and its upstream (bench/upstream.py, its own
process: 20 ms before each token under /v1). Each round: one send on a conversation's socket (one
answer), then one send on a comparison's socket (six panes, one CompletionRun each on that socket),
then six direct streams at once. Requests carry `max_tokens` 200 with `ignore_eos`.

Definitions (per pane | direct stream):
  TTFT       send frame → the pane's first content-append frame | request start → first content delta
  tokens/s   200 / (the pane's final frame − its first content frame) | 200 / (last delta − first delta)
  CPU        utime+stime of the Daphne process from the send to the last final frame, per 1,000
             upstream SSE events (counted by the direct client for the same requests), for the
             comparison and, beside it, for the single conversation

Targets: every pane of every round ≥ 49 tokens/s; the slowest pane's TTFT ≤ 100 ms above the direct
client's (the slowest of its six), the median of the rounds judged (as relay.py judges p50s), the
worst round shown beside it; the CPU figures are printed, not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.relay import (  # noqa: E402
    HOST, MODEL, TOKEN_DELAY, UPSTREAM_KEY, FRAME_ERROR_RE, Single, Stream, cpu_seconds, direct_stream, free_port,
    loadavg, median, verdict,
)
from scripts.scaleout import stop_process  # noqa: E402
from scripts.wsclient import WebSocket  # noqa: E402

PANES, TOKENS = 6, 200
TARGET_RATE, TARGET_TTFT_ADDED = 49.0, 100.0  # tokens/s per pane; ms over the direct client's slowest TTFT
CONTENT_RE = re.compile(r'id="msg-([0-9a-f-]{36})-content" hx-swap-oob="beforeend"')
ROW_RE = re.compile(r'id="row-([0-9a-f-]{36})"')
STATUS_RE = re.compile(r'data-status="(\w+)"')
PANE_IDLE = 'class="pane-state" data-state="idle"'
IDLE_MARK = 'data-state="idle"'


# --------------------------------------------------------------------------- database tasks (a child process)

def db_task() -> None:
    import django

    task = json.load(sys.stdin)
    django.setup()
    if task["task"] == "prepare":
        print(json.dumps(prepare_database(task["upstream"], task["rounds"])))
    elif task["task"] == "outcome":
        print(json.dumps(outcome(task["public_ids"])))


def prepare_database(upstream: str, rounds: int) -> dict:
    """Migrate; a user and session; an endpoint on the paced upstream; per round one conversation
    and one comparison of six panes on it."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from chat import compare
    from chat.models import ApiKey, Conversation, Endpoint

    call_command("migrate", verbosity=0, interactive=False)
    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    key = ApiKey(name="bench upstream")
    key.set_secret(UPSTREAM_KEY)
    key.save()
    endpoint = Endpoint.objects.create(name="bench paced", model_id=MODEL, api_key=key, family="llama",
                                       base_url=f"{upstream}/v1", timeout=120.0)
    options = {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": TOKENS, "ignore_eos": True}
    conversations, comparisons = [], []
    for _ in range(rounds):
        conversations.append(str(Conversation.objects.create(owner=user, endpoint=endpoint, options=options).public_id))
        comparison = compare.new_comparison(user, [(endpoint, {})] * PANES, options=options)
        comparisons.append(str(comparison.public_id))
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {"cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
            "conversations": {"chat": conversations, "compare": comparisons}}


def outcome(public_ids: list[str]) -> dict:
    from django.db.models import Count

    from chat.models import Completion

    rows = Completion.objects.filter(conversation__public_id__in=public_ids)
    return {"status": {r["status"]: r["n"] for r in rows.values("status").annotate(n=Count("id")).order_by("status")},
            "errors": list(rows.filter(status="error").values_list("error_message", flat=True)[:3])}


class Server(Single):
    """bench/relay.py's single setup, with this benchmark's database tasks."""

    def db(self, task: dict) -> dict:
        result = subprocess.run([sys.executable, __file__, "--db-task"], input=json.dumps(task), cwd=ROOT, env=self.env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the database task failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def prepare(self, upstream: str, rounds: int) -> None:
        data = self.db({"task": "prepare", "upstream": upstream, "rounds": rounds})
        self.cookie, self.conversations = data["cookie"], data["conversations"]


# --------------------------------------------------------------------------- clients

async def open_socket(server: Server, public_id: str) -> WebSocket:
    ws = await asyncio.wait_for(WebSocket.connect(HOST, server.port, f"/ws/conversations/{public_id}/", server.cookie), 30)
    snapshot = await asyncio.wait_for(ws.recv(), 30)
    assert 'id="messages"' in snapshot, "no snapshot frame"
    await asyncio.sleep(0.3)  # let the connect-time resync settle
    return ws


async def relay_panes(ws: WebSocket, expected: int, timeout: float = 60) -> dict[str, Stream]:
    """One send; frames until every answer (one, or one per pane) has its final frame."""
    streams: dict[str, Stream] = {}
    times: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    ws.send(json.dumps({"action": "send", "content": "Tell me about hexagonal grids."}))
    deadline = t0 + timeout
    finished = 0
    while finished < expected:
        frame = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.perf_counter()))
        t = time.perf_counter()
        error = FRAME_ERROR_RE.search(frame)
        if error:
            raise RuntimeError(f"refused: {error.group(1)[:200]}")
        final = (PANE_IDLE in frame) if expected > 1 else (IDLE_MARK in frame and 'id="stream-status"' in frame)
        if final:
            row = ROW_RE.search(frame)
            key = row.group(1) if row else "?"
            times.setdefault(key, []).append(t)
            status = STATUS_RE.search(frame)
            stream = streams.setdefault(key, Stream(tokens=TOKENS))
            stream.ok = bool(status) and status.group(1) == "complete"
            stream.error = "" if stream.ok else f"final status {status.group(1) if status else '?'}"
            finished += 1
            continue
        for key in set(CONTENT_RE.findall(frame)):
            times.setdefault(key, []).append(t)
            streams.setdefault(key, Stream(tokens=TOKENS))
    for key, stream in streams.items():
        ts = times.get(key, [])
        if len(ts) >= 2:
            stream.first, stream.last, stream.ttft = ts[0], ts[-1], ts[0] - t0
            stream.gaps = [ts[-1] - ts[-2]]  # the last content frame to the final one (the save and the final render)
        else:
            stream.ok, stream.error = False, "no content before the final frame"
    return streams


async def direct_six(url: str) -> tuple[list[Stream], int]:
    import httpx

    from chat.upstream.transport import Transport

    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about hexagonal grids."}],
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, "max_tokens": TOKENS}
    async with httpx.AsyncClient(transport=Transport(trust_env=False), timeout=httpx.Timeout(120.0), trust_env=False) as client:
        results = await asyncio.gather(*(direct_stream(client, url, body, 60) for _ in range(PANES)))
    return list(results), sum(r.events for r in results)


# --------------------------------------------------------------------------- the run

async def run(server: Server, upstream_url: str, rounds: int) -> dict:
    chat_cpu = compare_cpu = 0.0
    chat_events = compare_events = 0
    panes: list[Stream] = []
    chats: list[Stream] = []
    direct: list[Stream] = []
    slowest_pane_ttft, slowest_direct_ttft = [], []
    pid = server.servers()[0]
    for i in range(rounds):
        # The single conversation: one answer on its socket.
        ws = await open_socket(server, server.conversations["chat"][i])
        c0 = cpu_seconds(pid)
        streams = await relay_panes(ws, 1)
        chat_cpu += cpu_seconds(pid) - c0
        await ws.close()
        chats += streams.values()
        # The comparison: six panes on one socket.
        ws = await open_socket(server, server.conversations["compare"][i])
        c0 = cpu_seconds(pid)
        streams = await relay_panes(ws, PANES)
        compare_cpu += cpu_seconds(pid) - c0
        await ws.close()
        panes += streams.values()
        # The direct client: the same six requests at once.
        results, events = await direct_six(upstream_url)
        direct += results
        chat_events += events // PANES
        compare_events += events
        slowest_pane_ttft.append(max(s.ttft for s in streams.values()) * 1000)
        slowest_direct_ttft.append(max(r.ttft for r in results) * 1000)
        print(f"  round {i + 1}: panes {min(s.rate for s in streams.values()):.1f}–{max(s.rate for s in streams.values()):.1f} tok/s, "
              f"slowest pane TTFT {slowest_pane_ttft[-1]:.0f} ms, slowest direct {slowest_direct_ttft[-1]:.0f} ms", flush=True)
    return {
        "panes": panes, "chats": chats, "direct": direct,
        "slowest_pane_ttft": slowest_pane_ttft, "slowest_direct_ttft": slowest_direct_ttft,
        "chat_cpu_per_1k": 1000 * 1000 * chat_cpu / chat_events if chat_events else float("nan"),
        "compare_cpu_per_1k": 1000 * 1000 * compare_cpu / compare_events if compare_events else float("nan"),
        "events": compare_events,
    }


def report(result: dict, outcome: dict) -> bool:
    panes, direct = result["panes"], result["direct"]
    failed = [s.error for s in panes + result["chats"] if not s.ok] + [s.error for s in direct if not s.ok]
    rates = [s.rate for s in panes]
    added = [p - d for p, d in zip(result["slowest_pane_ttft"], result["slowest_direct_ttft"])]
    worst_rate, typical_added = min(rates), median(added)
    ok_rate, ok_ttft = worst_rate >= TARGET_RATE, typical_added <= TARGET_TTFT_ADDED
    print()
    print(f"| {PANES} panes × {TOKENS} tokens at 50 tok/s ({len(result['slowest_pane_ttft'])} rounds) | value | target | |")
    print("|---|---|---|---|")
    print(f"| slowest pane's rate (tok/s); median over panes {median(rates):.1f} | {worst_rate:.1f} | ≥ {TARGET_RATE:.0f} | {verdict(ok_rate)} |")
    print(f"| slowest pane's TTFT above the direct client's slowest (ms), median of rounds (worst {max(added):+.0f}) | "
          f"{typical_added:+.0f} | ≤ {TARGET_TTFT_ADDED:.0f} | {verdict(ok_ttft)} |")
    print(f"| slowest pane TTFT / slowest direct TTFT (ms), median of rounds | {median(result['slowest_pane_ttft']):.0f} / {median(result['slowest_direct_ttft']):.0f} | | |")
    print(f"| direct client's rate (tok/s), median | {median([d.rate for d in direct]):.1f} | | |")
    ends = [s.gaps[0] * 1000 for s in panes if s.gaps]
    print(f"| a pane's last content frame to its final frame (ms), median / max | {median(ends):.0f} / {max(ends):.0f} | | |")
    chats = result["chats"]
    print(f"| single conversation: TTFT (ms) / rate (tok/s), median | {median([c.ttft for c in chats]) * 1000:.0f} / "
          f"{median([c.rate for c in chats]):.1f} | | |")
    print(f"| server CPU per 1,000 chunks: comparison (6 panes) / single conversation (ms) | "
          f"{result['compare_cpu_per_1k']:.0f} / {result['chat_cpu_per_1k']:.0f} | printed | |")
    print(f"- completions saved: {outcome['status']}" + (f"; errors: {outcome['errors']}" if outcome["errors"] else ""))
    if failed:
        print(f"- failed streams: {failed[:3]}")
    print(f"- load average {loadavg()}")
    return ok_rate and ok_ttft and not failed


def main(args) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    work = Path(tempfile.mkdtemp(prefix="hexgrid-bench-compare-"))
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(upstream_port),
                                 "--delay", str(TOKEN_DELAY)], stdout=open(work / "upstream.log", "w"), stderr=subprocess.STDOUT)
    server = Server(argparse.Namespace(debug=False, log_level="WARNING", uvloop=None), work)
    try:
        server.prepare(f"http://{HOST}:{upstream_port}", args.rounds)
        server.start()
        print(f"compare benchmark: {server.label}, server pid {server.servers()[0]} on :{server.port}, upstream pid "
              f"{upstream.pid} on :{upstream_port}, {os.cpu_count()} CPUs, load average {loadavg()}", flush=True)
        result = asyncio.run(run(server, f"http://{HOST}:{upstream_port}/v1/chat/completions", args.rounds))
        outcome = server.db({"task": "outcome", "public_ids": server.conversations["compare"] + server.conversations["chat"]})
        ok = report(result, outcome)
    finally:
        server.stop()
        stop_process(upstream)
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="comparisons (and conversations) relayed, one after another (default 5)")
    p.add_argument("--db-task", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.db_task:
        db_task()
    else:
        signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(SystemExit(128 + signum)))
        sys.exit(main(args))
