"""Relay benchmark (issue 5): browser → Daphne → ConversationConsumer → httpx → simulator,
against a direct httpx client to the same simulator, in the same run.

    .venv/bin/python bench/relay.py            # full run (~2.5–4 min on 2 cores)
    .venv/bin/python bench/relay.py --quick    # smoke test (< 60 s)

Three processes, loopback only: the simulator (uvicorn, its own process so its CPU is not
charged to Daphne), Daphne serving playground.asgi:application, and this process (the
clients: one asyncio loop with a minimal RFC 6455 client, and httpx for the direct runs).
A throw-away data dir holds its own SQLite DB and secrets; it is deleted afterwards.

Requests: model sim/llama-3.3 (no thinking), `max_tokens` N with `ignore_eos`, so every
answer has exactly N completion tokens. The simulator waits 20 ms before each token
(50 tokens/s) under /v1, and not at all under /fast/v1 (max chunks/s).

Definitions (relay | direct):
  TTFT       send frame → first content-append frame | request start → first content delta
  gaps       between content frames, the final message frame included (the consumer batches
             fragments every ~40 ms, so the relay's gaps are ≥ 40 ms by design) | between deltas
  tokens/s   completion tokens / (last fragment − first fragment), per stream
  CPU        Daphne's utime+stime (/proc/<pid>/stat) from the first send to the last final
             frame, per 1,000 upstream SSE events (counted by the direct client)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
HOST = "127.0.0.1"
MODEL = "sim/llama-3.3"
TOKEN_DELAY = 0.02
SIM_KEY = "bench-relay-" + secrets.token_hex(8)

CONTENT_MARK = '-content" hx-swap-oob="beforeend">'
IDLE_MARK = 'data-state="idle"'
STATUS_RE = re.compile(r'data-status="(\w+)"')
FRAME_ERROR_RE = re.compile(r'<div id="frame-error"[^>]*>([^<]+)</div>')

TARGETS = {
    "ttft_added": 5.0,  # ms, median
    "rate_100": 49.0, "ttft_100": 50.0,  # tokens/s per stream, ms p50
    "rate_500": 45.0, "ttft_500": 500.0,
    "cpu_per_1k": 40.0,  # Daphne CPU ms per 1,000 upstream chunks
}


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) utime + stime of a process, in seconds."""
    main = other = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            seconds = cpu_seconds_of(f"/proc/{pid}/task/{task}/stat")
        except OSError:  # the thread ended meanwhile
            continue
        if int(task) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


def cpu_seconds_of(path: str) -> float:
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_for_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {HOST}:{port} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen | None) -> None:
    """Stop one process this script started (by its own handle, never by name)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- simulator process

def serve_simulator(port: int, key: str) -> None:
    """Runs in its own process: /v1 waits TOKEN_DELAY per token, /fast/v1 does not wait."""
    import uvicorn

    from chat.simulator import make_simulator

    slow = make_simulator(api_key=key, token_delay=TOKEN_DELAY, record=0)
    fast = make_simulator(api_key=key, token_delay=0.0, record=0)

    stats = {"inflight": 0, "peak": 0}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await slow(scope, receive, send)
        path = scope.get("path", "")
        if path == "/bench/peak":  # the most requests in flight at once since the last call
            body = json.dumps({"peak": stats["peak"]}).encode()
            stats["peak"] = stats["inflight"]
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        stats["inflight"] += 1
        stats["peak"] = max(stats["peak"], stats["inflight"])
        try:
            if path.startswith("/fast/"):
                return await fast(dict(scope, root_path="/fast"), receive, send)
            return await slow(scope, receive, send)
        finally:
            stats["inflight"] -= 1

    uvicorn.run(app, host=HOST, port=port, log_level="warning", lifespan="off", access_log=False,
                http="httptools", backlog=4096, timeout_keep_alive=60)


# --------------------------------------------------------------------------- a minimal websocket client

class WSClosed(Exception):
    pass


class WebSocket:
    """Just enough RFC 6455 for this benchmark: text frames, ping/pong, close; no extensions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str) -> WebSocket:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{HOST}:{port}\r\n"
             f"Cookie: {cookie}\r\n\r\n").encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status_line:
            writer.close()
            raise WSClosed(f"handshake refused: {status_line}")
        return cls(reader, writer)

    def _write(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 1 << 16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.writer.write(header + mask + masked)

    def send(self, text: str) -> None:
        self._write(0x1, text.encode())

    async def recv(self) -> str:
        parts = []
        read = self.reader.readexactly
        while True:
            b0, b1 = await read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await read(2), "big")
            elif n == 127:
                n = int.from_bytes(await read(8), "big")
            if b1 & 0x80:
                await read(4)  # servers do not mask; tolerate it anyway
            data = await read(n) if n else b""
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self._write(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                raise WSClosed(f"closed by the server with code {code}")
            parts.append(data)
            if b0 & 0x80:
                return b"".join(parts).decode()

    async def close(self) -> None:
        try:
            self._write(0x8, (1000).to_bytes(2, "big"))
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass


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
    """POST the same body straight to the simulator and time each content delta."""
    import httpx

    result = Stream()
    times: list[float] = []
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {SIM_KEY}"}) as r:
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


# --------------------------------------------------------------------------- the run

class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.daphne: subprocess.Popen | None = None
        self.sim: subprocess.Popen | None = None
        self.rows: list[tuple] = []
        self.notes: list[str] = []

    # -- set-up ------------------------------------------------------------------

    def environment(self, data_dir: Path) -> dict:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SIMULATOR_BASE_URL")}
        env.update(
            DJANGO_SETTINGS_MODULE="playground.settings", PLAYGROUND_DATA_DIR=str(data_dir),
            SIMULATOR_ENABLED="False", DEBUG="True" if self.args.debug else "False", LOG_LEVEL=self.args.log_level,
            SECRET_KEY=secrets.token_urlsafe(50), FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            SESSION_COOKIE_SECURE="False", CSRF_COOKIE_SECURE="False", SECURE_SSL_REDIRECT="False",
            PYTHONUNBUFFERED="1",
        )
        return env

    def setup_database(self, sim_port: int, plan: dict[str, tuple[int, int, bool]]) -> None:
        """Migrate, then a user, a session, two endpoints and one conversation per stream."""
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
        from django.contrib.sessions.backends.db import SessionStore
        from django.core.management import call_command
        from django.db import connection

        from chat.models import ApiKey, Conversation, Endpoint

        call_command("migrate", verbosity=0, interactive=False)
        user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
        key = ApiKey(name="bench simulator")
        key.set_secret(SIM_KEY)
        key.save()
        endpoints = {
            fast: Endpoint.objects.create(
                name=f"bench {'fast' if fast else 'paced'}", model_id=MODEL, api_key=key, family="llama",
                base_url=f"http://{HOST}:{sim_port}{'/fast' if fast else ''}/v1", timeout=120.0,
            )
            for fast in (False, True)
        }
        self.conversations: dict[str, list[str]] = {}
        for name, (count, tokens, fast) in plan.items():
            options = {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": tokens, "ignore_eos": True}
            rows = Conversation.objects.bulk_create(
                [Conversation(owner=user, endpoint=endpoints[fast], options=options) for _ in range(count)]
            )
            self.conversations[name] = [str(c.public_id) for c in rows]
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        self.cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
        self.body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about hexagonal grids."}],
                     "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
        connection.close()

    def db_outcome(self, public_ids: list[str]) -> str:
        """What the relay saved for these conversations (read between phases)."""
        from django.db import connection
        from django.db.models import Count

        from chat.models import Completion

        rows = (Completion.objects.filter(conversation__public_id__in=public_ids)
                .values("status").annotate(n=Count("id")).order_by("status"))
        errors = list(Completion.objects.filter(conversation__public_id__in=public_ids, status="error")
                      .values_list("error_message", flat=True)[:3])
        ttft = list(Completion.objects.filter(conversation__public_id__in=public_ids, ttft_ms__isnull=False)
                    .values_list("ttft_ms", flat=True))
        text = ", ".join(f"{r['status']} {r['n']}" for r in rows) or "no completions saved"
        connection.close()
        if ttft:
            text += f"; server-side TTFT (run start → first token) p50 {median(ttft):.0f} ms, p99 {pct(ttft, 99):.0f} ms"
        return text + (f" (e.g. {errors[0][:100]!r})" if errors else "")

    def start_servers(self, env: dict, sim_port: int, daphne_port: int) -> None:
        log_dir = Path(env["PLAYGROUND_DATA_DIR"])
        self.sim = subprocess.Popen(
            [sys.executable, __file__, "--serve-simulator", str(sim_port), SIM_KEY], cwd=ROOT, env=env,
            stdout=open(log_dir / "simulator.log", "w"), stderr=subprocess.STDOUT,
        )
        self.procs.append(self.sim)
        self.daphne_log = log_dir / "daphne.log"
        self.daphne = subprocess.Popen(
            # The launcher `make run` uses: uvloop (unless UVLOOP=False) and the playground's Daphne options.
            [sys.executable, "-m", "playground.serve", "-b", HOST, "-p", str(daphne_port), "-v", "0"],
            cwd=ROOT, env=env, stdout=open(self.daphne_log, "w"), stderr=subprocess.STDOUT,
        )
        self.procs.append(self.daphne)
        wait_for_port(sim_port, self.sim, "the simulator")
        wait_for_port(daphne_port, self.daphne, "Daphne")
        self.sim_port, self.daphne_port = sim_port, daphne_port

    # -- clients -----------------------------------------------------------------

    def sim_url(self, fast: bool) -> str:
        return f"http://{HOST}:{self.sim_port}{'/fast' if fast else ''}/v1/chat/completions"

    def http_client(self):
        import httpx

        return httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000),
                                 timeout=httpx.Timeout(120.0), trust_env=False)

    async def open_sockets(self, public_ids: list[str]) -> list[WebSocket]:
        """Connect (not timed), 50 at a time, and read each snapshot frame."""
        sockets: list[WebSocket] = []
        gate = asyncio.Semaphore(50)

        async def one(public_id: str) -> WebSocket:
            async with gate:
                ws = await asyncio.wait_for(
                    WebSocket.connect(self.daphne_port, f"/ws/conversations/{public_id}/", self.cookie), 30)
                snapshot = await asyncio.wait_for(ws.recv(), 30)
                if 'id="messages"' not in snapshot:
                    raise WSClosed("no snapshot frame")
                return ws

        results = await asyncio.gather(*(one(p) for p in public_ids), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                for ws in sockets + [s for s in results if isinstance(s, WebSocket)]:
                    await ws.close()
                raise RuntimeError(f"could not open the websockets: {r!r}")
            sockets.append(r)
        return sockets

    async def relay_many(self, public_ids: list[str], tokens: int, timeout: float,
                         profile: str = "") -> tuple[list[Stream], dict]:
        sockets = await self.open_sockets(public_ids)
        await asyncio.sleep(0.3)  # let the connect-time resync settle
        spy = self.start_profiler(profile)
        cpu0 = self.cpu()
        w0 = time.perf_counter()
        try:
            results = await asyncio.gather(*(relay_stream(ws, tokens, timeout) for ws in sockets))
        finally:
            wall = time.perf_counter() - w0
            cpu1 = self.cpu()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await asyncio.to_thread(spy.wait, 30)
            await asyncio.gather(*(ws.close() for ws in sockets))
        return results, {k: cpu1[k] - cpu0[k] for k in cpu0} | {"wall": wall}

    async def direct_many(self, n: int, tokens: int, fast: bool, timeout: float) -> tuple[list[Stream], dict]:
        body = dict(self.body, max_tokens=tokens)
        async with self.http_client() as client:
            cpu0 = self.cpu()
            w0 = time.perf_counter()
            results = await asyncio.gather(*(direct_stream(client, self.sim_url(fast), body, timeout) for _ in range(n)))
            wall = time.perf_counter() - w0
            cpu1 = self.cpu()
        return results, {k: cpu1[k] - cpu0[k] for k in cpu0} | {"wall": wall}

    def start_profiler(self, name: str) -> subprocess.Popen | None:
        """With --py-spy: sample Daphne during this relay run into <data dir>/../<name>.txt (collapsed stacks)."""
        if not (self.args.py_spy and name):
            return None
        out = Path(self.args.profile_dir or ".") / f"relay-{name}.txt"
        spy = subprocess.Popen([self.args.py_spy, "record", "--pid", str(self.daphne.pid), "--rate", "200", "--threads", *self.args.py_spy_extra.split(),
                                "--nonblocking", "--format", "raw", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(spy)
        time.sleep(0.5)
        self.notes.append(f"py-spy profile of Daphne: {out}")
        return spy

    def cpu(self) -> dict:
        main, other = thread_cpu_seconds(self.daphne.pid)
        return {"daphne": cpu_seconds(self.daphne.pid), "daphne_main": main, "daphne_threads": other,
                "sim": cpu_seconds(self.sim.pid), "client": cpu_seconds(os.getpid())}

    async def simulator_peak(self) -> int:
        import httpx

        async with httpx.AsyncClient(trust_env=False) as client:
            return (await client.get(f"http://{HOST}:{self.sim_port}/bench/peak")).json()["peak"]

    # -- phases ------------------------------------------------------------------

    def failures(self, label: str, results: list[Stream]) -> int:
        bad = [r for r in results if not r.ok]
        if bad:
            kinds: dict[str, int] = {}
            for r in bad:
                kinds[r.error] = kinds.get(r.error, 0) + 1
            self.notes.append(f"{label}: {len(bad)}/{len(results)} streams failed: "
                              + "; ".join(f"{n}× {e}" for e, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:3]))
        return len(bad)

    async def warm_up(self) -> None:
        await self.direct_many(3, 10, False, 30)
        sockets = await self.open_sockets(self.conversations["warmup"])
        try:
            for ws in sockets:
                await relay_stream(ws, 10, 30)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    async def phase_ttft(self) -> None:
        """One stream at a time, relay and direct interleaved, each on a fresh conversation."""
        tokens, relay, direct = self.plan["ttft"][1], [], []
        async with self.http_client() as client:
            for public_id in self.conversations["ttft"]:
                [ws] = await self.open_sockets([public_id])
                try:
                    relay.append(await relay_stream(ws, tokens, 30))
                finally:
                    await ws.close()
                direct.append(await direct_stream(client, self.sim_url(False), dict(self.body, max_tokens=tokens), 30))
        saved = await asyncio.to_thread(self.db_outcome, self.conversations["ttft"])
        self.notes.append(f"1 stream: saved: {saved}")
        self.failures("single stream relay", relay)
        self.failures("single stream direct", direct)
        r = [s.ttft * 1000 for s in relay if s.ok]
        d = [s.ttft * 1000 for s in direct if s.ok]
        added_p50, added_p99 = median(r) - median(d), pct(r, 99) - pct(d, 99)
        n = len(self.conversations["ttft"])
        self.rows.append((f"1 stream ×{n}: TTFT p50 (ms)", f"{median(r):.1f}", f"{median(d):.1f}", "", ""))
        self.rows.append((f"1 stream ×{n}: TTFT p99 (ms)", f"{pct(r, 99):.1f}", f"{pct(d, 99):.1f}", "", ""))
        ph = [s.placeholder * 1000 for s in relay if s.ok]
        self.rows.append(("1 stream: send → placeholder frame p50 (ms)", f"{median(ph):.1f}", "", "", ""))
        self.rows.append(("1 stream: added TTFT p50 (ms)", f"{added_p50:+.1f}", "", "≤ 5", verdict(added_p50 <= TARGETS["ttft_added"])))
        self.rows.append(("1 stream: added TTFT p99 (ms)", f"{added_p99:+.1f}", "", "", ""))

    async def phase_concurrent(self, name: str, n: int, rate_target: float, ttft_target: float) -> None:
        tokens = self.plan[name][1]
        timeout = 60 + n * 0.5
        direct, dcpu = await self.direct_many(n, tokens, False, timeout)
        direct_peak = await self.simulator_peak()
        await asyncio.sleep(1)
        relay, rcpu = await self.relay_many(self.conversations[name], tokens, timeout, profile=f"{n}-streams")
        relay_peak = await self.simulator_peak()
        self.failures(f"{n} streams relay", relay)
        self.failures(f"{n} streams direct", direct)
        events = median([s.events for s in direct if s.ok]) or 0
        rr, dr = [s.rate for s in relay if s.ok], [s.rate for s in direct if s.ok]
        rt, dt = [s.ttft * 1000 for s in relay if s.ok], [s.ttft * 1000 for s in direct if s.ok]
        rg = [g * 1000 for s in relay if s.ok for g in s.gaps]
        dg = [g * 1000 for s in direct if s.ok for g in s.gaps]
        ok = sum(s.ok for s in relay)
        label = f"{n} streams"
        self.rows.append((f"{label}: streams complete", f"{ok}/{n}", f"{sum(s.ok for s in direct)}/{n}", "", ""))
        self.rows.append((f"{label}: tokens/s per stream p50", f"{median(rr):.1f}", f"{median(dr):.1f}",
                          f"≥ {rate_target:g}", verdict(ok == n and median(rr) >= rate_target), ratio(median(rr), median(dr))))
        self.rows.append((f"{label}: tokens/s per stream min", f"{min(rr, default=float('nan')):.1f}",
                          f"{min(dr, default=float('nan')):.1f}", "", ""))
        self.rows.append((f"{label}: TTFT p50 (ms)", f"{median(rt):.0f}", f"{median(dt):.0f}",
                          f"≤ {ttft_target:g}", verdict(ok == n and median(rt) <= ttft_target), ratio(median(rt), median(dt))))
        self.rows.append((f"{label}: TTFT p99 (ms)", f"{pct(rt, 99):.0f}", f"{pct(dt, 99):.0f}", "", "", ratio(pct(rt, 99), pct(dt, 99))))
        self.rows.append((f"{label}: inter-token p99 (ms)", f"{pct(rg, 99):.1f}", f"{pct(dg, 99):.1f}", "", ""))
        self.rows.append((f"{label}: added inter-token p99 (ms)", f"{pct(rg, 99) - pct(dg, 99):+.1f}", "", "", ""))
        direct_chunks = events * sum(s.ok for s in direct)
        if direct_chunks:
            self.rows.append((f"{label}: client CPU ms / 1k chunks (httpx floor)", "", f"{dcpu['client'] * 1e6 / direct_chunks:.1f}",
                              "", ""))
        chunks = events * ok
        if chunks:
            per_1k = rcpu["daphne"] * 1000 / (chunks / 1000)
            self.rows.append((f"{label}: Daphne CPU ms / 1k chunks", f"{per_1k:.1f}", "", f"≤ {TARGETS['cpu_per_1k']:g}",
                              verdict(per_1k <= TARGETS["cpu_per_1k"]) if n == self.cpu_phase else "", ""))
        saved = await asyncio.to_thread(self.db_outcome, self.conversations[name])
        self.notes.append(
            f"{label}: wall {rcpu['wall']:.1f}s relay / {dcpu['wall']:.1f}s direct; simulator saw at most {relay_peak} "
            f"relay / {direct_peak} direct requests at once; CPU s relay run: Daphne {rcpu['daphne']:.1f} (event loop "
            f"{rcpu['daphne_main']:.1f}, other threads incl. the DB thread {rcpu['daphne_threads']:.1f}), "
            f"simulator {rcpu['sim']:.1f}, client {rcpu['client']:.1f}; direct run: simulator {dcpu['sim']:.1f}, "
            f"client {dcpu['client']:.1f}; {int(events)} SSE events/stream; saved: {saved}"
        )

    def server_timing(self, public_id: str) -> tuple[float, float] | None:
        """(ttft_ms, duration_ms) the relay saved for the conversation's completion."""
        from django.db import connection

        from chat.models import Completion

        row = (Completion.objects.filter(conversation__public_id=public_id)
               .values_list("ttft_ms", "duration_ms").first())
        connection.close()
        return row if row and None not in row else None

    async def phase_max_chunks(self) -> None:
        """One stream at zero delay. The consumer flushes every 40 ms, so the client cannot see when the relay
        handled each chunk: the relay's rate is the chunks over its own first-token → end-of-stream time (saved on
        the Completion row); end to end (send → final frame) is shown beside it."""
        count, tokens, _ = self.plan["max"]
        runs = []
        for public_id in self.conversations["max"]:
            relay, rcpu = await self.relay_many([public_id], tokens, 120, profile="max-chunks")
            [d], _ = await self.direct_many(1, tokens, True, 120)
            [r] = relay
            timing = await asyncio.to_thread(self.server_timing, public_id)
            if r.ok and d.ok and timing:
                ttft_ms, duration_ms = timing
                runs.append((d.events / ((duration_ms - ttft_ms) / 1000), d.events / (d.last - d.first),
                             r.end, d.end, rcpu["daphne"] * 1e6 / d.events, d.events))
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
        self.rows.append(("1 stream, no delay: Daphne CPU ms / 1k chunks", f"{cpu:.1f}", "", "", ""))
        self.notes.append("max chunks/s: relay = chunks / (its own first token → end of stream, from the Completion row); "
                          "direct = chunks / (first → last content delta); 'send → last token' ends at the relay's final "
                          "message frame (markdown render and save included)")

    async def run_phases(self) -> None:
        steps = [("warm-up", self.warm_up), ("single stream TTFT", self.phase_ttft)]
        for name, rate_target, ttft_target in (("c1", TARGETS["rate_100"], TARGETS["ttft_100"]),
                                               ("c2", TARGETS["rate_500"], TARGETS["ttft_500"])):
            n = self.plan[name][0]
            steps.append((f"{n} concurrent streams",
                           lambda name=name, n=n, rt=rate_target, tt=ttft_target: self.phase_concurrent(name, n, rt, tt)))
        steps.append(("max chunks/s", self.phase_max_chunks))
        for label, step in steps:
            t = time.perf_counter()
            print(f"  {label} …", end="", flush=True)
            await step()
            print(f" {time.perf_counter() - t:.1f}s", flush=True)
            if self.daphne.poll() is not None:
                raise RuntimeError(f"Daphne exited (code {self.daphne.returncode}); see {self.daphne_log}")

    # -- main --------------------------------------------------------------------

    def main(self) -> int:
        a = self.args
        quick = a.quick
        c1, c2 = (20, 50) if quick else (100, 500)
        self.cpu_phase = c1
        self.plan = {
            "warmup": (3, 10, False),
            "ttft": (a.ttft_requests or (10 if quick else 30), 10, False),
            "c1": (a.streams_low or c1, 200, False),
            "c2": (a.streams_high or c2, 200, False),
            "max": (1 if quick else 3, 4000 if quick else 16000, True),
        }
        data_dir = Path(tempfile.mkdtemp(prefix="hexgrid-bench-relay-", dir=a.data_dir))
        env = self.environment(data_dir)
        os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "PLAYGROUND_DATA_DIR", "SIMULATOR_ENABLED",
                                               "DEBUG", "LOG_LEVEL", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")})
        for k in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(k, None)
        sys.path.insert(0, str(ROOT))
        started = time.perf_counter()
        load0 = Path("/proc/loadavg").read_text().split()[:3]
        try:
            sim_port, daphne_port = free_port(), free_port()
            self.setup_database(sim_port, self.plan)
            self.start_servers(env, sim_port, daphne_port)
            print(f"relay benchmark ({'quick' if quick else 'full'}): Daphne pid {self.daphne.pid} on :{daphne_port}, "
                  f"simulator pid {self.sim.pid} on :{sim_port}, data {data_dir}, {os.cpu_count()} CPUs", flush=True)
            asyncio.run(self.run_phases())
        finally:
            for proc in reversed(self.procs):
                stop_process(proc)
            log_tail = self.daphne_log.read_text(errors="replace") if hasattr(self, "daphne_log") and self.daphne_log.exists() else ""
            if a.keep:
                print(f"kept {data_dir}")
            else:
                shutil.rmtree(data_dir, ignore_errors=True)
        load1 = Path("/proc/loadavg").read_text().split()[:3]
        self.notes.append(f"load average (1/5/15 min) before {' '.join(load0)}, after {' '.join(load1)} on {os.cpu_count()} CPUs"
                          " — other work on the machine inflates the wall-clock numbers")
        self.report(log_tail, time.perf_counter() - started)
        return 0

    def report(self, daphne_log: str, elapsed: float) -> None:
        header = ("measure", "relay", "direct", "target", "result", "relay/direct")
        rows = [r + ("",) * (6 - len(r)) for r in self.rows]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(6)]
        line = "  ".join("{:<%d}" % w for w in widths)
        print()
        print(line.format(*header))
        print(line.format(*("-" * w for w in widths)))
        for row in rows:
            print(line.format(*row))
        print()
        for note in self.notes:
            print(f"- {note}")
        lines = daphne_log.splitlines()
        errors = [l for l in lines if l.startswith(("ERROR", "CRITICAL"))]
        exceptions: dict[str, int] = {}  # the last line of each traceback: what was raised
        for i, l in enumerate(lines):
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
        print(f"- targets: {sum(r[4] == 'PASS' for r in passed)}/{len(passed)} pass; run took {elapsed:.0f}s")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b and b == b and a == a else ""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: 20 and 50 streams, fewer requests (< 60 s)")
    p.add_argument("--streams-low", type=int, help="override the first concurrency level (default 100)")
    p.add_argument("--streams-high", type=int, help="override the second concurrency level (default 500)")
    p.add_argument("--ttft-requests", type=int, help="sequential requests for the single-stream TTFT (default 30)")
    p.add_argument("--debug", action="store_true", help="run Daphne with DEBUG=True (default False, as in production)")
    p.add_argument("--log-level", default="WARNING", help="Daphne's LOG_LEVEL (DEBUG with --debug logs every SQL query)")
    p.add_argument("--data-dir", help="parent of the throw-away data dir (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the data dir (SQLite DB, Daphne and simulator logs)")
    p.add_argument("--py-spy", metavar="BIN", help="profile Daphne with this py-spy binary during each relay run")
    p.add_argument("--py-spy-extra", default="", help='more py-spy record options, e.g. "--gil" (GIL holders only)')
    p.add_argument("--profile-dir", help="where --py-spy writes collapsed stacks (default: the current dir)")
    p.add_argument("--serve-simulator", nargs=2, metavar=("PORT", "KEY"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    args = parse_args()
    if args.serve_simulator:
        sys.path.insert(0, str(ROOT))
        serve_simulator(int(args.serve_simulator[0]), args.serve_simulator[1])
    else:
        signal.signal(signal.SIGTERM, _terminate)
        sys.exit(Bench(args).main())
