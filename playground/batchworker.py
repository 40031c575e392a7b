"""The batch worker beside Daphne: `make run` (playground.serve) starts `manage.py batch_worker` as a
child process, so one command runs everything. It stops before Daphne does (SIGTERM: its rows in
flight go back to the queue while the in-process simulator still answers) and dies with the
launcher if that is killed (PR_SET_PDEATHSIG), like a crash: the next start takes the run up again.
BATCH_WORKER=False leaves it out (run workers yourself: the README's scale-out section).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 15.0  # s for the worker to put its rows back and exit


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the worker outlives a killed launcher (its rows are recovered anyway)
        pass


def start() -> subprocess.Popen:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "playground.settings"))
    return subprocess.Popen([sys.executable, "-m", "django", "batch_worker", "--verbosity", "0"], env=env,
                            preexec_fn=_die_with_parent)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then wait (killed after STOP_TIMEOUT). Blocking: call it off the event loop."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
