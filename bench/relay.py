"""Relay benchmark (issues 5 and 14): browser → HAProxy? → Daphne → ConversationConsumer → httpx →
upstream, against a direct client to the same upstream, in the same run, in two setups:

  single     SQLite + the in-memory channel layer, one Daphne process (the embedded default)
  scaleout   PostgreSQL + Redis, two Daphne processes behind HAProxy (scripts/scaleout.py)

    .venv/bin/python bench/relay.py                    # both setups, full (~6 min on 2 cores)
    .venv/bin/python bench/relay.py --setup single     # one setup
    .venv/bin/python bench/relay.py --quick            # smoke test: 20 and 50 streams

Processes, loopback only: the upstream (bench/upstream.py: a lean asyncio/uvloop SSE server, its
own process, so its CPU is not charged to Daphne and costs the two cores little), the server(s),
and this process (the clients, on uvloop: the minimal RFC 6455 client of scripts/wsclient.py for
the relay, httpx on aiohttp's transport, as the relay's own upstream client, for the direct runs).
Each setup has a throw-away database (a SQLite file; a PostgreSQL database made and dropped here)
prepared by a child process with that setup's settings.

Requests: `max_tokens` N with `ignore_eos`, so every answer has exactly N completion tokens. The
upstream waits 20 ms before each token (50 tokens/s) under /v1, and not at all under /fast/v1.

Definitions (relay | direct):
  TTFT       send frame → first content-append frame | request start → first content delta
  gaps       between content frames, the final message frame included (the relay batches
             fragments every ~40 ms, so its gaps are ≥ 40 ms by design) | between deltas
  tokens/s   completion tokens / (last fragment − first fragment), per stream
  CPU        utime+stime (/proc/<pid>/stat) from the first send to the last final frame, per
             1,000 upstream SSE events (counted by the direct client): the Daphne process(es);
             HAProxy, Redis and PostgreSQL (the benchmark database's backends) shown beside
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.scaleout import Cluster, stop_process, wait_healthy  # noqa: E402
from scripts.wsclient import WebSocket, WSClosed  # noqa: E402

HOST = "127.0.0.1"
MODEL = "bench/llama"
TOKEN_DELAY = 0.02
UPSTREAM_KEY = "bench-relay-" + secrets.token_hex(8)

CONTENT_MARK = '-content" hx-swap-oob="beforeend">'
IDLE_MARK = 'data-state="idle"'
STATUS_RE = re.compile(r'data-status="(\w+)"')
FRAME_ERROR_RE = re.compile(r'<div id="frame-error"[^>]*>([^<]+)</div>')

# Issue 14's targets. The second concurrency level's TTFT and rate are "all complete, ≥ 40 tok/s,
# TTFT p50 ≤ 1 s" for one process; two processes behind HAProxy must complete 100 streams at ≥ 45
# tok/s and complete all 500.
TARGETS = {
    "ttft_added": 5.0,  # ms, p50, one stream at a time
    "rate_c1": 49.0, "ttft_c1": 100.0, "cpu_c1": 60.0,  # 100 streams: tok/s p50, ms p50, server CPU ms / 1k chunks
    "rate_c2": 40.0, "ttft_c2": 1000.0,  # 500 streams
    "scaleout_rate_c1": 45.0,
}


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int, task: str = "") -> float:
    """utime + stime of a process (all its threads), or of one of its threads, in seconds; 0 if gone."""
    try:
        with open(f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_seconds(pid: int) -> float:
    return cpu_seconds(pid, str(pid))


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b and b == b and a == a else ""


# --------------------------------------------------------------------------- one stream

@dataclass
class Stream:
    ok: bool = False
    error: str = ""
    ttft: float = float("nan")  # s
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0
    events: int = 0  # upstream SSE events (direct only)
    gaps: list[float] = field(default_factory=list)
    end: float = float("nan")  # s from send to the last token (relay: the final message frame)
    placeholder: float = float("nan")  # s from send to the assistant placeholder frame (relay only)

    @property
    def rate(self) -> float:
        span = self.last - self.first
        return self.tokens / span if self.ok and span > 0 else float("nan")


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


async def relay_stream(ws: WebSocket, tokens: int, timeout: float) -> Stream:
    """Send one message on an open socket and read frames until the final (idle) one."""
    result = Stream(tokens=tokens)
    times: list[float] = []
    t0 = time.perf_counter()
    ws.send(json.dumps({"action": "send", "content": "Tell me about hexagonal grids."}))
    deadline = t0 + timeout
    try:
        while True:
            frame = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.perf_counter()))
            t = time.perf_counter()
            if CONTENT_MARK in frame:
                times.append(t)
            elif 'data-state="streaming"' in frame and result.placeholder != result.placeholder:
                result.placeholder = t - t0
            if IDLE_MARK in frame:
                times.append(t)  # the final message carries the last batch of tokens
                status = STATUS_RE.search(frame)
                status = status.group(1) if status else "?"
                result.ok = status == "complete"
                result.error = "" if result.ok else f"final status {status}"
                break
            error = FRAME_ERROR_RE.search(frame)
            if error:
                result.error = f"refused: {error.group(1)[:120]}"
                return result
    except asyncio.TimeoutError:
        result.error = f"no final frame within {timeout:.0f}s"
        return result
    except (WSClosed, asyncio.IncompleteReadError, ConnectionError) as e:
        result.error = f"socket: {e}"
        return result
    if len(times) >= 2:
        result.first, result.last = times[0], times[-1]
        result.ttft, result.end = times[0] - t0, times[-1] - t0
        result.gaps = _gaps(times)
    else:
        result.ok, result.error = False, "no content fragment before the final frame"
    return result


async def direct_stream(client, url: str, body: dict, timeout: float) -> Stream:
    """POST the same body straight to the upstream and time each content delta."""
    import httpx

    result = Stream()
    times: list[float] = []
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}) as r:
                if r.status_code != 200:
                    result.error = f"HTTP {r.status_code}"
                    return result
                buffer = b""
                async for piece in r.aiter_raw():
                    t = time.perf_counter()
                    *events, buffer = (buffer + piece).split(b"\n\n")
                    for event in events:
                        result.events += 1
                        data = event[6:]
                        if data == b"[DONE]":
                            continue
                        chunk = json.loads(data)
                        choices = chunk.get("choices") or []
                        if choices and (choices[0].get("delta") or {}).get("content"):
                            times.append(t)
                        if chunk.get("usage"):
                            result.tokens = chunk["usage"]["completion_tokens"]
    except (httpx.HTTPError, TimeoutError) as e:
        result.error = f"{type(e).__name__}: {e}"
        return result
    if len(times) >= 2 and result.tokens:
        result.ok = True
        result.first, result.last = times[0], times[-1]
        result.ttft, result.end = times[0] - t0, times[-1] - t0
        result.gaps = _gaps(times)
    else:
        result.error = "no content"
    return result


# --------------------------------------------------------------------------- database tasks (a child process)

def db_task() -> None:
    """Run with a setup's environment: read a JSON task on stdin, print the JSON answer."""
    import django

    task = json.load(sys.stdin)
    django.setup()
    if task["task"] == "prepare":
        print(json.dumps(prepare_database(task["upstream"], task["plan"])))
    elif task["task"] == "outcome":
        print(json.dumps(outcome(task["public_ids"])))


def prepare_database(upstream: str, plan: dict) -> dict:
    """Migrate, then a user, a session, two endpoints and one conversation per stream."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from chat.models import ApiKey, Conversation, Endpoint

    call_command("migrate", verbosity=0, interactive=False)
    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    key = ApiKey(name="bench upstream")
    key.set_secret(UPSTREAM_KEY)
    key.save()
    endpoints = {
        fast: Endpoint.objects.create(
            name=f"bench {'fast' if fast else 'paced'}", model_id=MODEL, api_key=key, family="llama",
            base_url=f"{upstream}{'/fast' if fast else ''}/v1", timeout=120.0,
        )
        for fast in (False, True)
    }
    conversations: dict[str, list[str]] = {}
    for name, (count, tokens, fast) in plan.items():
        options = {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": tokens, "ignore_eos": True}
        rows = Conversation.objects.bulk_create(
            [Conversation(owner=user, endpoint=endpoints[fast], options=options) for _ in range(count)]
        )
        conversations[name] = [str(c.public_id) for c in rows]
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {"cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}", "conversations": conversations}


def outcome(public_ids: list[str]) -> dict:
    """What the relay saved for these conversations: statuses, errors, server-side timings."""
    from django.db.models import Count

    from chat.models import Completion

    rows = Completion.objects.filter(conversation__public_id__in=public_ids)
    return {
        "status": {r["status"]: r["n"] for r in rows.values("status").annotate(n=Count("id")).order_by("status")},
        "errors": list(rows.filter(status="error").values_list("error_message", flat=True)[:3]),
        "ttft": list(rows.filter(ttft_ms__isnull=False).values_list("ttft_ms", flat=True)),
        "timing": [list(t) for t in rows.filter(ttft_ms__isnull=False).values_list("ttft_ms", "duration_ms")],
    }


# --------------------------------------------------------------------------- setups

class Setup:
    """One server setup: its database, its server process(es) and what to measure."""

    name = ""
    label = ""

    def __init__(self, args, work: Path) -> None:
        from cryptography.fernet import Fernet

        self.args, self.work = args, work / self.name
        self.work.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SIMULATOR_BASE_URL")}
        self.env.update(
            DJANGO_SETTINGS_MODULE="playground.settings", PLAYGROUND_DATA_DIR=str(self.work),
            SIMULATOR_ENABLED="False", DEBUG="True" if args.debug else "False", LOG_LEVEL=args.log_level,
            SECRET_KEY=secrets.token_urlsafe(50), FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            SESSION_COOKIE_SECURE="False", CSRF_COOKIE_SECURE="False", SECURE_SSL_REDIRECT="False",
            PYTHONUNBUFFERED="1",
        )
        if args.uvloop is not None:
            self.env["UVLOOP"] = args.uvloop

    def db(self, task: dict) -> dict:
        result = subprocess.run([sys.executable, __file__, "--db-task"], input=json.dumps(task), cwd=ROOT, env=self.env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the {self.name} database task failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def prepare(self, upstream: str, plan: dict) -> None:
        data = self.db({"task": "prepare", "upstream": upstream, "plan": plan})
        self.cookie, self.conversations = data["cookie"], data["conversations"]

    def outcome(self, public_ids: list[str]) -> dict:
        return self.db({"task": "outcome", "public_ids": public_ids})

    def servers(self) -> list[int]:
        """The Daphne process ids (their CPU is the server's)."""
        raise NotImplementedError

    def others(self) -> dict[str, list[int]]:
        """Other processes whose CPU the setup adds (HAProxy, Redis, PostgreSQL backends)."""
        return {}

    def logs(self) -> list[Path]:
        raise NotImplementedError

    def check(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Single(Setup):
    name, label = "single", "SQLite + in-memory layer, one process"

    def start(self) -> None:
        self.port = free_port()
        self.log = self.work / "daphne.log"
        self.daphne = subprocess.Popen(
            # The launcher `make run` uses: uvloop (unless UVLOOP=False) and the playground's Daphne options.
            [sys.executable, "-m", "playground.serve", "-b", HOST, "-p", str(self.port), "-v", "0"],
            cwd=ROOT, env=self.env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
        )
        wait_healthy(f"http://{HOST}:{self.port}/healthz", self.daphne, "Daphne", 60)

    def servers(self) -> list[int]:
        return [self.daphne.pid]

    def logs(self) -> list[Path]:
        return [self.log]

    def check(self) -> None:
        if self.daphne.poll() is not None:
            raise RuntimeError(f"Daphne exited (code {self.daphne.returncode}); see {self.log}")

    def stop(self) -> None:
        stop_process(getattr(self, "daphne", None))


class ScaleOut(Setup):
    name, label = "scaleout", "PostgreSQL + Redis, 2 processes behind HAProxy"

    def __init__(self, args, work: Path) -> None:
        super().__init__(args, work)
        self.admin_url = args.postgres
        self.database = f"hexgrid_bench_{secrets.token_hex(4)}"
        base = args.postgres.rsplit("/", 1)[0]
        self.env.update(DATABASE_URL=f"{base}/{self.database}", REDIS_URL=args.redis)
        self.cluster: Cluster | None = None

    @staticmethod
    def available(args) -> str:
        """Why the setup cannot run here ("" when it can)."""
        try:
            import psycopg

            psycopg.connect(args.postgres, connect_timeout=3).close()
        except Exception as error:
            return f"PostgreSQL at {args.postgres}: {error}"
        try:
            import redis

            redis.Redis.from_url(args.redis, socket_connect_timeout=3).ping()
        except Exception as error:
            return f"Redis at {args.redis}: {error}"
        return ""

    def prepare(self, upstream: str, plan: dict) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        super().prepare(upstream, plan)

    def start(self) -> None:
        self.cluster = Cluster(self.env, processes=self.args.processes, log_dir=self.work).start()
        self.port = self.cluster.port

    def servers(self) -> list[int]:
        return [b.process.pid for b in self.cluster.backends]

    def others(self) -> dict[str, list[int]]:
        import psycopg
        import redis

        pids = {"HAProxy": [self.cluster.haproxy.pid]}
        try:
            pids["Redis"] = [int(redis.Redis.from_url(self.args.redis).info("server")["process_id"])]
        except Exception:
            pass
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.database]).fetchall()
            pids["PostgreSQL"] = [pid for (pid,) in rows]
        except Exception:
            pass
        return pids

    def logs(self) -> list[Path]:
        return [b.log for b in self.cluster.backends] if self.cluster else []

    def check(self) -> None:
        self.cluster.check()

    def stop(self) -> None:
        import psycopg

        if self.cluster is not None:
            self.cluster.stop()
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except Exception as error:
            print(f"could not drop the benchmark database {self.database}: {error}", file=sys.stderr)


# --------------------------------------------------------------------------- the run

class Bench:
    def __init__(self, args, setup: Setup, upstream_port: int, upstream: subprocess.Popen) -> None:
        self.args, self.setup = args, setup
        self.upstream_port, self.upstream = upstream_port, upstream
        self.rows: list[tuple] = []
        self.notes: list[str] = []
        self.summary: dict[str, float | str] = {}
        self.spies: list[subprocess.Popen] = []

    # -- clients -----------------------------------------------------------------

    def upstream_url(self, fast: bool) -> str:
        return f"http://{HOST}:{self.upstream_port}{'/fast' if fast else ''}/v1/chat/completions"

    def http_client(self):
        import httpx

        from chat.upstream.transport import Transport

        return httpx.AsyncClient(transport=Transport(trust_env=False, limits=httpx.Limits(max_connections=5000, max_keepalive_connections=1000)),
                                 timeout=httpx.Timeout(120.0), trust_env=False)

    async def open_sockets(self, public_ids: list[str]) -> list[WebSocket]:
        """Connect (not timed), 50 at a time, and read each snapshot frame."""
        gate = asyncio.Semaphore(50)

        async def one(public_id: str) -> WebSocket:
            async with gate:
                ws = await asyncio.wait_for(
                    WebSocket.connect(HOST, self.setup.port, f"/ws/conversations/{public_id}/", self.setup.cookie), 30)
                snapshot = await asyncio.wait_for(ws.recv(), 30)
                if 'id="messages"' not in snapshot:
                    raise WSClosed("no snapshot frame")
                return ws

        results = await asyncio.gather(*(one(p) for p in public_ids), return_exceptions=True)
        sockets = [r for r in results if isinstance(r, WebSocket)]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await asyncio.gather(*(ws.close() for ws in sockets))
            raise RuntimeError(f"could not open {len(failed)} of {len(results)} websockets: {failed[0]!r}")
        return sockets

    def cpu(self) -> dict:
        servers = self.setup.servers()
        others = self.setup.others()
        return {
            "server": sum(cpu_seconds(p) for p in servers), "server_main": sum(main_thread_seconds(p) for p in servers),
            "upstream": cpu_seconds(self.upstream.pid), "client": cpu_seconds(os.getpid()),
            **{name: sum(cpu_seconds(p) for p in pids) for name, pids in others.items()},
        }

    @staticmethod
    def spent(before: dict, after: dict) -> dict:
        return {k: after[k] - before.get(k, 0.0) for k in after}

    async def relay_many(self, public_ids: list[str], tokens: int, timeout: float, profile: str = "") -> tuple[list[Stream], dict]:
        sockets = await self.open_sockets(public_ids)
        await asyncio.sleep(0.3)  # let the connect-time resync settle
        self.start_profilers(profile)
        cpu0 = self.cpu()
        w0 = time.perf_counter()
        try:
            results = await asyncio.gather(*(relay_stream(ws, tokens, timeout) for ws in sockets))
        finally:
            wall = time.perf_counter() - w0
            cpu1 = self.cpu()
            await self.stop_profilers()
            await asyncio.gather(*(ws.close() for ws in sockets))
        return results, self.spent(cpu0, cpu1) | {"wall": wall}

    async def direct_many(self, n: int, tokens: int, fast: bool, timeout: float) -> tuple[list[Stream], dict]:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about hexagonal grids."}],
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, "max_tokens": tokens}
        async with self.http_client() as client:
            cpu0 = self.cpu()
            w0 = time.perf_counter()
            results = await asyncio.gather(*(direct_stream(client, self.upstream_url(fast), body, timeout) for _ in range(n)))
            wall = time.perf_counter() - w0
            cpu1 = self.cpu()
        return results, self.spent(cpu0, cpu1) | {"wall": wall}

    def start_profilers(self, name: str) -> None:
        """With --py-spy: sample each Daphne process during this relay run (collapsed stacks)."""
        if not (self.args.py_spy and name):
            return
        for i, pid in enumerate(self.setup.servers(), 1):
            out = Path(self.args.profile_dir or ".") / f"relay-{self.setup.name}-{name}-web{i}.txt"
            self.spies.append(subprocess.Popen(
                [self.args.py_spy, "record", "--pid", str(pid), "--rate", str(self.args.py_spy_rate), "--threads", *self.args.py_spy_extra.split(),
                 *([] if self.args.py_spy_blocking else ["--nonblocking"]), "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.notes.append(f"py-spy profile of web{i}: {out}")
        time.sleep(0.5)

    async def stop_profilers(self) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)
            await asyncio.to_thread(spy.wait, 30)
        self.spies = []

    async def upstream_peak(self) -> int:
        import httpx

        async with httpx.AsyncClient(trust_env=False) as client:
            return (await client.get(f"http://{HOST}:{self.upstream_port}/bench/peak")).json()["peak"]

    def failures(self, label: str, results: list[Stream]) -> int:
        bad = [r for r in results if not r.ok]
        if bad:
            kinds: dict[str, int] = {}
            for r in bad:
                kinds[r.error] = kinds.get(r.error, 0) + 1
            self.notes.append(f"{label}: {len(bad)}/{len(results)} streams failed: "
                              + "; ".join(f"{n}× {e}" for e, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:3]))
        return len(bad)

    def saved(self, public_ids: list[str]) -> str:
        data = self.setup.outcome(public_ids)
        text = ", ".join(f"{status} {n}" for status, n in data["status"].items()) or "no completions saved"
        if data["ttft"]:
            text += (f"; server-side TTFT (run start → first token) p50 {median(data['ttft']):.0f} ms, "
                     f"p99 {pct(data['ttft'], 99):.0f} ms")
        return text + (f" (e.g. {data['errors'][0][:100]!r})" if data["errors"] else "")

    # -- phases ------------------------------------------------------------------

    async def warm_up(self) -> None:
        await self.direct_many(3, 10, False, 30)
        sockets = await self.open_sockets(self.setup.conversations["warmup"])
        try:
            for ws in sockets:
                await relay_stream(ws, 10, 30)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    async def phase_ttft(self) -> None:
        """One stream at a time, relay and direct interleaved, each on a fresh conversation."""
        tokens, relay, direct = self.plan["ttft"][1], [], []
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about hexagonal grids."}],
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True, "max_tokens": tokens}
        async with self.http_client() as client:
            for public_id in self.setup.conversations["ttft"]:
                [ws] = await self.open_sockets([public_id])
                try:
                    relay.append(await relay_stream(ws, tokens, 30))
                finally:
                    await ws.close()
                direct.append(await direct_stream(client, self.upstream_url(False), body, 30))
        self.notes.append(f"1 stream: saved: {await asyncio.to_thread(self.saved, self.setup.conversations['ttft'])}")
        self.failures("single stream relay", relay)
        self.failures("single stream direct", direct)
        r = [s.ttft * 1000 for s in relay if s.ok]
        d = [s.ttft * 1000 for s in direct if s.ok]
        added_p50, added_p99 = median(r) - median(d), pct(r, 99) - pct(d, 99)
        n = len(self.setup.conversations["ttft"])
        self.summary.update(ttft_added=added_p50, ttft_direct=median(d))
        self.rows.append((f"1 stream ×{n}: TTFT p50 (ms)", f"{median(r):.1f}", f"{median(d):.1f}", "", ""))
        self.rows.append((f"1 stream ×{n}: TTFT p99 (ms)", f"{pct(r, 99):.1f}", f"{pct(d, 99):.1f}", "", ""))
        ph = [s.placeholder * 1000 for s in relay if s.ok]
        self.rows.append(("1 stream: send → placeholder frame p50 (ms)", f"{median(ph):.1f}", "", "", ""))
        self.rows.append(("1 stream: added TTFT p50 (ms)", f"{added_p50:+.1f}", "", f"≤ {TARGETS['ttft_added']:g}",
                          verdict(added_p50 <= TARGETS["ttft_added"])))
        self.rows.append(("1 stream: added TTFT p99 (ms)", f"{added_p99:+.1f}", "", "", ""))

    async def phase_concurrent(self, name: str) -> None:
        n, tokens, _ = self.plan[name]
        scaleout = self.setup.name == "scaleout"
        rate_target = TARGETS["scaleout_rate_c1"] if scaleout and name == "c1" else None if scaleout else TARGETS[f"rate_{name}"]
        ttft_target = None if scaleout else TARGETS[f"ttft_{name}"]
        timeout = 60 + n * 0.5
        direct, dcpu = await self.direct_many(n, tokens, False, timeout)
        direct_peak = await self.upstream_peak()
        await asyncio.sleep(1)
        relay, rcpu = await self.relay_many(self.setup.conversations[name], tokens, timeout, profile=f"{n}-streams")
        relay_peak = await self.upstream_peak()
        self.failures(f"{n} streams relay", relay)
        self.failures(f"{n} streams direct", direct)
        events = median([s.events for s in direct if s.ok]) or 0
        rr, dr = [s.rate for s in relay if s.ok], [s.rate for s in direct if s.ok]
        rt, dt = [s.ttft * 1000 for s in relay if s.ok], [s.ttft * 1000 for s in direct if s.ok]
        rg = [g * 1000 for s in relay if s.ok for g in s.gaps]
        dg = [g * 1000 for s in direct if s.ok for g in s.gaps]
        ok, dok = sum(s.ok for s in relay), sum(s.ok for s in direct)
        label = f"{n} streams"
        self.rows.append((f"{label}: streams complete", f"{ok}/{n}", f"{dok}/{n}", "all",
                          verdict(ok == n) if scaleout or name == "c2" else ""))
        self.rows.append((f"{label}: tokens/s per stream p50", f"{median(rr):.1f}", f"{median(dr):.1f}",
                          f"≥ {rate_target:g}" if rate_target else "",
                          verdict(ok == n and median(rr) >= rate_target) if rate_target else "", ratio(median(rr), median(dr))))
        self.rows.append((f"{label}: tokens/s per stream min", f"{min(rr, default=float('nan')):.1f}",
                          f"{min(dr, default=float('nan')):.1f}", "", ""))
        self.rows.append((f"{label}: TTFT p50 (ms)", f"{median(rt):.0f}", f"{median(dt):.0f}",
                          f"≤ {ttft_target:g}" if ttft_target else "",
                          verdict(ok == n and median(rt) <= ttft_target) if ttft_target else "", ratio(median(rt), median(dt))))
        self.rows.append((f"{label}: TTFT p99 (ms)", f"{pct(rt, 99):.0f}", f"{pct(dt, 99):.0f}", "", "", ratio(pct(rt, 99), pct(dt, 99))))
        ph = [s.placeholder * 1000 for s in relay if s.ok]
        self.rows.append((f"{label}: send → placeholder frame p50, p99 (ms)", f"{median(ph):.0f}, {pct(ph, 99):.0f}", "", "", ""))
        self.rows.append((f"{label}: inter-token p99 (ms)", f"{pct(rg, 99):.1f}", f"{pct(dg, 99):.1f}", "", ""))
        chunks = events * ok
        per_1k = {k: v * 1e6 / chunks for k, v in rcpu.items() if k != "wall"} if chunks else {}
        if dok and events:
            self.rows.append((f"{label}: client CPU ms / 1k chunks (direct client)", "", f"{dcpu['client'] * 1e6 / (events * dok):.1f}", "", ""))
        if per_1k:
            cpu_target = TARGETS["cpu_c1"] if name == "c1" and not scaleout else None
            self.rows.append((f"{label}: server CPU ms / 1k chunks (Daphne{' ×' + str(len(self.setup.servers())) if scaleout else ''})",
                              f"{per_1k['server']:.1f}", "", f"≤ {cpu_target:g}" if cpu_target else "",
                              verdict(per_1k["server"] <= cpu_target) if cpu_target else ""))
            for other in ("HAProxy", "Redis", "PostgreSQL"):
                if other in per_1k:
                    self.rows.append((f"{label}: {other} CPU ms / 1k chunks", f"{per_1k[other]:.1f}", "", "", ""))
        self.summary.update({
            f"{name}_n": n, f"{name}_ok": ok, f"{name}_dok": dok, f"{name}_rate": median(rr), f"{name}_drate": median(dr),
            f"{name}_ttft": median(rt), f"{name}_dttft": median(dt), f"{name}_cpu": per_1k.get("server", float("nan")),
            f"{name}_cpu_others": sum(per_1k.get(k, 0.0) for k in ("HAProxy", "Redis", "PostgreSQL")),
        })
        others = ", ".join(f"{k} {rcpu[k]:.1f}" for k in ("HAProxy", "Redis", "PostgreSQL") if k in rcpu)
        self.notes.append(
            f"{label}: wall {rcpu['wall']:.1f}s relay / {dcpu['wall']:.1f}s direct; the upstream saw at most {relay_peak} "
            f"relay / {direct_peak} direct requests at once; CPU s in the relay run: Daphne {rcpu['server']:.1f} (event "
            f"loop{'s' if scaleout else ''} {rcpu['server_main']:.1f}, other threads incl. the DB thread "
            f"{rcpu['server'] - rcpu['server_main']:.1f}), {others + ', ' if others else ''}upstream {rcpu['upstream']:.1f}, "
            f"clients {rcpu['client']:.1f}; direct run: upstream {dcpu['upstream']:.1f}, client {dcpu['client']:.1f}; "
            f"{int(events)} SSE events/stream; saved: {await asyncio.to_thread(self.saved, self.setup.conversations[name])}"
        )

    async def phase_max_chunks(self) -> None:
        """One stream at zero delay. The relay flushes every 40 ms, so the client cannot see when it handled
        each chunk: the relay's rate is the chunks over its own first-token → end-of-stream time (saved on the
        Completion row); end to end (send → final frame) is shown beside it."""
        count, tokens, _ = self.plan["max"]
        runs = []
        for public_id in self.setup.conversations["max"]:
            relay, rcpu = await self.relay_many([public_id], tokens, 120, profile="max-chunks")
            [d], _ = await self.direct_many(1, tokens, True, 120)
            [r] = relay
            timing = (await asyncio.to_thread(self.setup.outcome, [public_id]))["timing"]
            if r.ok and d.ok and timing:
                ttft_ms, duration_ms = timing[0]
                runs.append((d.events / ((duration_ms - ttft_ms) / 1000), d.events / (d.last - d.first),
                             r.end, d.end, rcpu["server"] * 1e6 / d.events, d.events))
            else:
                self.failures("max chunks/s", [r, d])
        if not runs:
            self.rows.append(("1 stream, no delay: chunks/s", "failed", "", "", ""))
            return
        rate, drate, rend, dend, cpu, events = max(runs)
        self.rows.append((f"1 stream, no delay: chunks/s (best of {count}, {events} chunks)",
                          f"{rate:,.0f}", f"{drate:,.0f}", "", "", ratio(rate, drate)))
        self.rows.append(("1 stream, no delay: send → last token (ms)", f"{rend * 1000:.0f}", f"{dend * 1000:.0f}", "", "",
                          ratio(rend, dend)))
        self.rows.append(("1 stream, no delay: server CPU ms / 1k chunks", f"{cpu:.1f}", "", "", ""))

    async def run_phases(self) -> None:
        steps = [("warm-up", self.warm_up), ("single stream TTFT", self.phase_ttft)]
        for name in ("c1", "c2"):
            steps.append((f"{self.plan[name][0]} concurrent streams", lambda name=name: self.phase_concurrent(name)))
        if self.setup.name == "single":
            steps.append(("max chunks/s", self.phase_max_chunks))
        for label, step in steps:
            t = time.perf_counter()
            print(f"  {label} …", end="", flush=True)
            await step()
            print(f" {time.perf_counter() - t:.1f}s (load average {loadavg()})", flush=True)
            self.setup.check()

    def run(self, plan: dict) -> None:
        self.plan = plan
        started, load0 = time.perf_counter(), loadavg()
        asyncio.run(self.run_phases())
        self.notes.append(f"load average (1/5/15 min) before {load0}, after {loadavg()} on {os.cpu_count()} CPUs"
                          " — other work on the machine inflates the wall-clock numbers")
        self.elapsed = time.perf_counter() - started

    def report(self) -> None:
        header = ("measure", "relay", "direct", "target", "result", "relay/direct")
        rows = [r + ("",) * (6 - len(r)) for r in self.rows]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(6)]
        line = "  ".join("{:<%d}" % w for w in widths)
        print(f"\n## {self.setup.label}\n")
        print(line.format(*header))
        print(line.format(*("-" * w for w in widths)))
        for row in rows:
            print(line.format(*row))
        print()
        for note in self.notes:
            print(f"- {note}")
        errors, exceptions = [], {}
        for log in self.setup.logs():
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            errors += [l for l in lines if l.startswith(("ERROR", "CRITICAL"))]
            for i, l in enumerate(lines):  # the last line of each traceback: what was raised
                if l.startswith("Traceback"):
                    j = i + 1
                    while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                        j += 1
                    if j < len(lines):
                        exceptions[lines[j][:160]] = exceptions.get(lines[j][:160], 0) + 1
        if errors or exceptions:
            print(f"- Daphne log: {len(errors)} ERROR lines (e.g. {errors[0][:120]!r})" if errors else "- Daphne log:",
                  "; raised: " + "; ".join(f"{n}× {e}" for e, n in sorted(exceptions.items(), key=lambda kv: -kv[1])[:4]))
        passed = [r for r in rows if r[4] in ("PASS", "FAIL")]
        print(f"- targets: {sum(r[4] == 'PASS' for r in passed)}/{len(passed)} pass; {self.elapsed:.0f}s")


def summary_table(benches: list[Bench], plan: dict) -> None:
    """Issue 14's table: each setup beside the direct client of the same run, and the targets."""
    c1, c2 = plan["c1"][0], plan["c2"][0]
    header = ("", "added TTFT, 1 stream", f"{c1} streams: tok/s per stream, TTFT p50",
              f"{c2} streams: tok/s per stream, TTFT p50", f"server CPU ms / 1,000 chunks ({c1} streams)")
    rows = []

    def streams(s: dict, name: str, direct: bool) -> str:
        if f"{name}_n" not in s:
            return "—"
        prefix = "d" if direct else ""
        ok, n = s[f"{name}_{prefix}ok"], s[f"{name}_n"]
        text = f"{s[f'{name}_{prefix}rate']:.1f}, {s[f'{name}_{prefix}ttft']:.0f} ms"
        return text + ("" if ok == n else f", {n - ok} of {n} failed")

    for bench in benches:
        s = bench.summary
        rows.append((f"direct client ({bench.setup.name} run)", "0", streams(s, "c1", True), streams(s, "c2", True), "—"))
        cpu = f"{s.get('c1_cpu', float('nan')):.0f}"
        if s.get("c1_cpu_others"):
            cpu += f" (+{s['c1_cpu_others']:.0f} in HAProxy/Redis/PostgreSQL)"
        rows.append((f"ours, {bench.setup.label}", f"{s.get('ttft_added', float('nan')):+.1f} ms",
                     streams(s, "c1", False), streams(s, "c2", False), cpu))
    rows.append(("targets, one process", f"≤ {TARGETS['ttft_added']:g} ms", f"≥ {TARGETS['rate_c1']:g}, ≤ {TARGETS['ttft_c1']:g} ms",
                 f"all complete, ≥ {TARGETS['rate_c2']:g}, ≤ {TARGETS['ttft_c2'] / 1000:g} s", f"≤ {TARGETS['cpu_c1']:g}"))
    rows.append(("targets, 2 processes behind HAProxy", "", f"all complete, ≥ {TARGETS['scaleout_rate_c1']:g}", "all complete", ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    print("\n## Issue 14's table (same run, same machine)\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def main(args) -> int:
    quick = args.quick
    c1, c2 = (20, 50) if quick else (100, 500)
    plan = {
        "warmup": (3, 10, False),
        "ttft": (args.ttft_requests or (10 if quick else 30), 10, False),
        "c1": (args.streams_low or c1, args.tokens, False),
        "c2": (args.streams_high or c2, args.tokens, False),
        "max": (1 if quick else 3, 4000 if quick else 16000, True),
    }
    try:
        import uvloop

        uvloop.install()  # the clients: 500 sockets cost less on uvloop
    except ImportError:
        pass
    names = ["single", "scaleout"] if args.setup == "both" else [args.setup]
    work = Path(tempfile.mkdtemp(prefix="hexgrid-bench-relay-", dir=args.data_dir))
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(upstream_port),
                                 "--delay", str(TOKEN_DELAY)], stdout=open(work / "upstream.log", "w"), stderr=subprocess.STDOUT)
    benches, skipped = [], []
    started = time.perf_counter()
    try:
        for name in names:
            if name == "scaleout" and (why := ScaleOut.available(args)):
                skipped.append(f"scale-out setup skipped: {why}")
                print(skipped[-1], flush=True)
                continue
            setup = (Single if name == "single" else ScaleOut)(args, work)
            bench = Bench(args, setup, upstream_port, upstream)
            try:
                setup.prepare(f"http://{HOST}:{upstream_port}", plan)
                setup.start()
                print(f"relay benchmark ({'quick' if quick else 'full'}), {setup.label}: server pids "
                      f"{setup.servers()} on :{setup.port}, upstream pid {upstream.pid} on :{upstream_port}, "
                      f"data {setup.work}, {os.cpu_count()} CPUs, load average {loadavg()}", flush=True)
                bench.run(plan)
            finally:
                setup.stop()
            benches.append(bench)
    finally:
        stop_process(upstream)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for bench in benches:
        bench.report()
    if benches:
        summary_table(benches, plan)
    for note in skipped:
        print(f"- {note}")
    print(f"- run took {time.perf_counter() - started:.0f}s")
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", choices=["single", "scaleout", "both"], default="both", help="which setup(s) to run (default both)")
    p.add_argument("--quick", action="store_true", help="smoke test: 20 and 50 streams, fewer requests")
    p.add_argument("--streams-low", type=int, help="override the first concurrency level (default 100)")
    p.add_argument("--streams-high", type=int, help="override the second concurrency level (default 500)")
    p.add_argument("--tokens", type=int, default=200, help="tokens per stream at both concurrency levels (default 200)")
    p.add_argument("--ttft-requests", type=int, help="sequential requests for the single-stream TTFT (default 30)")
    p.add_argument("--processes", type=int, default=2, help="Daphne processes of the scale-out setup (default 2)")
    p.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL server for the scale-out setup (a database is made there and dropped)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="Redis for the scale-out setup (default its db 12)")
    p.add_argument("--uvloop", choices=["True", "False"], help="the servers' UVLOOP (default: the launcher's, True)")
    p.add_argument("--debug", action="store_true", help="run Daphne with DEBUG=True (default False, as in production)")
    p.add_argument("--log-level", default="WARNING", help="Daphne's LOG_LEVEL")
    p.add_argument("--data-dir", help="parent of the throw-away data dir (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the data dir (SQLite DB, logs)")
    p.add_argument("--py-spy", metavar="BIN", help="profile the Daphne process(es) with this py-spy binary during each relay run")
    p.add_argument("--py-spy-blocking", action="store_true", help="pause Daphne for each sample (exact stacks; slower)")
    p.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    p.add_argument("--py-spy-extra", default="", help='more py-spy record options, e.g. "--gil" (GIL holders only)')
    p.add_argument("--profile-dir", help="where --py-spy writes collapsed stacks (default: the current dir)")
    p.add_argument("--db-task", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    args = parse_args()
    if args.db_task:
        db_task()
    else:
        signal.signal(signal.SIGTERM, _terminate)
        sys.exit(main(args))
