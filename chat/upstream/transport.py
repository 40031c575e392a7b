"""httpx's API on aiohttp's transport (httpx-aiohttp, the transport the OpenAI SDK offers).

httpx's own transport spends ≈ 150 µs of CPU per read of a paced SSE stream; aiohttp's C
parser and stream reader cost a third of that (bench/relay.py). httpx-aiohttp maps aiohttp's
errors coarsely (a refused connection becomes httpx.ConnectTimeout, a dropped stream too), and
the client's messages depend on the kind of failure, so each error is mapped again here from
the aiohttp exception it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# Most specific first: the first class the aiohttp error is an instance of decides.
PRECISE: list[tuple[type[BaseException], type[httpx.HTTPError]]] = [
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS (certificate errors included)
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a malformed status line or headers
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
]


@contextlib.contextmanager
def precise_errors() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as error:
        cause = error.__cause__
        kind = _kind(cause)
        if kind is None or type(error) is kind:
            raise
        raise kind(str(error) or type(cause).__name__) from cause
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:  # left unmapped by httpx-aiohttp
        raise (_kind(error) or httpx.TransportError)(str(error) or type(error).__name__) from error


def _kind(error: BaseException | None) -> type[httpx.HTTPError] | None:
    return next((to for source, to in PRECISE if isinstance(error, source)), None)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with precise_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with precise_errors():
            await self._stream.aclose()


class Transport(AiohttpTransport):
    """AiohttpTransport whose errors are the httpx errors they stand for."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with precise_errors():
            response = await super().handle_async_request(request)
        response.stream = _Stream(response.stream)
        return response
