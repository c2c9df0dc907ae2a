"""Reading members' files: kinds, decoding, cleaning, cutting, PDFs (hostile input)."""

from __future__ import annotations

import codecs
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.services.documents import (
    AttachedFile,
    Document,
    FileLimits,
    UnreadableFileError,
    check_declared,
    clean_text,
    cut_text,
    decode_text,
    kind_of,
    looks_binary,
    pdf_text,
    safe_name,
    with_attachments,
)
from tests.e2e.test_files import tiny_pdf


@given(st.binary(max_size=2000))
def test_any_bytes_decode_to_text_without_error(data: bytes) -> None:
    assert isinstance(decode_text(data), str)
    assert isinstance(decode_text(data, truncated=True), str)


@given(st.text(max_size=500), st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
def test_text_in_a_unicode_encoding_comes_back_as_it_was(text: str, encoding: str) -> None:
    if encoding == "utf-8" and text.startswith("\ufeff"):
        return  # a leading BOM character reads as a BOM
    if encoding == "utf-16" and text.startswith("\x00"):
        return  # FF FE 00 00 is UTF-32's BOM: a UTF-16 text starting with NUL reads as UTF-32
    assert decode_text(text.encode(encoding)) == text


@given(st.text(max_size=300))
def test_a_character_cut_at_the_byte_limit_is_dropped_not_garbled(text: str) -> None:
    data = text.encode("utf-8")
    for end in range(max(0, len(data) - 3), len(data) + 1):
        decoded = decode_text(data[:end], truncated=True)
        assert "\ufffd" not in decoded or "\ufffd" in text
        assert text.startswith(decoded)


def test_windows_1252_text_is_read() -> None:
    assert decode_text("café – naïve".encode("cp1252")) == "café – naïve"


@given(st.text(max_size=500))
def test_clean_text_leaves_no_control_characters_or_pings(text: str) -> None:
    cleaned = clean_text(text)
    assert all(c in "\n\t" or unicodedata.category(c) != "Cc" for c in cleaned)
    assert "\r" not in cleaned
    lowered = cleaned.lower()
    assert "@everyone" not in lowered and "@here" not in lowered
    assert not re.search(r"<(@[!&]?|#)\d+>", cleaned)
    assert not any("\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069" for c in cleaned)


@given(st.text(max_size=50))
def test_mentions_anywhere_in_a_file_are_defanged(noise: str) -> None:
    text = f"{noise}@everyone @HERE <@123> <@!45> <@&6> <#7>{noise}"
    cleaned = clean_text(text)
    for mention in ("@everyone", "@HERE", "<@123>", "<@!45>", "<@&6>", "<#7>"):
        assert mention not in cleaned


@given(st.text(max_size=2000), st.integers(1, 1500))
def test_cut_text_keeps_the_start_within_the_limit(text: str, limit: int) -> None:
    cut, was_cut = cut_text(text, limit)
    assert len(cut) <= limit
    assert text.startswith(cut.rstrip()) or text.startswith(cut)
    assert was_cut == (len(text) > limit)


@given(st.text(max_size=80))
def test_safe_names_have_no_paths_or_markup(name: str) -> None:
    safe = safe_name(name)
    assert 1 <= len(safe) <= 80
    assert "/" not in safe and "\\" not in safe
    assert not set(safe) & set("`*_~|<>@#")


@given(st.binary(max_size=64))
def test_kind_needs_the_name_and_the_bytes_to_agree(head: bytes) -> None:
    assert kind_of("x.exe", head) is None
    assert kind_of("x.pdf", head) == ("pdf" if head.lstrip()[:5] == b"%PDF-" else None)
    assert kind_of("x.TXT", head) == (None if looks_binary(head) else "text")


def test_binary_formats_named_as_text_are_refused() -> None:
    for head in (b"PK\x03\x04zip", b"\x89PNG\r\n", b"\x1f\x8b\x08", b"abc\x00def"):
        assert kind_of("notes.txt", head) is None
    assert kind_of("notes.txt", "hi".encode("utf-16")) == "text"


def test_declared_size_and_kind_are_checked_before_download() -> None:
    limits = FileLimits(max_bytes=1000)
    assert check_declared(AttachedFile("a.md", 1000, "u"), limits) == "text"
    with pytest.raises(UnreadableFileError, match=r"\(1001 bytes\); I read files up to 1000 bytes"):
        check_declared(AttachedFile("a.md", 1001, "u"), limits)
    with pytest.raises(UnreadableFileError, match="I read text files"):
        check_declared(AttachedFile("a.docx", 10, "u"), limits)


@given(
    st.text(max_size=300),
    st.lists(st.text(min_size=1, max_size=3000), max_size=4),
    st.integers(50, 5000),
)
def test_attachments_fit_the_message_limit(text: str, bodies: list[str], limit: int) -> None:
    documents = [Document(f"f{i}.txt", body, False, "text") for i, body in enumerate(bodies)]
    joined = with_attachments(text, documents, limit)
    assert len(joined) <= limit
    assert joined.startswith(text.strip()[:limit])


def test_pdf_pages_and_characters_are_capped() -> None:
    data = tiny_pdf([f"line {i} of the report" for i in range(30)])
    text, truncated = pdf_text(data, max_pages=5, max_chars=100_000)
    assert "line 0 of the report" in text and "line 29" in text and not truncated
    _, truncated = pdf_text(data, max_pages=5, max_chars=50)
    assert truncated
    _, truncated = pdf_text(data, max_pages=0, max_chars=1000)
    assert truncated


@pytest.mark.parametrize("data", [b"%PDF-1.4 garbage", b"%PDF-" + bytes(300), b"%PDF-1.7\n1 0 obj"])
def test_broken_pdfs_get_a_friendly_error(data: bytes) -> None:
    with pytest.raises(UnreadableFileError):
        pdf_text(data, max_pages=5, max_chars=1000)


def test_utf16_without_bom_is_not_taken_for_binary_when_it_has_one() -> None:
    assert not looks_binary(codecs.BOM_UTF16_LE + "text".encode("utf-16-le"))
