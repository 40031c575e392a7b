"""Run the playground under Daphne with its own defaults: `python -m playground.serve [daphne options]`.

Used by `make run` and the Dockerfile. Any Daphne option can be given and wins over these.
- Websocket messages up to 16 MB reach the consumer, which refuses frames over its own cap
  (chat.consumers.MAX_FRAME_CHARS) with a clear message; Daphne's 1 MB default closed such a
  socket instead (a long paste plus the settings panel's values can pass 1 MB).
"""

from __future__ import annotations

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


def main(argv: list[str] | None = None) -> None:
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(daphne_arguments(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
