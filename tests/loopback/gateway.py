"""The JSON gateway of the loopback Discord: HELLO, IDENTIFY/READY, heartbeats, RESUME."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.loopback.discord_server import FakeDiscord

MESSAGE_CONTENT_INTENT = 1 << 15


class GatewayHub:
    """One bot session: numbered dispatches, kept for replay on RESUME."""

    def __init__(self, discord: FakeDiscord) -> None:
        self.discord = discord
        self.sequence = 0
        self.session_id = "session-1"
        self.sent: list[tuple[int, str, dict[str, Any]]] = []
        self.socket: web.WebSocketResponse | None = None
        self.identifies = 0
        self.resumes = 0
        self.identified = asyncio.Event()
        self.base_url = ""
        self._lock = asyncio.Lock()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 30000}}))
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                break
            payload = json.loads(message.data)
            await self._on_payload(socket, payload)
        if self.socket is socket:
            self.socket = None
        return socket

    async def _on_payload(self, socket: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        op, data = payload["op"], payload.get("d")
        if op == 1:
            await socket.send_str(json.dumps({"op": 11}))
        elif op == 2:
            await self._identify(socket, data)
        elif op == 6:
            await self._resume(socket, data)

    async def _identify(self, socket: web.WebSocketResponse, data: dict[str, Any]) -> None:
        assert data["token"] == self.discord.token
        if data["intents"] & MESSAGE_CONTENT_INTENT and not self.discord.message_content_allowed:
            await socket.close(code=4014, message=b"Disallowed intent(s).")
            return
        self.identifies += 1
        async with self._lock:
            self.socket = socket
            ready = {
                "v": 10,
                "session_id": self.session_id,
                "user": self.discord.bot_user,
                "resume_gateway_url": self.base_url,
                "guilds": [{"id": str(self.discord.guild_id), "unavailable": True}],
                "application": {"id": str(self.discord.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
            }
            await self._send_numbered(socket, "READY", ready)
            await self._send_numbered(socket, "GUILD_CREATE", self.discord.guild_payload())
        self.identified.set()

    async def _resume(self, socket: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("session_id") != self.session_id:
            await socket.send_str(json.dumps({"op": 9, "d": False}))
            return
        self.resumes += 1
        async with self._lock:
            self.socket = socket
            for sequence, event, payload in self.sent:
                if sequence > data["seq"]:
                    await socket.send_str(
                        json.dumps({"op": 0, "s": sequence, "t": event, "d": payload})
                    )
            await self._send_numbered(socket, "RESUMED", {})

    async def _send_numbered(
        self, socket: web.WebSocketResponse, event: str, data: dict[str, Any]
    ) -> None:
        self.sequence += 1
        self.sent.append((self.sequence, event, data))
        await socket.send_str(json.dumps({"op": 0, "s": self.sequence, "t": event, "d": data}))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event now, or keep it for the RESUME if the bot is disconnected."""
        async with self._lock:
            socket = self.socket
            if socket is None or socket.closed:
                self.sequence += 1
                self.sent.append((self.sequence, event, data))
                return
            # On a broken socket the event stays in `sent` and is replayed on RESUME.
            with contextlib.suppress(ConnectionError):
                await self._send_numbered(socket, event, data)

    async def drop(self) -> None:
        """Cut the bot's connection (it should reconnect and RESUME)."""
        async with self._lock:
            socket, self.socket = self.socket, None
        if socket is not None:
            await socket.close(code=4000, message=b"loopback drop")
