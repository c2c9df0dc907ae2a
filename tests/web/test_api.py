"""The web app through its API, as gradio_client (and any script) uses it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from bot.storage.records import Role
from bot.web.access import WEB_GUILD_ID, web_channel_id
from tests.web.conftest import (
    CHANNEL_ID,
    FLAGGED_CHANNEL_ID,
    GUILD_ID,
    PASSWORD,
    USERNAME,
    WebApp,
    require_module,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def client(web_app: WebApp) -> Any:
    """A logged-in gradio_client session."""
    require_module("gradio_client")
    from gradio_client import Client

    return Client(web_app.url, auth=(USERNAME, PASSWORD), verbose=False, download_files=False)


def test_without_the_password_nothing_is_served(web_app: WebApp) -> None:
    from gradio_client import Client

    with pytest.raises(ValueError, match=r"(?i)login|auth|credentials"):
        Client(web_app.url, auth=(USERNAME, "wrong"), verbose=False)
    with pytest.raises(Exception):  # noqa: B017, PT011 - gradio_client raises several kinds
        Client(web_app.url, verbose=False)


def test_chat_streams_and_is_stored_as_the_sessions_web_channel(
    web_app: WebApp, client: Any
) -> None:
    job = client.submit("hello there", "", api_name="/chat")
    outputs = [output for output in job]
    answer = job.result()
    assert answer.strip()
    # Streamed: each update is the answer so far, growing to the whole answer.
    assert len(outputs) >= 2
    for earlier, later in itertools.pairwise(outputs):
        assert later.startswith(earlier)
    channel_id = web_channel_id(client.session_hash)
    turns = web_app.call(web_app.services.conversations.history(WEB_GUILD_ID, channel_id, 10))
    assert [t.role for t in turns] == [Role.USER, Role.ASSISTANT]
    assert turns[0].content == "hello there"
    assert turns[1].content == answer.strip()


def test_persona_is_the_web_channels_persona(web_app: WebApp, client: Any) -> None:
    client.predict("hi", "You are a pirate.", api_name="/chat")
    channel_id = web_channel_id(client.session_hash)
    persona = web_app.call(web_app.services.conversations.persona(WEB_GUILD_ID, channel_id))
    assert persona == "You are a pirate."


def test_sentiment_gives_label_and_emotion_distribution(client: Any) -> None:
    label, chart = client.predict("i love this, it is wonderful", api_name="/sentiment")
    assert "POSITIVE" in label.upper()
    rows = chart["data"]
    assert rows and abs(sum(score for _, score in rows) - 1) < 0.05  # a distribution


def test_summarize_text_and_file_and_bad_input(client: Any, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = " ".join(["The council met on monday and agreed to repair the old bridge."] * 6)
    assert client.predict(text, None, 60, api_name="/summarize").strip()
    upload = tmp_path / "notes.txt"
    upload.write_text(text)
    assert client.predict("", handle_file(str(upload)), 60, api_name="/summarize").strip()
    with pytest.raises(AppError, match="too short"):
        client.predict("two words", None, 60, api_name="/summarize")
    for length in (-5, 0, 10**9):  # the slider's range holds for API calls too
        with pytest.raises(AppError, match=r"less than minimum|greater than maximum"):
            client.predict(text, None, length, api_name="/summarize")
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(AppError, match="not UTF-8"):
        client.predict("", handle_file(str(binary)), 60, api_name="/summarize")


def test_dashboard_filters_events_and_shows_settings(client: Any) -> None:
    guild = str(GUILD_ID)
    events, per_day, settings = client.predict(
        guild, "", "any", "", 7, api_name="/moderation_events"
    )
    assert len(events["data"]) == 3
    assert sum(count for _, count in per_day["data"]) == 3
    assert "| moderation | on |" in settings and "| threshold | 0.8 |" in settings
    events, *_ = client.predict(
        guild, "negative", "undecided", "", 7, api_name="/moderation_events"
    )
    assert [row[2] for row in events["data"]] == [str(FLAGGED_CHANNEL_ID)]
    events, *_ = client.predict(
        guild, "", "any", str(FLAGGED_CHANNEL_ID), 7, api_name="/moderation_events"
    )
    assert {row[4] for row in events["data"]} == {"anger", "negative"}
    events, *_ = client.predict(guild, "", "dismissed", "", 7, api_name="/moderation_events")
    assert [row[2] for row in events["data"]] == [str(CHANNEL_ID)]


def test_dashboard_rejects_bad_ids_with_a_friendly_error(client: Any) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="guild must be a number"):
        client.predict("robert'); drop", "", "any", "", 7, api_name="/moderation_events")
    with pytest.raises(AppError, match="Pick a guild"):
        client.predict("", "", "any", "", 7, api_name="/moderation_events")


def test_dashboard_deletes_one_turn_then_the_channel(web_app: WebApp, client: Any) -> None:
    guild, channel = str(GUILD_ID), str(CHANNEL_ID)
    turns = client.predict(guild, channel, api_name="/memory")["data"]
    assert [row[4] for row in turns] == ["what is the plan", "we ship on friday"]
    status, after = client.predict(guild, channel, turns[0][0], api_name="/delete_turn")
    assert "Forgot turn" in status
    assert [row[4] for row in after["data"]] == ["we ship on friday"]
    # A turn of another channel is not deleted through this one.
    status, _ = client.predict(guild, str(FLAGGED_CHANNEL_ID), turns[1][0], api_name="/delete_turn")
    assert "already gone" in status
    status, after = client.predict(guild, channel, api_name="/forget_channel")
    assert status.startswith("Forgot 1 turns") and after["data"] == []
    left = web_app.call(web_app.services.conversations.history(GUILD_ID, CHANNEL_ID, 10))
    assert left == []
