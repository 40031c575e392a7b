"""Server-sent events decoding without I/O (WHATWG "event stream" parsing).

Feed it whatever the socket delivered, in pieces of any size, and get back the
`data` of every event completed so far. Byte chunks may split a UTF-8
character or a CRLF pair; both are handled. `event:`, `id:` and `retry:`
fields and `:` comments are accepted and ignored: vLLM sends only `data:`,
but proxies add keep-alive comments.

    decoder = SSEDecoder()
    for piece in pieces:
        for data in decoder.feed(piece):
            if data is DONE: ...
    decoder.flush()
"""

from __future__ import annotations

import codecs

__all__ = ["DONE", "SSEDecoder"]


class _Done:
    """The `data: [DONE]` terminator, reported as this sentinel, not as text."""

    def __repr__(self) -> str:
        return "DONE"


DONE = _Done()


class SSEDecoder:
    """Incremental decoder: `feed()` pieces, get completed event data strings."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = ""  # the incomplete line carried over from the last piece
        self._after_cr = False  # last piece ended in CR: a following LF is part of it
        self._data: list[str] = []
        self._started = False  # a BOM is skipped only at the very start
        self.done = False

    def feed(self, piece: str | bytes) -> list[str | _Done]:
        """Decode one piece; return the data of every event it completed."""
        text = self._utf8.decode(piece) if isinstance(piece, bytes) else piece
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        events: list[str | _Done] = []
        text = self._line + text
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        self._line = lines.pop()  # the last element has no line ending yet
        for line in lines:
            self._take_line(line, events)
        return events

    def flush(self) -> list[str | _Done]:
        """End of stream: return an event left without its blank line.

        The spec discards it; we keep it, because servers that imitate the
        protocol sometimes close right after the last `data:` line.
        """
        events: list[str | _Done] = []
        tail = self._utf8.decode(b"", final=True)
        if tail or self._line:
            self._take_line(self._line + tail, events)
            self._line = ""
        self._take_line("", events)
        return events

    def _take_line(self, line: str, events: list[str | _Done]) -> None:
        if not line:
            if self._data:
                data = "\n".join(self._data)
                self._data = []
                if len(data) < 32 and data.strip() == "[DONE]":  # (no copy of every chunk's data)
                    self.done = True
                    events.append(DONE)
                else:
                    events.append(data)
            return
        if line.startswith(":"):
            return  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        # "event", "id", "retry" and unknown fields carry nothing we use.
