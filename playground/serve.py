"""Run the playground under Daphne with its own defaults: `python -m playground.serve [daphne options]`.

Used by `make run` and the Dockerfile. Any Daphne option can be given and wins over these.
- The event loop is uvloop (`UVLOOP=False` keeps asyncio's own): Daphne creates its loop when
  daphne.server is imported, so the policy is set before that. Relaying paced streams is mostly
  event-loop work; uvloop roughly halves its CPU (bench/relay.py).
- Websocket messages up to 16 MB reach the consumer, which refuses frames over its own cap
  (chat.consumers.MAX_FRAME_CHARS) with a clear message; Daphne's 1 MB default closed such a
  socket instead (a long paste plus the settings panel's values can pass 1 MB).
"""

from __future__ import annotations

import asyncio
import os
import sys

MAX_WEBSOCKET_BYTES = 16 * 1024 * 1024
APPLICATION = "playground.asgi:application"


def daphne_arguments(argv: list[str]) -> list[str]:
    args = list(argv)
    given = {a.split("=")[0] for a in args if a.startswith("--")}
    for option in ("--websocket-max-message-size", "--websocket-max-frame-size"):
        if option not in given:
            args = [option, str(MAX_WEBSOCKET_BYTES), *args]
    if not any(":" in a and not a.startswith("-") for a in args):
        args.append(APPLICATION)
    return args


def use_uvloop(environ=os.environ) -> bool:
    value = environ.get("UVLOOP", "True")
    if value not in ("True", "False", "1", "0"):
        raise SystemExit(f"Unexpected value UVLOOP={value!r}: use True or False")
    return value in ("True", "1")


def finalize_on_start_and_stop(loop) -> None:
    """Answers an earlier process left streaming are finalized now (chat.liveness); on SIGTERM,
    before Daphne stops, every running answer is stopped and saved as stopped."""
    import django
    from twisted.internet import defer, reactor

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    django.setup()
    from chat import liveness

    try:
        liveness.finalize_orphans()
    except Exception as error:  # e.g. no tables yet: migrate has not run
        print(f"HexGrid Playground: could not check for interrupted answers ({error})", file=sys.stderr, flush=True)
    from django.conf import settings

    worker = None
    if settings.BATCH_WORKER:  # batch runs' worker (playground.batchworker): one command runs everything
        from playground import batchworker

        worker = batchworker.start()

    def before_shutdown():
        liveness.stopping = True  # at once: a socket closed from here on stops its run, not detach it
        stopped = defer.Deferred.fromFuture(asyncio.ensure_future(liveness.stop_all(), loop=loop))
        if worker is None:
            return stopped
        from twisted.internet import threads  # the worker stops while Daphne still serves (the simulator)

        return defer.gatherResults([stopped, threads.deferToThread(batchworker.stop, worker)])

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


def main(argv: list[str] | None = None) -> None:
    if use_uvloop():
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface  # imports daphne.server, which makes the loop
    from daphne.server import twisted_loop

    print(f"HexGrid Playground: Daphne on {type(twisted_loop).__module__.split('.')[0]}", file=sys.stderr, flush=True)
    finalize_on_start_and_stop(twisted_loop)

    CommandLineInterface().run(daphne_arguments(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
