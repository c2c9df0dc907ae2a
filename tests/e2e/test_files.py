"""Attachments over the loopback Discord: read into conversations, summarised, refused kindly."""

from __future__ import annotations

import gzip
from typing import Any

from bot.client import Bot
from tests.e2e.conftest import BotRunner
from tests.loopback.harness import LoopbackDiscord

LONG_NOTES = " ".join(
    f"Item {i}: the committee decided to repaint bridge number {i} in green next spring."
    for i in range(80)
)


def tiny_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with ``lines`` of text in Helvetica (valid cross-reference table)."""
    text = " ".join(f"({line}) Tj T*" for line in lines)
    stream = f"BT /F1 12 Tf 14 TL 72 720 Td {text} ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


async def test_summarize_a_text_file_and_a_pdf(bot: Bot, discord_server: LoopbackDiscord) -> None:
    fake = discord_server.fake
    notes = fake.attachment("notes.txt", LONG_NOTES.encode("utf-16"))  # a BOM says UTF-16
    pdf = fake.attachment(
        "minutes.pdf",
        tiny_pdf([f"Point {i}: the club agreed to meet every friday at noon." for i in range(12)]),
        content_type="application/pdf",
    )

    from_text = await fake.slash("summarize", {"file": notes})
    from_pdf = await fake.slash("summarize", {"file": pdf})
    await discord_server.wait_for(  # long: parts first, then the whole
        lambda: "summarised in" in "\n".join(from_text.texts()), 90, "the file's summary"
    )
    text_answer = "\n".join(from_text.texts())
    await discord_server.wait_for(
        lambda: "Summary of minutes.pdf" in "\n".join(from_pdf.texts()), 90, "the PDF's summary"
    )
    pdf_answer = "\n".join(from_pdf.texts())

    assert text_answer.startswith("**Summary of notes.txt**")
    assert pdf_answer.startswith("**Summary of minutes.pdf**")
    assert len(pdf_answer) > len("**Summary of minutes.pdf**") + 5
    assert sorted(fake.downloads) == sorted([notes["id"], pdf["id"]])


async def test_bad_files_get_a_friendly_sentence(
    bots: BotRunner, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    await bots.start(file_max_bytes=50_000, file_download_timeout_s=1.0)
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "huge": (fake.attachment("big.txt", b"x", size=40_000_000), "I read files up to 50 KB"),
        "lies": (fake.attachment("small.log", b"word " * 30_000, size=100), "bigger than it said"),
        "binary": (fake.attachment("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(200)), "isn't a"),
        "kind": (fake.attachment("tool.exe", b"MZ" + bytes(50)), "I read text files"),
        "slow": (fake.attachment("slow.md", b"late words " * 20, delay_s=5), "in time"),
        "bomb": (
            fake.attachment(
                "bomb.json", gzip.compress(b"{}" * 10_000_000), content_encoding="gzip"
            ),
            "compressed",
        ),
        "broken pdf": (fake.attachment("broken.pdf", b"%PDF-1.4\nnot a pdf at all"), "PDF"),
    }
    interactions = {
        name: await fake.slash("summarize", {"file": attachment})
        for name, (attachment, _) in cases.items()
    }
    for name, (_, expected) in cases.items():
        [answer] = await discord_server.answer(interactions[name], timeout=30)
        assert expected in answer, (name, answer)
    # Refused by their declared name or size: never downloaded.
    assert cases["huge"][0]["id"] not in fake.downloads
    assert cases["kind"][0]["id"] not in fake.downloads


async def test_a_file_in_a_conversation_is_read_and_can_never_ping(
    bot: Bot, discord_server: LoopbackDiscord
) -> None:
    fake = discord_server.fake
    me = fake.bot_user
    content = "Shopping list\r\n@everyone buy milk <@&123> \x07\x1b[31m eggs\u202e reversed\n"
    attachment = fake.attachment("list.txt", content.encode("utf-8-sig"))
    await fake.post_message(
        fake.general,
        fake.owner,
        f"<@{me['id']}> what is on my list?",
        mentions=[me],
        attachments=[attachment],
    )
    await discord_server.wait_for(
        lambda: fake.bot_messages(fake.general), 60, "an answer to the message with a file"
    )
    turns = await bot.services.conversations.history(fake.guild_id, fake.general, 5)
    question = turns[0].content
    assert "[file list.txt]" in question and "buy milk" in question
    assert "@everyone" not in question and "@\u200beveryone" in question
    assert "<@&123>" not in question
    assert "\x07" not in question and "\x1b" not in question and "\u202e" not in question
    sends = [
        r
        for r in fake.requests
        if r.method == "POST" and r.path.endswith(f"/channels/{fake.general}/messages")
    ]
    assert sends and all(r.body["allowed_mentions"]["parse"] == [] for r in sends)
