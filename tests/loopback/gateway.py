"""The JSON gateway of the loopback Discord: HELLO, IDENTIFY/READY, heartbeats, RESUME, shards.

Every shard is its own session (sequence, session id, replay on RESUME). A guild's events go
only to the shard that owns it, ``(guild_id >> 22) % shard_count``, as on Discord; events
without a guild go to shard 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.loopback.discord_server import FakeDiscord

log = logging.getLogger(__name__)

MESSAGE_CONTENT_INTENT = 1 << 15
INVALID_SHARD = 4010


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives a guild's events (Discord's sharding formula)."""
    return (guild_id >> 22) % shard_count


@dataclass
class ShardSession:
    """One shard's session: numbered dispatches, kept for replay on RESUME."""

    shard_id: int
    session_id: str
    client: str = ""  # the tag of the bot process that identified (see FakeDiscord routes)
    sequence: int = 0
    sent: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    socket: web.WebSocketResponse | None = None
    resumes: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every dispatch of one kind this session was given, in order."""
        return [data for _, event, data in self.sent if event == name]

    async def send_numbered(self, event: str, data: dict[str, Any]) -> None:
        """Number and keep an event; send it now if connected (else RESUME replays it)."""
        self.sequence += 1
        self.sent.append((self.sequence, event, data))
        socket = self.socket
        if socket is not None and not socket.closed:
            # On a broken socket the event stays in `sent` and is replayed on RESUME.
            with contextlib.suppress(ConnectionError):
                payload = {"op": 0, "s": self.sequence, "t": event, "d": data}
                await socket.send_str(json.dumps(payload))


class GatewayHub:
    """Every shard session of the one bot application."""

    def __init__(self, discord: FakeDiscord) -> None:
        self.discord = discord
        self.sessions: dict[int, ShardSession] = {}
        self.shard_count: int | None = None
        self.undelivered: list[tuple[str, dict[str, Any]]] = []  # no shard was connected
        self.identified = asyncio.Event()
        self.base_url = ""
        self.identifies = 0  # over every shard
        self.resumes = 0

    def url_for(self, client: str) -> str:
        """The gateway address a bot process tagged ``client`` uses ("" for no tag)."""
        return (
            self.base_url.replace("/gateway", f"/c/{client}/gateway") if client else self.base_url
        )

    @property
    def sent(self) -> list[tuple[int, str, dict[str, Any]]]:
        return [entry for session in self.sessions.values() for entry in session.sent]

    def connected_shards(self) -> set[int]:
        return {
            shard_id
            for shard_id, session in self.sessions.items()
            if session.socket is not None and not session.socket.closed
        }

    # --- the socket ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 30000}}))
        client = request.match_info.get("client", "")
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                break
            payload = json.loads(message.data)
            await self._on_payload(socket, payload, client)
        for session in self.sessions.values():
            if session.socket is socket:
                session.socket = None
        return socket

    async def _on_payload(
        self, socket: web.WebSocketResponse, payload: dict[str, Any], client: str
    ) -> None:
        op, data = payload["op"], payload.get("d")
        if op == 1:
            await socket.send_str(json.dumps({"op": 11}))
        elif op == 2:
            await self._identify(socket, data, client)
        elif op == 6:
            await self._resume(socket, data)

    async def _identify(
        self, socket: web.WebSocketResponse, data: dict[str, Any], client: str
    ) -> None:
        assert data["token"] == self.discord.token
        if data["intents"] & MESSAGE_CONTENT_INTENT and not self.discord.message_content_allowed:
            await socket.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not self._accepts_layout(shard_id, shard_count):
            await socket.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return
        self.shard_count = shard_count
        self.identifies += 1
        session = ShardSession(shard_id, f"session-{shard_id}-{self.identifies}", client)
        self.sessions[shard_id] = session
        async with session.lock:
            session.socket = socket
            guilds = self.discord.guilds_of_shard(shard_id, shard_count)
            ready = {
                "v": 10,
                "session_id": session.session_id,
                "user": self.discord.bot_user,
                "resume_gateway_url": self.url_for(client),
                "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in guilds],
                "application": {"id": str(self.discord.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "shard": [shard_id, shard_count],
            }
            await session.send_numbered("READY", ready)
            for guild_id in guilds:
                await session.send_numbered("GUILD_CREATE", self.discord.guild_payload(guild_id))
        self.identified.set()

    def _accepts_layout(self, shard_id: int, shard_count: int) -> bool:
        """Discord closes with 4010 for a shard outside the count; here also for a count that
        disagrees with the shards still connected (the guilds would have two owners)."""
        if not 0 <= shard_id < shard_count:
            return False
        connected = self.connected_shards() - {shard_id}
        if self.shard_count is not None and self.shard_count != shard_count and connected:
            log.warning(
                "IDENTIFY with %d shards while %d are in use", shard_count, self.shard_count
            )
            return False
        if self.shard_count != shard_count:
            self.sessions.clear()  # a new layout: the old sessions cannot be resumed
        return True

    async def _resume(self, socket: web.WebSocketResponse, data: dict[str, Any]) -> None:
        session = next(
            (s for s in self.sessions.values() if s.session_id == data.get("session_id")), None
        )
        if session is None:
            await socket.send_str(json.dumps({"op": 9, "d": False}))
            return
        session.resumes += 1
        self.resumes += 1
        async with session.lock:
            session.socket = socket
            for sequence, event, payload in session.sent:
                if sequence > data["seq"]:
                    await socket.send_str(
                        json.dumps({"op": 0, "s": sequence, "t": event, "d": payload})
                    )
            await session.send_numbered("RESUMED", {})

    # --- events ----------------------------------------------------------------------------

    def session_for(self, data: dict[str, Any]) -> ShardSession | None:
        """The session that owns an event's guild (shard 0 for events without one)."""
        if self.shard_count is None:
            return None
        guild_id = data.get("guild_id")
        shard_id = shard_of(int(guild_id), self.shard_count) if guild_id else 0
        return self.sessions.get(shard_id)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to its guild's shard now, or keep it there for the RESUME."""
        session = self.session_for(data)
        if session is None:  # nobody ever connected that shard: Discord would not deliver it
            self.undelivered.append((event, data))
            return
        async with session.lock:
            await session.send_numbered(event, data)

    async def drop(self, shard_id: int | None = None) -> None:
        """Cut the bot's connection of one shard, or of all (it should reconnect and RESUME)."""
        for session in list(self.sessions.values()):
            if shard_id is not None and session.shard_id != shard_id:
                continue
            async with session.lock:
                socket, session.socket = session.socket, None
            if socket is not None:
                await socket.close(code=4000, message=b"loopback drop")
