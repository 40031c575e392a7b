"""Just enough RFC 6455 for the benchmark and the scale-out tests: a client for text frames, ping/pong
and close, no extensions, no dependency. One asyncio stream per socket, so hundreds of sockets cost
the client little CPU (bench/relay.py opens 500).

    ws = await WebSocket.connect("127.0.0.1", 8000, "/ws/conversations/<uuid>/", cookie="sessionid=…")
    ws.headers["x-served-by"]   # the handshake response's headers (lower-case names)
    ws.send('{"action": "send", "content": "Hello"}')
    frame = await ws.recv()     # raises WSClosed (with .code) when the server closes
    await ws.close()
"""

from __future__ import annotations

import asyncio
import base64
import os


class WSClosed(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        self.reader, self.writer, self.headers = reader, writer, headers

    @classmethod
    async def connect(cls, host: str, port: int, path: str, cookie: str = "", origin: str | None = None) -> WebSocket:
        """Open a socket; the Origin defaults to the server's own (the playground checks it)."""
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        origin = origin or f"http://{host}:{port}"
        writer.write(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n"
             + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            writer.close()
            raise WSClosed(f"handshake: the connection closed ({error})") from None
        status_line, *lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in status_line:
            writer.close()
            raise WSClosed(f"handshake refused: {status_line}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return cls(reader, writer, headers)

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
        """The next text message (fragmented messages joined); pings are answered."""
        parts = []
        read = self.reader.readexactly
        while True:
            try:
                b0, b1 = await read(2)
            except asyncio.IncompleteReadError:
                raise WSClosed("the connection closed without a close frame") from None
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
                raise WSClosed(f"closed by the server with code {code}", code)
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
