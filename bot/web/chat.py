"""The chat tab: the tutorials' ChatInterface over the bot's conversation service.

Each browser session is one channel of the ``web`` pseudo-guild, so its conversation is
stored, trimmed and browsable like a Discord channel's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import gradio as gr
from cachetools import LRUCache

from bot.services.conversations import DEFAULT_PERSONA, ConversationService, Speaker
from bot.web.access import WEB_GUILD_ID, web_channel_id
from bot.web.errors import friendly, friendly_stream

VISITOR_NAME = "visitor"
# Sessions whose persona was applied, so that an unchanged persona costs no write per message.
REMEMBERED_SESSIONS = 10_000


class WebChat:
    """Answers the chat tab's messages through the conversation service."""

    def __init__(self, conversations: ConversationService) -> None:
        self._conversations = conversations
        self._personas: LRUCache[int, str] = LRUCache(REMEMBERED_SESSIONS)

    async def _apply_persona(self, channel_id: int, persona: str) -> None:
        persona = persona.strip()
        if self._personas.get(channel_id) == persona:
            return
        await self._conversations.set_persona(WEB_GUILD_ID, channel_id, persona or None)
        self._personas[channel_id] = persona

    async def respond(
        self, message: str, history: list[Any], persona: str, request: gr.Request
    ) -> AsyncGenerator[str, None]:
        """Stream the answer to ``message`` (the whole answer so far, as ChatInterface wants)."""
        del history  # the stored conversation is the memory, trimmed like a channel's
        session = request.session_hash or "no-session"
        channel_id = web_channel_id(session)
        await self._apply_persona(channel_id, persona or "")
        speaker = Speaker(WEB_GUILD_ID, channel_id, channel_id, request.username or VISITOR_NAME)
        answer = ""
        stream = self._conversations.respond(speaker, message)
        async with contextlib.aclosing(stream):  # a closed page stops the generation
            async for piece in stream:
                answer += piece
                yield answer
        if not answer.strip():
            yield "(no answer - the model returned nothing; try rephrasing)"

    async def forget(self, request: gr.Request) -> None:
        """The page's Clear button: the session's stored conversation starts over too."""
        channel_id = web_channel_id(request.session_hash or "no-session")
        await self._conversations.reset(WEB_GUILD_ID, channel_id)


def chat_tab(conversations: ConversationService) -> gr.ChatInterface:
    """The chat tab's components (call inside a gr.Blocks)."""
    chat = WebChat(conversations)
    persona = gr.Textbox(
        label="Persona (system prompt; empty: the default)",
        placeholder=DEFAULT_PERSONA,
        lines=2,
        max_length=1000,
        render=False,  # ChatInterface renders it in its accordion
    )
    interface = gr.ChatInterface(
        friendly_stream(chat.respond),
        additional_inputs=[persona],
        additional_inputs_accordion=gr.Accordion("Persona", open=False, render=False),
        api_name="chat",
        description="Chat with the bot's model. This conversation is remembered per browser "
        "session, like a Discord channel's, and operators can see it in the dashboard.",
        fill_height=False,
        analytics_enabled=False,
        # Many sessions at once: the engine batches them and refuses what it cannot queue.
        concurrency_limit=None,
    )
    interface.chatbot.clear(friendly(chat.forget), None, None, api_name="clear_chat")
    return interface
