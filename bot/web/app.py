"""The page: chat, analyze and dashboard tabs over the bot's services."""

from __future__ import annotations

import gradio as gr

from bot.services.container import Services
from bot.web.analyze import analyze_tab
from bot.web.chat import chat_tab
from bot.web.dashboard import dashboard_tab

TITLE = "discord-hf-bot"


def build_page(services: Services, *, protected: bool) -> gr.Blocks:
    """The Gradio page; ``protected``: a login guards it (WEB_PASSWORD)."""
    page = gr.Blocks(title=TITLE, analytics_enabled=False)
    with page:
        gr.Markdown(f"# {TITLE}")
        with gr.Tab("Chat", elem_id="tab-chat"):
            chat_tab(services.conversations)
        with gr.Tab("Analyze", elem_id="tab-analyze"):
            analyze_tab(services.sentiment, services.summaries)
        with gr.Tab("Dashboard", elem_id="tab-dashboard"):
            guild, load_guilds = dashboard_tab(
                services.moderation, services.conversations, protected=protected
            )
        page.load(load_guilds, None, [guild], api_visibility="private")
    return page
