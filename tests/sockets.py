"""A WebsocketCommunicator whose waits suit a busy CI machine.

channels' communicator gives up after 1 s by default. That is a harness choice, not a product
bound: on a loaded machine (PostgreSQL + Redis, two cores) a snapshot can take longer to arrive.
Product time bounds are asserted explicitly where the issue names them.
"""

from __future__ import annotations

from channels.testing import WebsocketCommunicator

WAIT = 10  # seconds


class Socket(WebsocketCommunicator):
    async def connect(self, timeout=WAIT):
        return await super().connect(timeout)

    async def receive_output(self, timeout=WAIT):
        return await super().receive_output(timeout)

    async def receive_from(self, timeout=WAIT):
        return await super().receive_from(timeout)

    async def receive_json_from(self, timeout=WAIT):
        return await super().receive_json_from(timeout)

    async def disconnect(self, code=1000, timeout=WAIT):
        return await super().disconnect(code, timeout)
