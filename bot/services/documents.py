"""Attached files as text: checked before download, read with limits, decoded and cleaned.

Everything a member attaches is hostile until read: its declared size is checked before a
byte is fetched, the download stops at the size limit and at a deadline, compressed transfer
encodings are refused (no decompression bombs over HTTP), PDFs are read page by page under
pypdf's own decompression limits on one thread of their own, and the text that comes out has
its control characters removed and its mentions defanged, so no file can make the bot ping.
"""

from __future__ import annotations

import asyncio
import codecs
import io
import logging
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

import aiohttp

from bot.errors import InvalidInputError
from bot.settings import Settings

log = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".py", ".log", ".csv", ".json"})
PDF_EXTENSION = ".pdf"
FileKind = Literal["text", "pdf"]
# Starts of common binary formats, refused even when named .txt.
_BINARY_MAGIC = (
    b"PK\x03\x04",  # zip, docx, xlsx, jar
    b"\x1f\x8b",  # gzip
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",  # jpeg
    b"7z\xbc\xaf",
    b"Rar!",
    b"\x7fELF",
    b"MZ",  # windows executables
    b"BZh",
    b"\xfd7zXZ",
)
# Each stream a PDF decompresses, and all of them together, may grow to at most this much.
PDF_STREAM_OUTPUT_BYTES = 20_000_000
PDF_WORK_LIMIT = 50_000_000
# A PDF that has not been read in this long is given up (its thread finishes on its own).
PDF_READ_TIMEOUT_S = 20.0
# Characters kept: printable ones, newlines and tabs. Bidirectional overrides go too (they
# can make a file's text read differently from what it says).
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"@(everyone|here)|<(@[!&]?|#)(\d+)>", re.IGNORECASE)
_ZERO_WIDTH_SPACE = "\u200b"
# PDFs are read on one thread of their own: a slow hostile one delays other PDFs, nothing else.
_PDF_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdf-reader")


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_bytes: int = 2_000_000
    max_chars: int = 30_000
    download_timeout_s: float = 10.0
    pdf_max_pages: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> FileLimits:
        """The FILE_* and PDF_* settings."""
        return cls(
            settings.file_max_bytes,
            settings.file_max_chars,
            settings.file_download_timeout_s,
            settings.pdf_max_pages,
        )


@dataclass(frozen=True, slots=True)
class AttachedFile:
    """What Discord says about an attachment (no bytes yet)."""

    filename: str
    size: int
    url: str


@dataclass(frozen=True, slots=True)
class Document:
    name: str
    text: str
    truncated: bool  # longer than the character limit (or pages beyond the page limit)
    kind: FileKind


class UnreadableFileError(InvalidInputError):
    """The file is not one the bot reads (binary, too big, broken)."""


def describe_size(size: int) -> str:
    """``1.5 MB``, ``300 KB``, ``12 bytes``."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 10_000:
        return f"{size / 1_000:.0f} KB"
    return f"{size} bytes"


def safe_name(filename: str) -> str:
    """The file's name for messages: no path, no mentions or markdown tricks, at most 80."""
    name = PurePosixPath(filename.replace("\\", "/")).name or "file"
    name = "".join(c for c in name if c.isprintable() and c not in "`*_~|<>@#")
    return name[:80] or "file"


def kind_by_name(filename: str) -> FileKind | None:
    """The kind a file's extension promises, or None for one the bot does not read."""
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix == PDF_EXTENSION:
        return "pdf"
    return "text" if suffix in TEXT_EXTENSIONS else None


def kind_of(filename: str, head: bytes) -> FileKind | None:
    """The file's kind from its name and its first bytes; None when they disagree."""
    kind = kind_by_name(filename)
    if kind == "pdf":
        return "pdf" if head.lstrip()[:5] == b"%PDF-" else None
    if kind == "text" and looks_binary(head):
        return None
    return kind


def looks_binary(data: bytes) -> bool:
    """Whether bytes are a binary format rather than text in some encoding."""
    if data.startswith(_BINARY_MAGIC):
        return True
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False  # UTF-16 text is full of NUL bytes
    return b"\x00" in data[:8192]


def decode_text(data: bytes, *, truncated: bool = False) -> str:
    """Text from bytes: a BOM's encoding, else UTF-8, else Windows-1252 (never fails).

    ``truncated``: the bytes were cut at a limit, so a character split at the end is dropped.
    """
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return _decode(data, encoding, truncated)
    try:
        return _decode(data, "utf-8", truncated, errors="strict")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _decode(data: bytes, encoding: str, truncated: bool, errors: str = "replace") -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    return decoder.decode(data, final=not truncated)


def clean_text(text: str) -> str:
    """Newlines unified, control and bidirectional-override characters removed, mentions
    defanged (``@everyone`` can no longer ping even where mentions are allowed)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs", "Co")
    )
    text = _BIDI_CONTROLS.sub("", text)
    return _MENTION.sub(_defang, text)


def _defang(match: re.Match[str]) -> str:
    whole = match.group(0)
    return whole[0] + _ZERO_WIDTH_SPACE + whole[1:]


def cut_text(text: str, max_chars: int) -> tuple[str, bool]:
    """At most ``max_chars`` characters, cut at a line or word end where one is near."""
    if len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    for separator in ("\n", " "):
        end = cut.rfind(separator)
        if end >= max_chars * 0.8:
            return cut[:end].rstrip(), True
    return cut, True


def check_declared(file: AttachedFile, limits: FileLimits) -> FileKind:
    """Refuse by name and declared size, before anything is downloaded."""
    kind = kind_by_name(file.filename)
    name = safe_name(file.filename)
    if kind is None:
        raise UnreadableFileError(
            f"I can't read {name}: I read text files ({', '.join(sorted(TEXT_EXTENSIONS))}) "
            "and PDFs."
        )
    if file.size > limits.max_bytes:
        raise UnreadableFileError(
            f"{name} is too big ({describe_size(file.size)}); I read files up to "
            f"{describe_size(limits.max_bytes)}."
        )
    return kind


async def download(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """The file's bytes, refused past ``max_bytes`` (whatever its size claimed) or after
    ``timeout_s`` in all."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"Accept-Encoding": "identity"}  # a compressed body could inflate past any cap
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise UnreadableFileError("I couldn't download that file - try sending it again.")
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise UnreadableFileError("That file came compressed, which I don't read.")
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                received += len(chunk)
                if received > max_bytes:
                    raise UnreadableFileError(
                        f"That file is bigger than it said; I read files up to "
                        f"{describe_size(max_bytes)}."
                    )
                chunks.append(chunk)
    except (aiohttp.ClientError, TimeoutError) as error:
        log.info("attachment download failed: %s", type(error).__name__)
        raise UnreadableFileError(
            "I couldn't download that file in time - try again in a moment."
        ) from None
    return b"".join(chunks)


def pdf_text(data: bytes, max_pages: int, max_chars: int) -> tuple[str, bool]:
    """Text of a PDF's first ``max_pages`` pages, stopping past ``max_chars`` (blocking)."""
    import pypdf
    from pypdf.errors import PyPdfError

    limits = pypdf.get_configuration().with_overwrites(
        zlib_maximum_output_length=PDF_STREAM_OUTPUT_BYTES,
        lzw_maximum_output_length=PDF_STREAM_OUTPUT_BYTES,
        run_length_maximum_output_length=PDF_STREAM_OUTPUT_BYTES,
        brotli_maximum_output_length=PDF_STREAM_OUTPUT_BYTES,
        array_based_stream_maximum_output_length=PDF_STREAM_OUTPUT_BYTES,
        stream_decoding_work_maximum_length=PDF_WORK_LIMIT,
    )
    try:
        with pypdf.apply_configuration(limits):
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise UnreadableFileError("That PDF is password-protected, so I can't read it.")
            pages = reader.pages
            parts: list[str] = []
            size = 0
            truncated = len(pages) > max_pages
            for index in range(min(len(pages), max_pages)):
                text = pages[index].extract_text() or ""
                parts.append(text)
                size += len(text)
                if size > max_chars:
                    return "\n\n".join(parts), True
    except UnreadableFileError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError, RecursionError) as error:
        log.info("unreadable PDF: %s", type(error).__name__)
        raise UnreadableFileError("I couldn't read that PDF - it seems to be damaged.") from None
    return "\n\n".join(parts), truncated


async def read_document(file: AttachedFile, limits: FileLimits) -> Document:
    """Check, download and read one attachment (UnreadableFileError with a friendly sentence)."""
    check_declared(file, limits)
    name = safe_name(file.filename)
    data = await download(file.url, limits.max_bytes, limits.download_timeout_s)
    kind = kind_of(file.filename, data[:8192])
    if kind is None:
        raise UnreadableFileError(f"{name} isn't a text file or PDF I can read.")
    if kind == "pdf":
        job = asyncio.get_running_loop().run_in_executor(
            _PDF_THREAD, pdf_text, data, limits.pdf_max_pages, limits.max_chars
        )
        try:
            raw, truncated = await asyncio.wait_for(job, PDF_READ_TIMEOUT_S)
        except TimeoutError:
            raise UnreadableFileError(f"{name} took too long to read.") from None
    else:
        raw, truncated = decode_text(data), False
    text, cut = cut_text(clean_text(raw), limits.max_chars)
    if not text.strip():
        raise UnreadableFileError(f"{name} has no text I can read.")
    return Document(name, text, truncated or cut, kind)


# How many files of one message are read.
MAX_FILES_PER_MESSAGE = 3
_CUT_NOTE = "\n[the rest of the file is cut]"


def with_attachments(text: str, documents: list[Document], max_chars: int) -> str:
    """The member's text followed by each file's text under its name, within ``max_chars``
    (files are cut, never the member's own words unless they alone are too long)."""
    text = text.strip()[:max_chars]
    parts = [text] if text else []
    for document in documents:
        used = sum(len(part) + 2 for part in parts)
        header = f"[file {document.name}]\n"
        room = max_chars - used - len(header)
        if room <= len(_CUT_NOTE) + 20:
            break
        body, cut = cut_text(document.text, room - len(_CUT_NOTE))
        if cut or document.truncated:
            body += _CUT_NOTE
        parts.append(header + body)
    return "\n\n".join(parts)[:max_chars]
