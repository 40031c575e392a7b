"""The scale-out shape on one machine: N Daphne processes (the launcher, playground.serve) behind
HAProxy (Debian's package, installed when missing), all on one PostgreSQL and one Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/playground REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python scripts/scaleout.py [--processes 2] [--port 8000]     (or: make scaleout)

It migrates and bootstraps once, starts the processes on free loopback ports, waits until each
answers /healthz, starts HAProxy on --port with deploy/haproxy.cfg (the file docker-compose.yml
uses; its servers replaced by the local ones), and runs until Ctrl-C or SIGTERM, which stops
HAProxy and then each process (a stopping process saves its running answers as stopped).

The scale-out tests (tests/scaleout/) and the benchmark (bench/relay.py --setup scaleout) use
`Cluster` from here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_haproxy() -> str:
    """The haproxy binary; Debian's package is installed (apt-get) when it is missing and we may."""
    found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("haproxy is not installed: apt-get install haproxy (Debian's package)")
    print("scaleout: installing haproxy (apt-get)", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def render_haproxy(bind: str, servers: list[tuple[str, str, int]], served_by: bool = False) -> str:
    """deploy/haproxy.cfg with these servers (name, host, port) and this bind address. `served_by`
    adds an X-Served-By response header naming the process (tests: which one a socket reached)."""
    text = HAPROXY_CFG.read_text()
    lines = [f"    server {name} {host}:{port} check inter 500ms fall 2 rise 1" for name, host, port in servers]
    if served_by:
        lines.append("    http-response set-header X-Served-By %[srv_name]")
    text, n = re.subn(r"(?ms)^(\s*# servers: begin\n).*?^(\s*# servers: end\n)",
                      lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)
    text, m = re.subn(r"(?ms)^# docker: begin\n.*?^# docker: end\n", "", text)
    text, b = re.subn(r"(?m)^(\s*)bind :8000$", lambda g: f"{g.group(1)}bind {bind}", text)
    if (n, m, b) != (1, 1, 1):
        raise RuntimeError(f"{HAPROXY_CFG} no longer has the markers scripts/scaleout.py replaces")
    return text


@dataclass
class Backend:
    name: str
    port: int
    process: subprocess.Popen
    log: Path


def wait_healthy(url: str, process: subprocess.Popen | None, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f} s")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """Stop one process we started, by its own handle (SIGTERM, then SIGKILL)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class Cluster:
    """N launcher processes and HAProxy in front of them. `env` is each process's whole environment
    (DATABASE_URL, REDIS_URL, the shared SECRET_KEY and FIELD_ENCRYPTION_KEYS, …)."""

    def __init__(self, env: dict[str, str], processes: int = 2, host: str = "127.0.0.1", port: int = 0,
                 log_dir: Path | None = None, served_by: bool = False, daphne_args: tuple[str, ...] = ()) -> None:
        self.env = dict(env, PYTHONUNBUFFERED="1")
        self.count, self.host, self.port = processes, host, port or free_port(host)
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="hexgrid-scaleout-"))
        self.served_by, self.daphne_args = served_by, tuple(daphne_args)
        self.backends: list[Backend] = []
        self.haproxy: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> Cluster:
        haproxy = ensure_haproxy()
        try:
            for i in range(1, self.count + 1):
                name, port = f"web{i}", free_port(self.host)
                log = self.log_dir / f"daphne-{name}.log"
                process = subprocess.Popen(
                    [sys.executable, "-m", "playground.serve", "-b", self.host, "-p", str(port), "--proxy-headers",
                     "-v", "0", *self.daphne_args],
                    cwd=ROOT, env=self.env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                )
                self.backends.append(Backend(name, port, process, log))
            for backend in self.backends:
                wait_healthy(f"http://{self.host}:{backend.port}/healthz", backend.process, backend.name, timeout)
            config = self.log_dir / "haproxy.cfg"
            config.write_text(render_haproxy(f"{self.host}:{self.port}",
                                             [(b.name, self.host, b.port) for b in self.backends], self.served_by))
            self.haproxy = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=open(self.log_dir / "haproxy.log", "w"),
                                            stderr=subprocess.STDOUT)
            self._wait_balanced(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_balanced(self, timeout: float) -> None:
        """Until HAProxy answers and (with served_by) has sent a request to every process."""
        deadline = time.monotonic() + timeout
        wait_healthy(f"{self.url}/healthz", self.haproxy, "HAProxy", timeout)
        seen: set[str] = set()
        while self.served_by and len(seen) < self.count:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                seen.add(response.headers.get("X-Served-By", ""))
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy sent requests only to {sorted(seen)} within {timeout:.0f} s")
            time.sleep(0.05)

    def check(self) -> None:
        """Raise if a process has exited."""
        for name, process in [("HAProxy", self.haproxy)] + [(b.name, b.process) for b in self.backends]:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} (logs in {self.log_dir})")

    def stop(self) -> None:
        stop_process(self.haproxy)
        for backend in self.backends:  # SIGTERM: each saves its running answers as stopped, then exits
            if backend.process.poll() is None:
                backend.process.terminate()
        for backend in self.backends:
            stop_process(backend.process)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="Daphne processes (default 2)")
    parser.add_argument("--host", default="127.0.0.1", help="HAProxy's and the processes' address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HAProxy's port (default 8000)")
    parser.add_argument("--no-setup", action="store_true", help="skip manage.py migrate and bootstrap")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if not env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")) or not env.get("REDIS_URL"):
        parser.error("set DATABASE_URL to a PostgreSQL URL and REDIS_URL (every process must share both)")
    env.setdefault("SIMULATOR_BASE_URL", f"http://{args.host}:{args.port}/simulator/v1")
    if not args.no_setup:
        for command in (["migrate", "--noinput"], ["bootstrap"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)
    cluster = Cluster(env, processes=args.processes, host=args.host, port=args.port)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        cluster.start()
        backends = ", ".join(f"{b.name} :{b.port} (pid {b.process.pid})" for b in cluster.backends)
        print(f"HexGrid Playground (scale-out): {cluster.url}/ → HAProxy (pid {cluster.haproxy.pid}) → {backends}; "
              f"logs in {cluster.log_dir}; Ctrl-C stops", flush=True)
        while not stop:
            cluster.check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
