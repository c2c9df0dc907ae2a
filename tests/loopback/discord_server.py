"""A loopback Discord: REST and a JSON gateway on 127.0.0.1 for the unmodified discord.py client.

It keeps just enough state (guilds, channels, messages, members, commands, interactions)
to answer what the bot asks, records every request, and lets tests act as users.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback.gateway import GatewayHub, shard_of

DISCORD_EPOCH_MS = 1420070400000
BODY = web.RequestKey("body", object)
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
MANAGE_MESSAGES = 1 << 13
SEND_MESSAGES = 1 << 11
READ_MESSAGE_HISTORY = 1 << 16
SEND_MESSAGES_IN_THREADS = 1 << 38
MODERATE_MEMBERS = 1 << 40
ALL_PERMISSIONS = (1 << 53) - 1
# view, send, history, slash commands, send in threads (as Discord's default @everyone)
EVERYONE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 31) | SEND_MESSAGES_IN_THREADS
ROLE_OVERWRITE, MEMBER_OVERWRITE = 0, 1
PUBLIC_THREAD, PRIVATE_THREAD = 11, 12
FORUM = 15
THREAD_TYPES = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})
# Discord's limits on what a message may carry (it answers 400, code 50035, beyond them).
CONTENT_LIMIT = 2000
EMBED_LIMITS = {"title": 256, "description": 4096, "footer": 2048, "author": 256}
FIELD_NAME_LIMIT, FIELD_VALUE_LIMIT, FIELDS_LIMIT = 256, 1024, 25
EMBEDS_TOTAL_LIMIT = 6000


def limit_errors(message: dict[str, Any]) -> list[str]:
    """What in a message body Discord would refuse (empty: it is within every limit)."""
    errors = []
    if len(message.get("content") or "") > CONTENT_LIMIT:
        errors.append(f"content longer than {CONTENT_LIMIT}")
    total = 0
    for embed in message.get("embeds") or []:
        parts = {
            "title": embed.get("title") or "",
            "description": embed.get("description") or "",
            "footer": (embed.get("footer") or {}).get("text") or "",
            "author": (embed.get("author") or {}).get("name") or "",
        }
        for name, text in parts.items():
            if len(text) > EMBED_LIMITS[name]:
                errors.append(f"embed {name} longer than {EMBED_LIMITS[name]}")
        fields = embed.get("fields") or []
        if len(fields) > FIELDS_LIMIT:
            errors.append(f"more than {FIELDS_LIMIT} embed fields")
        for entry in fields:
            name, value = entry.get("name") or "", entry.get("value") or ""
            if not name.strip() or not value.strip():
                errors.append("an embed field with an empty name or value")
            if len(name) > FIELD_NAME_LIMIT or len(value) > FIELD_VALUE_LIMIT:
                errors.append("embed field over its limits")
            total += len(name) + len(value)
        total += sum(len(text) for text in parts.values())
    if total > EMBEDS_TOTAL_LIMIT:
        errors.append(f"embeds longer than {EMBEDS_TOTAL_LIMIT} in all")
    return errors


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py insists on exactly this content type (no charset suffix).
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorized: bool
    at: float = field(default_factory=time.perf_counter)
    client: str = ""  # which bot process sent it, when it calls a /c/{client}/ address


@dataclass
class Interaction:
    id: str
    token: str
    name: str
    channel_id: int
    user_id: int
    created_at: float
    callback_type: int | None = None
    callback_at: float | None = None
    original: dict[str, Any] | None = None
    followups: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    message: dict[str, Any] | None = None  # the message whose button was clicked

    @property
    def ephemeral(self) -> bool:
        shown = self.original or (self.followups[0] if self.followups else {})
        return bool((shown.get("flags", 0) | self.deferred_flags) & 64)

    deferred_flags: int = 0

    def texts(self) -> list[str]:
        """Every text the bot showed for this interaction: original (last edit) then followups."""
        messages = ([self.original] if self.original else []) + self.followups
        return [m.get("content") or _embed_text(m) for m in messages]


def _embed_text(message: dict[str, Any]) -> str:
    parts = []
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields") or []]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(part for part in parts if part)


def _command_problems(command: dict[str, Any], path: str = "") -> list[str]:
    """Where a command breaks Discord's documented limits on names, texts and options."""
    where = f"{path}{command.get('name')}"
    problems = []
    if not re.fullmatch(r"[-_\w]{1,32}", command.get("name", "")) and command.get("type", 1) == 1:
        problems.append(f"{where}: name must be 1-32 lowercase word characters")
    if len(command.get("description") or "") > 100:
        problems.append(f"{where}: description over 100 characters")
    if command.get("max_length", 0) > 6000:
        problems.append(f"{where}: max_length over 6000")
    if len(command.get("options") or []) > 25:
        problems.append(f"{where}: more than 25 options")
    for option in command.get("options") or []:
        problems += _command_problems(option, f"{where}.")
    return problems


@dataclass
class LoopbackFile:
    """An attachment's bytes as the CDN serves them (slowly, or compressed, if told)."""

    data: bytes
    delay_s: float = 0.0
    content_encoding: str | None = None


@dataclass
class LoopbackGuild:
    """One server: its roles and members (channels live in ``FakeDiscord.channels``)."""

    id: int
    name: str
    everyone_role: dict[str, Any]
    bot_role: dict[str, Any]
    roles: list[dict[str, Any]]
    members: dict[int, dict[str, Any]]
    general: int = 0  # its first text channel


class FakeDiscord:
    """State and HTTP handlers of the loopback Discord.

    The default guild (``guild_id``, ``general``, ``roles``, ``members``) always exists;
    ``add_guild`` makes more. Helpers take an optional ``guild_id`` and default to it.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.token = "bot-token"
        self.application_id = self.snowflake()
        self.bot_user = self.user("hf-bot", bot=True, user_id=self.application_id)
        self.owner = self.user("owner")
        # Shard 0 of 2; add_guild puts the next guild on shard 1.
        self.guild_id = self.snowflake_on_shard(0, 2)
        self.everyone_role: dict[str, Any] = {
            "id": str(self.guild_id),
            "name": "@everyone",
            "position": 0,
            "permissions": str(EVERYONE_PERMISSIONS),
        }
        self.bot_role = self.role("hf-bot", MANAGE_MESSAGES | MODERATE_MEMBERS, position=5)
        # The role Discord makes for a bot it adds: managed, held by that bot alone.
        self.bot_role.update(managed=True, tags={"bot_id": self.bot_user["id"]})
        self.roles: list[dict[str, Any]] = [self.everyone_role, self.bot_role]
        self.channels: dict[int, dict[str, Any]] = {}  # threads too (with a parent_id)
        self.uncached: set[int] = set()  # channels left out of GUILD_CREATE
        self.members: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, LoopbackGuild] = {
            self.guild_id: LoopbackGuild(
                self.guild_id,
                "Loopback Guild",
                self.everyone_role,
                self.bot_role,
                self.roles,
                self.members,
            )
        }
        self.recommended_shards = 1  # what GET /gateway/bot answers
        self.messages: dict[int, list[dict[str, Any]]] = {}
        self.commands: dict[str, dict[str, Any]] = {}
        self.interactions: dict[str, Interaction] = {}
        self.requests: list[RecordedRequest] = []
        self.reactions: list[tuple[int, int, str]] = []
        # (channel id, slowmode seconds) of every channel edit the bot made, in order.
        self.channel_edits: list[tuple[int, int]] = []
        self.failures: list[tuple[str, re.Pattern[str], int, float]] = []
        # Requests refused as Discord would refuse them (a test fails on any it did not expect).
        self.refused: list[tuple[RecordedRequest, list[str]]] = []
        self.message_content_allowed = True
        self.general = self.guilds[self.guild_id].general = self.channel("general")
        self.add_member(self.owner)
        self.add_member(self.bot_user, roles=[self.bot_role])
        self.gateway = GatewayHub(self)
        self.bot_message_event = asyncio.Event()
        # Attachments: their payloads by id, their bytes, and which were downloaded.
        self.http_base = "http://127.0.0.1"  # the server's address, set once it listens
        self.attachments: dict[str, dict[str, Any]] = {}
        self.files: dict[str, LoopbackFile] = {}
        self.downloads: list[str] = []

    # --- building the world -------------------------------------------------------

    def snowflake(self, at: datetime | None = None) -> int:
        seconds = at.timestamp() if at is not None else time.time()
        ms = int(seconds * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def snowflake_on_shard(self, shard_id: int, shard_count: int) -> int:
        """A guild id that Discord's formula puts on ``shard_id`` of ``shard_count``."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        ms += (shard_id - ms) % shard_count
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def add_guild(
        self, name: str = "Second Guild", shard: tuple[int, int] = (1, 2)
    ) -> LoopbackGuild:
        """Another server, on ``shard`` (id, count), with a #general channel, the owner and the
        bot as members. Add it before the bot connects (READY lists the guilds)."""
        guild_id = self.snowflake_on_shard(*shard)
        everyone = {**self.everyone_role, "id": str(guild_id)}
        bot_role = self.role("hf-bot", MANAGE_MESSAGES | MODERATE_MEMBERS, position=5)
        guild = LoopbackGuild(guild_id, name, everyone, bot_role, [everyone, bot_role], {})
        self.guilds[guild_id] = guild
        guild.general = self.channel("general", guild_id=guild_id)
        self.add_member(self.owner, guild_id=guild_id)
        self.add_member(self.bot_user, roles=[bot_role], guild_id=guild_id)
        return guild

    def guild_of_channel(self, channel_id: int) -> LoopbackGuild:
        """The guild a channel belongs to (the default guild for unknown channels)."""
        channel = self.channels.get(channel_id)
        return self.guilds[int(channel["guild_id"]) if channel else self.guild_id]

    def guilds_of_shard(self, shard_id: int, shard_count: int) -> list[int]:
        """Ids of the guilds whose events go to that shard."""
        return [g for g in self.guilds if shard_of(g, shard_count) == shard_id]

    def user(self, name: str, *, bot: bool = False, user_id: int | None = None) -> dict[str, Any]:
        return {
            "id": str(user_id or self.snowflake()),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "bot": bot,
        }

    def role(self, name: str, permissions: int, position: int) -> dict[str, Any]:
        return {
            "id": str(self.snowflake()),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def add_role(
        self, name: str, permissions: int, position: int, *, guild_id: int | None = None
    ) -> dict[str, Any]:
        role = self.role(name, permissions, position)
        self.guilds[guild_id or self.guild_id].roles.append(role)
        return role

    def channel(self, name: str, *, cached: bool = True, guild_id: int | None = None) -> int:
        """A text channel; ``cached=False`` keeps it out of GUILD_CREATE (the bot must fetch it)."""
        channel_id = self.snowflake()
        self.channels[channel_id] = {
            "id": str(channel_id),
            "type": 0,
            "name": name,
            "position": len(self.channels),
            "guild_id": str(guild_id or self.guild_id),
            "permission_overwrites": [],
            "nsfw": False,
        }
        self.messages[channel_id] = []
        if not cached:
            self.uncached.add(channel_id)
        return channel_id

    def forum(self, name: str, *, guild_id: int | None = None) -> int:
        """A forum channel: no messages of its own, every post is a thread of it."""
        forum_id = self.channel(name, guild_id=guild_id)
        self.channels[forum_id].update(
            type=FORUM,
            available_tags=[],
            default_reaction_emoji=None,
            default_sort_order=None,
            default_forum_layout=0,
            default_thread_rate_limit_per_user=0,
            rate_limit_per_user=0,
            topic=None,
            flags=0,
        )
        return forum_id

    async def forum_post(
        self, forum_id: int, title: str, author: dict[str, Any], content: str
    ) -> tuple[int, dict[str, Any]]:
        """A member opens a forum post: THREAD_CREATE, then its starter message, whose id is
        the thread's (as on Discord). Returns the post's id and that message."""
        post_id = self.thread(forum_id, title, owner_id=int(author["id"]))
        await self.gateway.dispatch(
            "THREAD_CREATE", {**self.channels[post_id], "newly_created": True}
        )
        message = self.message_payload(post_id, author, content, id=str(post_id))
        self.messages[post_id].append(message)
        await self.gateway.dispatch("MESSAGE_CREATE", self._as_event(message))
        return post_id, message

    def thread(
        self,
        parent_id: int,
        name: str,
        *,
        private: bool = False,
        cached: bool = True,
        owner_id: int | None = None,
    ) -> int:
        """A thread of a channel (in GUILD_CREATE's threads unless ``cached=False``)."""
        thread_id = self.snowflake()
        now = iso(datetime.now(UTC))
        self.channels[thread_id] = {
            "id": str(thread_id),
            "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
            "name": name,
            "guild_id": self.channels[parent_id]["guild_id"],
            "parent_id": str(parent_id),
            "owner_id": str(owner_id) if owner_id else self.owner["id"],
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        self.messages[thread_id] = []
        if not cached:
            self.uncached.add(thread_id)
        return thread_id

    async def open_thread(self, parent_id: int, name: str, *, private: bool = False) -> int:
        """A thread created while the bot is connected (THREAD_CREATE)."""
        thread_id = self.thread(parent_id, name, private=private)
        await self.gateway.dispatch(
            "THREAD_CREATE", {**self.channels[thread_id], "newly_created": True}
        )
        return thread_id

    def set_overwrite(
        self,
        channel_id: int,
        target_id: int | str,
        *,
        member: bool = False,
        allow: int = 0,
        deny: int = 0,
    ) -> None:
        """Set a channel's permission overwrite for a role (or a member)."""
        overwrites = self.channels[channel_id]["permission_overwrites"]
        overwrites[:] = [o for o in overwrites if o["id"] != str(target_id)]
        overwrites.append(
            {
                "id": str(target_id),
                "type": MEMBER_OVERWRITE if member else ROLE_OVERWRITE,
                "allow": str(allow),
                "deny": str(deny),
            }
        )

    def add_member(
        self,
        user: dict[str, Any],
        roles: list[dict[str, Any]] | None = None,
        *,
        guild_id: int | None = None,
    ) -> int:
        user_id = int(user["id"])
        self.guilds[guild_id or self.guild_id].members[user_id] = {
            "user": user,
            "roles": [r["id"] for r in roles or []],
            "joined_at": iso(datetime.now(UTC)),
            "flags": 0,
            "deaf": False,
            "mute": False,
            "communication_disabled_until": None,
        }
        return user_id

    def member_permissions(
        self, user_id: int, channel_id: int | None = None, *, guild_id: int | None = None
    ) -> int:
        """A member's permissions in the guild, or in a channel as Discord computes them.

        Roles first, then the channel's overwrites: @everyone's, the member's roles' (all
        denies, then all allows), then the member's own. A thread uses its parent's.
        """
        if user_id == int(self.owner["id"]):
            return ALL_PERMISSIONS
        if channel_id is not None:
            guild_id = int(self.channels[channel_id]["guild_id"])
        guild = self.guilds[guild_id or self.guild_id]
        role_ids = set(guild.members[user_id]["roles"])
        permissions = int(guild.everyone_role["permissions"])
        for role in guild.roles:
            if role["id"] in role_ids:
                permissions |= int(role["permissions"])
        if permissions & ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel_id is None:
            return permissions
        channel = self.channels[channel_id]
        if "parent_id" in channel:
            channel = self.channels[int(channel["parent_id"])]
        overwrites = {o["id"]: o for o in channel.get("permission_overwrites") or []}

        def apply(permissions: int, allow: int, deny: int) -> int:
            return (permissions & ~deny) | allow

        everyone = overwrites.get(str(guild.id))
        if everyone is not None:
            permissions = apply(permissions, int(everyone["allow"]), int(everyone["deny"]))
        allow = deny = 0
        for role_id in role_ids:
            overwrite = overwrites.get(role_id)
            if overwrite is not None and overwrite["type"] == ROLE_OVERWRITE:
                allow, deny = allow | int(overwrite["allow"]), deny | int(overwrite["deny"])
        permissions = apply(permissions, allow, deny)
        own = overwrites.get(str(user_id))
        if own is not None and own["type"] == MEMBER_OVERWRITE:
            permissions = apply(permissions, int(own["allow"]), int(own["deny"]))
        # Who cannot view a channel has no permission in it at all.
        return permissions if permissions & VIEW_CHANNEL else 0

    def top_position(self, user_id: int, guild_id: int | None = None) -> int:
        guild = self.guilds[guild_id or self.guild_id]
        role_ids = set(guild.members[user_id]["roles"])
        return max((r["position"] for r in guild.roles if r["id"] in role_ids), default=0)

    def guild_payload(self, guild_id: int | None = None) -> dict[str, Any]:
        guild = self.guilds[guild_id or self.guild_id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "owner_id": self.owner["id"],
            "member_count": len(guild.members),
            "roles": guild.roles,
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [
                c
                for i, c in self.channels.items()
                if c["guild_id"] == str(guild.id)
                and c["type"] not in THREAD_TYPES
                and i not in self.uncached
            ],
            "members": list(guild.members.values()),
            "threads": [
                c
                for i, c in self.channels.items()
                if c["guild_id"] == str(guild.id)
                and c["type"] in THREAD_TYPES
                and i not in self.uncached
            ],
            "presences": [],
            "voice_states": [],
            "large": False,
            "unavailable": False,
            "joined_at": iso(datetime.now(UTC)),
            "icon": None,
            "splash": None,
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "afk_timeout": 300,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "system_channel_flags": 0,
        }

    def message_payload(
        self,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        at: datetime | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        at = at or datetime.now(UTC)
        guild = self.guild_of_channel(channel_id)
        payload = {
            "id": str(self.snowflake(at)),
            "channel_id": str(channel_id),
            "guild_id": str(guild.id),
            "author": author,
            "content": content,
            "timestamp": iso(at),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        member = guild.members.get(int(author["id"]))
        if member is not None:
            payload["member"] = {k: v for k, v in member.items() if k != "user"}
        payload.update(extra)
        return payload

    # --- failures -----------------------------------------------------------------

    def fail_with_429(
        self, method: str, path_pattern: str, times: int = 1, retry_after: float = 0.2
    ) -> None:
        """Answer the next ``times`` matching requests with a 429 and ``retry_after``."""
        for _ in range(times):
            self.failures.append((method, re.compile(path_pattern), 429, retry_after))

    def fail_with(self, method: str, path_pattern: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` (e.g. 403, 404)."""
        for _ in range(times):
            self.failures.append((method, re.compile(path_pattern), status, 0.0))

    def _take_failure(self, method: str, path: str) -> tuple[int, float] | None:
        for index, (f_method, pattern, status, retry_after) in enumerate(self.failures):
            if f_method == method and pattern.search(path):
                del self.failures[index]
                return status, retry_after
        return None

    # --- the aiohttp app ------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        # Every address also exists under /c/{client}/, so that a test can tell bot processes
        # apart: each is given its own DISCORD_API_BASE and DISCORD_GATEWAY_URL.
        for prefix in ("", "/c/{client}"):
            self._add_routes(app, prefix)
        return app

    def _add_routes(self, app: web.Application, prefix: str) -> None:
        api = f"{prefix}/api/v10"
        r = app.router
        r.add_get(f"{api}/gateway/bot", self._gateway_bot)
        r.add_get(f"{api}/users/@me", self._me)
        r.add_get(f"{api}/oauth2/applications/@me", self._application)
        r.add_put(f"{api}/applications/{{app}}/commands", self._sync_commands)
        r.add_put(f"{api}/applications/{{app}}/guilds/{{guild}}/commands", self._sync_commands)
        r.add_post(f"{api}/interactions/{{iid}}/{{token}}/callback", self._callback)
        r.add_post(f"{api}/webhooks/{{app}}/{{token}}", self._followup)
        r.add_route(
            "*", f"{api}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._webhook_message
        )
        r.add_get(f"{api}/channels/{{cid}}", self._get_channel)
        r.add_patch(f"{api}/channels/{{cid}}", self._edit_channel)
        r.add_get(f"{api}/channels/{{cid}}/messages", self._history)
        r.add_post(f"{api}/channels/{{cid}}/messages", self._create_message)
        r.add_patch(f"{api}/channels/{{cid}}/messages/{{mid}}", self._edit_message)
        r.add_delete(f"{api}/channels/{{cid}}/messages/{{mid}}", self._delete_message)
        r.add_post(f"{api}/channels/{{cid}}/typing", self._no_content)
        r.add_put(f"{api}/channels/{{cid}}/messages/{{mid}}/reactions/{{emoji}}/@me", self._react)
        r.add_patch(f"{api}/guilds/{{gid}}/members/{{uid}}", self._edit_member)
        r.add_get(f"{api}/guilds/{{gid}}/members/{{uid}}", self._get_member)
        r.add_get(f"{prefix}/gateway", self.gateway.handle)
        r.add_get(f"{prefix}/attachments/{{aid}}/{{filename}}", self._serve_file)

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        client = request.match_info.get("client", "")
        path = request.path.removeprefix(f"/c/{client}") if client else request.path
        if path == "/gateway" or path.startswith("/attachments/"):  # the CDN needs no token
            return await handler(request)
        body: Any = None
        if request.content_type == "application/json" and request.can_read_body:
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            body = await self._read_multipart(request)
        authorized = request.headers.get("Authorization") == f"Bot {self.token}"
        self.requests.append(
            RecordedRequest(
                request.method, path, dict(request.query), body, authorized, client=client
            )
        )
        request[BODY] = body
        failure = self._take_failure(request.method, path)
        if failure is not None:
            status, retry_after = failure
            if status != 429:
                return json_response(
                    {"message": f"failed on purpose ({status})", "code": 0}, status
                )
            return web.Response(
                body=json.dumps(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": retry_after,
                        "global": False,
                    }
                ).encode(),
                status=status,
                headers={"Content-Type": "application/json", "Via": "1.1 google"},
            )
        if not path.startswith(("/api/v10/webhooks", "/api/v10/interactions")) and not authorized:
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        errors = self._invalid_body(request.method, path, body)
        if errors:
            self.refused.append((self.requests[-1], errors))
            return json_response(
                {"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400
            )
        return await handler(request)

    def _invalid_body(self, method: str, path: str, body: Any) -> list[str]:
        if method not in ("POST", "PATCH") or not isinstance(body, dict):
            return []
        if path.endswith("/callback"):  # an interaction response carries its message in data
            return limit_errors(body.get("data") or {})
        if "/messages" in path or path.startswith("/api/v10/webhooks"):
            errors = limit_errors(body)
            reference = body.get("message_reference")
            if (
                method == "POST"
                and reference
                and reference.get("fail_if_not_exists", True)
                and self._find_message(int(reference["channel_id"]), int(reference["message_id"]))
                is None
            ):
                errors.append("a reply to a message that no longer exists")
            return errors
        return []

    async def _read_multipart(self, request: web.Request) -> dict[str, Any]:
        reader = await request.multipart()
        body: dict[str, Any] = {"files": []}
        async for part in reader:
            if part.name == "payload_json":  # type: ignore[union-attr]
                body.update(json.loads(await part.text()))  # type: ignore[union-attr]
            else:
                body["files"].append(
                    {
                        "name": part.filename,  # type: ignore[union-attr]
                        "data": await part.read(),
                    }
                )  # type: ignore[union-attr]
        return body

    def attachment(
        self,
        filename: str,
        data: bytes,
        *,
        size: int | None = None,
        delay_s: float = 0.0,
        content_encoding: str | None = None,
        content_type: str = "text/plain; charset=utf-8",
    ) -> dict[str, Any]:
        """An uploaded file: its payload for a message or an interaction, its bytes served at
        its ``url`` (``size`` may lie about them, ``delay_s`` holds the download back)."""
        attachment_id = str(self.snowflake())
        url = f"{self.http_base}/attachments/{attachment_id}/{filename}"
        payload = {
            "id": attachment_id,
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        self.attachments[attachment_id] = payload
        self.files[attachment_id] = LoopbackFile(data, delay_s, content_encoding)
        return payload

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        attachment_id = request.match_info["aid"]
        file = self.files.get(attachment_id)
        if file is None:
            return web.Response(status=404)
        self.downloads.append(attachment_id)
        await asyncio.sleep(file.delay_s)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if file.content_encoding:
            response.headers["Content-Encoding"] = file.content_encoding
        await response.prepare(request)
        for start in range(0, len(file.data), 64 * 1024):
            await response.write(file.data[start : start + 64 * 1024])
        await response.write_eof()
        return response

    async def _me(self, request: web.Request) -> web.Response:
        return json_response(self.bot_user)

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.gateway.url_for(request.match_info.get("client", "")),
                "shards": self.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _application(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(self.application_id),
                "name": "hf-bot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner,
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _sync_commands(self, request: web.Request) -> web.Response:
        problems = [p for command in request[BODY] for p in _command_problems(command)]
        if problems:  # Discord refuses the whole sync, as here
            return json_response({"message": "Invalid Form Body", "errors": problems}, 400)
        synced = []
        for command in request[BODY]:
            stored = {
                "description": "",
                "options": [],
                **command,
                "id": str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": "1",
            }
            if "guild" in request.match_info:
                stored["guild_id"] = request.match_info["guild"]
            self.commands[command["name"]] = stored
            synced.append(stored)
        return json_response(synced)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions[request.match_info["iid"]]
        body = request[BODY]
        interaction.callback_type = body["type"]
        interaction.callback_at = time.perf_counter()
        data = body.get("data") or {}
        message = None
        if body["type"] == 4:  # message now
            message = self._interaction_message(interaction, data)
            interaction.original = message
            interaction.answered.set()
        elif body["type"] == 5:  # deferred ("thinking")
            interaction.deferred_flags = data.get("flags", 0)
            message = self._interaction_message(interaction, {"content": "", **data})
        elif body["type"] == 6:  # deferred update of the clicked message: nothing shown yet
            pass
        elif body["type"] == 7 and interaction.message is not None:  # update the clicked message
            interaction.message.update(
                {k: v for k, v in data.items() if k in ("content", "embeds", "components")}
            )
            interaction.original = message = interaction.message
            interaction.answered.set()
            await self.gateway.dispatch("MESSAGE_UPDATE", interaction.message)
        resource: dict[str, Any] = {"type": body["type"]}
        if message is not None:
            resource["message"] = message
        return json_response(
            {"interaction": {"id": interaction.id, "type": 2}, "resource": resource}
        )

    def _interaction_message(
        self, interaction: Interaction, data: dict[str, Any]
    ) -> dict[str, Any]:
        return self.message_payload(
            interaction.channel_id,
            self.bot_user,
            data.get("content") or "",
            embeds=data.get("embeds") or [],
            flags=data.get("flags", 0),
            components=data.get("components") or [],
            attachments=self._attachments(data),
            webhook_id=str(self.application_id),
        )

    def _attachments(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": str(self.snowflake()),
                "filename": f["name"],
                "size": len(f["data"]),
                "url": "http://127.0.0.1/x",
                "proxy_url": "http://127.0.0.1/x",
            }
            for f in body.get("files") or []
        ]

    def _interaction_by_token(self, token: str) -> Interaction:
        return next(i for i in self.interactions.values() if i.token == token)

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction_by_token(request.match_info["token"])
        body = request[BODY] or {}
        message = self._interaction_message(interaction, body)
        if interaction.callback_type == 5 and interaction.original is None:
            # The first followup after a defer replaces the "thinking" message.
            interaction.original = message
        else:
            interaction.followups.append(message)
        interaction.answered.set()
        self._notify_bot_message()
        return json_response(message)

    async def _webhook_message(self, request: web.Request) -> web.Response:
        interaction = self._interaction_by_token(request.match_info["token"])
        message_id = request.match_info["mid"]
        original = interaction.original
        if original is None and interaction.callback_type == 6 and message_id == "@original":
            # After a deferred update, the original response is the clicked message itself.
            original = interaction.original = interaction.message
        if message_id == "@original" or (original is not None and original["id"] == message_id):
            target = original
        else:
            target = next((m for m in interaction.followups if m["id"] == message_id), None)
        if request.method == "GET":
            return (
                json_response(target)
                if target
                else json_response({"message": "Unknown Message", "code": 10008}, 404)
            )
        if request.method == "DELETE":
            if target is interaction.original:
                interaction.original = None
            return web.Response(status=204)
        body = request[BODY] or {}
        if target is None:
            target = self._interaction_message(interaction, body)
            interaction.original = target
        for key in ("content", "embeds", "components", "attachments", "flags"):
            if key in body:
                target[key] = body[key]
        target["edited_timestamp"] = iso(datetime.now(UTC))
        interaction.edits.append(dict(body))
        interaction.answered.set()
        if target is interaction.message:
            await self.gateway.dispatch("MESSAGE_UPDATE", target)
        self._notify_bot_message()
        return json_response(target)

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(int(request.match_info["cid"]))
        if channel is None:
            return json_response({"message": "Unknown Channel", "code": 10003}, 404)
        return json_response(channel)

    async def _edit_channel(self, request: web.Request) -> web.Response:
        """Slowmode (``rate_limit_per_user``, 0-21600 s) needs Manage Channels, as on Discord."""
        channel_id = int(request.match_info["cid"])
        channel = self.channels.get(channel_id)
        if channel is None:
            return json_response({"message": "Unknown Channel", "code": 10003}, 404)
        if not self.member_permissions(int(self.bot_user["id"]), channel_id) & MANAGE_CHANNELS:
            return json_response({"message": "Missing Permissions", "code": 50013}, 403)
        body = request[BODY] or {}
        unknown = set(body) - {"rate_limit_per_user"}
        delay = body.get("rate_limit_per_user", channel.get("rate_limit_per_user", 0))
        if unknown or not isinstance(delay, int) or not 0 <= delay <= 21600:
            return json_response({"message": "Invalid Form Body", "code": 50035}, 400)
        channel["rate_limit_per_user"] = delay
        self.channel_edits.append((channel_id, delay))
        await self.update_channel(channel_id)
        return json_response(channel)

    async def _history(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["cid"])
        needed = VIEW_CHANNEL | READ_MESSAGE_HISTORY
        if self.member_permissions(int(self.bot_user["id"]), channel_id) & needed != needed:
            return json_response({"message": "Missing Access", "code": 50001}, 403)
        channel = self.messages[channel_id]
        limit = int(request.query.get("limit", 50))
        before = int(request.query.get("before", 1 << 63))
        after = int(request.query.get("after", 0))
        picked = [m for m in channel if after < int(m["id"]) < before]
        # Discord returns newest first; with only `after`, the oldest ones after it.
        if "after" in request.query and "before" not in request.query:
            picked = picked[:limit]
        else:
            picked = picked[-limit:]
        return json_response(list(reversed(picked)))

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["cid"])
        body = request[BODY] or {}
        channel = self.channels.get(channel_id)
        # In a thread (or forum post) the parent's overwrites decide, with their own permission.
        needed = SEND_MESSAGES_IN_THREADS if channel and "parent_id" in channel else SEND_MESSAGES
        if (
            channel is not None
            and not self.member_permissions(int(self.bot_user["id"]), channel_id) & needed
        ):
            return json_response({"message": "Missing Permissions", "code": 50013}, 403)
        extra = {k: body[k] for k in ("embeds", "components", "flags") if k in body}
        extra["attachments"] = self._attachments(body)
        reference = body.get("message_reference")
        if reference and self._find_message(channel_id, int(reference["message_id"])):
            extra["message_reference"] = reference  # (an unknown one is dropped, as Discord does)
        message = self.message_payload(
            channel_id, self.bot_user, body.get("content") or "", **extra
        )
        self.messages[channel_id].append(message)
        await self.gateway.dispatch("MESSAGE_CREATE", message)
        self._notify_bot_message()
        return json_response(message)

    def _find_message(self, channel_id: int, message_id: int) -> dict[str, Any] | None:
        return next(
            (m for m in self.messages.get(channel_id, []) if int(m["id"]) == message_id), None
        )

    async def _edit_message(self, request: web.Request) -> web.Response:
        channel_id, message_id = int(request.match_info["cid"]), int(request.match_info["mid"])
        message = self._find_message(channel_id, message_id)
        if message is None:
            return json_response({"message": "Unknown Message", "code": 10008}, 404)
        message.update(
            {
                k: v
                for k, v in (request[BODY] or {}).items()
                if k in ("content", "embeds", "components", "flags")
            }
        )
        message["edited_timestamp"] = iso(datetime.now(UTC))
        await self.gateway.dispatch("MESSAGE_UPDATE", message)
        self._notify_bot_message()
        return json_response(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        channel_id, message_id = int(request.match_info["cid"]), int(request.match_info["mid"])
        message = self._find_message(channel_id, message_id)
        if message is None:
            return json_response({"message": "Unknown Message", "code": 10008}, 404)
        bot_id = int(self.bot_user["id"])
        if (
            int(message["author"]["id"]) != bot_id
            and not self.member_permissions(bot_id, channel_id) & MANAGE_MESSAGES
        ):
            return json_response({"message": "Missing Permissions", "code": 50013}, 403)
        self.messages[channel_id].remove(message)
        guild_id = self.guild_of_channel(channel_id).id
        await self.gateway.dispatch(
            "MESSAGE_DELETE",
            {"id": str(message_id), "channel_id": str(channel_id), "guild_id": str(guild_id)},
        )
        return web.Response(status=204)

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _react(self, request: web.Request) -> web.Response:
        self.reactions.append(
            (
                int(request.match_info["cid"]),
                int(request.match_info["mid"]),
                request.match_info["emoji"],
            )
        )
        return web.Response(status=204)

    async def _get_member(self, request: web.Request) -> web.Response:
        guild = self.guilds[int(request.match_info["gid"])]
        member = guild.members.get(int(request.match_info["uid"]))
        if member is None:
            return json_response({"message": "Unknown Member", "code": 10007}, 404)
        return json_response(member)

    async def _edit_member(self, request: web.Request) -> web.Response:
        user_id = int(request.match_info["uid"])
        guild = self.guilds[int(request.match_info["gid"])]
        bot_id = int(self.bot_user["id"])
        if (
            not self.member_permissions(bot_id, guild_id=guild.id) & MODERATE_MEMBERS
            or user_id == int(self.owner["id"])
            or self.top_position(user_id, guild.id) >= self.top_position(bot_id, guild.id)
        ):
            return json_response({"message": "Missing Permissions", "code": 50013}, 403)
        member = guild.members[user_id]
        until = (request[BODY] or {}).get("communication_disabled_until")
        member["communication_disabled_until"] = until
        await self.gateway.dispatch("GUILD_MEMBER_UPDATE", {**member, "guild_id": str(guild.id)})
        return json_response(member)

    def _notify_bot_message(self) -> None:
        self.bot_message_event.set()

    # --- acting as users --------------------------------------------------------------

    async def update_channel(self, channel_id: int, **fields: Any) -> None:
        """Tell the bot a channel changed (CHANNEL_UPDATE), e.g. its overwrites, or ``fields``
        a moderator changed in Discord's own app (``rate_limit_per_user=120``)."""
        channel = self.channels[channel_id]
        channel.update(fields)
        event = "THREAD_UPDATE" if channel["type"] in THREAD_TYPES else "CHANNEL_UPDATE"
        await self.gateway.dispatch(event, channel)

    async def delete_thread(self, thread_id: int) -> None:
        """A moderator deletes a thread with its messages (THREAD_DELETE only, as Discord)."""
        thread = self.channels.pop(thread_id)
        self.messages.pop(thread_id)
        fields = ("id", "guild_id", "parent_id", "type")
        await self.gateway.dispatch("THREAD_DELETE", {k: thread[k] for k in fields})

    async def remove_bot(self) -> None:
        """The bot is kicked from the guild (GUILD_DELETE without ``unavailable``)."""
        await self.gateway.dispatch("GUILD_DELETE", {"id": str(self.guild_id)})

    def bot_messages(self, channel_id: int) -> list[dict[str, Any]]:
        return [m for m in self.messages[channel_id] if m["author"]["id"] == self.bot_user["id"]]

    async def post_message(
        self, channel_id: int, author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        message = self.message_payload(channel_id, author, content, **extra)
        self.messages[channel_id].append(message)
        await self.gateway.dispatch("MESSAGE_CREATE", self._as_event(message))
        return message

    async def edit_message(self, message: dict[str, Any], content: str) -> None:
        """A member edits their message (MESSAGE_UPDATE)."""
        message["content"] = content
        message["edited_timestamp"] = iso(datetime.now(UTC))
        await self.gateway.dispatch("MESSAGE_UPDATE", self._as_event(message))

    async def delete_messages(self, channel_id: int, messages: list[dict[str, Any]]) -> None:
        """Members or moderators delete messages: MESSAGE_DELETE for one, MESSAGE_DELETE_BULK
        for several (as Discord sends for a bulk delete or a ban that purges messages)."""
        for message in messages:
            if message in self.messages[channel_id]:
                self.messages[channel_id].remove(message)
        where = {"channel_id": str(channel_id), "guild_id": str(self.guild_id)}
        if len(messages) == 1:
            await self.gateway.dispatch("MESSAGE_DELETE", {"id": messages[0]["id"], **where})
        else:
            await self.gateway.dispatch(
                "MESSAGE_DELETE_BULK", {"ids": [m["id"] for m in messages], **where}
            )

    def _as_event(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the gateway sends it: with the author's member data, content per intent."""
        visible = dict(message)
        guild = self.guild_of_channel(int(message["channel_id"]))
        member = guild.members.get(int(message["author"]["id"]))
        if member is not None:
            visible["member"] = {k: v for k, v in member.items() if k != "user"}
        if not self.message_content_allowed:
            visible["content"] = ""
        return visible

    def seed_history(
        self,
        channel_id: int,
        author: dict[str, Any],
        contents: list[str],
        spacing: timedelta = timedelta(seconds=30),
    ) -> list[dict[str, Any]]:
        """Messages that were already in the channel before the bot looked (no events)."""
        start = datetime.now(UTC) - spacing * len(contents)
        seeded = []
        for index, content in enumerate(contents):
            message = self.message_payload(channel_id, author, content, start + spacing * index)
            self.messages[channel_id].append(message)
            seeded.append(message)
        return seeded

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: dict[str, Any] | None = None,
        channel_id: int | None = None,
        command_type: int = 1,
        target_id: int | None = None,
        resolved: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Interaction:
        """Send INTERACTION_CREATE for a registered application command."""
        user = user or self.owner
        channel_id = channel_id or self.general
        command = self.commands[name]
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": command_type,
            "guild_id": str(self.guild_of_channel(channel_id).id),
        }
        if options:
            data["options"] = self._options(command, options)
            resolved = {**self._resolved(data["options"], int(user["id"])), **(resolved or {})}
        if target_id is not None:
            data["target_id"] = str(target_id)
        if resolved:
            data["resolved"] = resolved
        return await self._interact(name, 2, data, user, channel_id, created_at=created_at)

    async def click(
        self, message: dict[str, Any], custom_id: str, *, user: dict[str, Any] | None = None
    ) -> Interaction:
        """Press a button of a message (INTERACTION_CREATE of type MESSAGE_COMPONENT)."""
        data = {"custom_id": custom_id, "component_type": 2}
        user = user or self.owner
        return await self._interact(
            custom_id, 3, data, user, int(message["channel_id"]), message=message
        )

    async def _interact(
        self,
        name: str,
        kind: int,
        data: dict[str, Any],
        user: dict[str, Any],
        channel_id: int,
        message: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Interaction:
        interaction = Interaction(
            str(self.snowflake(created_at)),
            f"tok{next(self._ids)}",
            name,
            channel_id,
            int(user["id"]),
            time.perf_counter(),
            message=message,
        )
        self.interactions[interaction.id] = interaction
        guild = self.guild_of_channel(channel_id)
        member = {k: v for k, v in guild.members[int(user["id"])].items() if k != "user"}
        payload = {
            "id": interaction.id,
            "type": kind,
            "token": interaction.token,
            "version": 1,
            "application_id": str(self.application_id),
            "attachment_size_limit": 8 << 20,
            "guild_id": str(guild.id),
            "channel_id": str(channel_id),
            "channel": self.channels[channel_id],
            "member": {
                **member,
                "user": user,
                "permissions": str(self.member_permissions(int(user["id"]), channel_id)),
            },
            "locale": "en-US",
            "guild_locale": "en-US",
            "app_permissions": str(self.member_permissions(int(self.bot_user["id"]), channel_id)),
            "context": 0,
            "authorizing_integration_owners": {"0": str(guild.id)},
            "entitlements": [],
            "data": data,
        }
        if message is not None:
            payload["message"] = message
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _resolved(self, options: list[dict[str, Any]], user_id: int) -> dict[str, Any]:
        """Channel and role options come with their objects, as Discord sends them (a channel
        with the invoking member's permissions in it)."""
        resolved: dict[str, dict[str, Any]] = {}
        for option in options:
            if option["type"] in (1, 2):
                for kind, found in self._resolved(option.get("options") or [], user_id).items():
                    resolved.setdefault(kind, {}).update(found)
            elif option["type"] == 7:
                permissions = self.member_permissions(user_id, int(option["value"]))
                channel = {**self.channels[int(option["value"])], "permissions": str(permissions)}
                resolved.setdefault("channels", {})[str(option["value"])] = channel
            elif option["type"] == 11:  # an attachment option: its file, as Discord sends it
                attachment = self.attachments[str(option["value"])]
                resolved.setdefault("attachments", {})[str(option["value"])] = attachment
            elif option["type"] == 8:
                roles = (r for guild in self.guilds.values() for r in guild.roles)
                role = next(r for r in roles if r["id"] == str(option["value"]))
                resolved.setdefault("roles", {})[str(option["value"])] = role
        return resolved

    def _options(self, command: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
        options = command.get("options") or []
        # A subcommand: {"enable": {}} or {"configure": {"threshold": 0.5}}.
        if len(values) == 1 and options and options[0].get("type") in (1, 2):
            ((sub_name, sub_values),) = values.items()
            sub = next(o for o in options if o["name"] == sub_name)
            return [
                {
                    "name": sub_name,
                    "type": sub["type"],
                    "options": self._options(sub, sub_values or {}),
                }
            ]
        by_name = {o["name"]: o for o in options}
        return [
            {"name": k, "type": by_name[k]["type"], "value": v["id"] if isinstance(v, dict) else v}
            for k, v in values.items()
        ]


__all__ = ["FakeDiscord", "Interaction", "WSMsgType"]
