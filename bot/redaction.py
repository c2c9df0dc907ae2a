"""Removing what members and logs must not see from texts: passwords in URLs, host paths."""

from __future__ import annotations

import re

_MASK = "***"
# scheme://user:password@ - greedy up to the last "@" of the token, so that a password
# with an unencoded "@" is masked whole (masking too much is the safe side).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)[^\s'\"]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&\s'\"]*", re.IGNORECASE)
# A quoted path may hold spaces; an unquoted one ends at whitespace or punctuation.
_QUOTED_PATH = re.compile(
    r"""(?P<quote>['"])(?P<path>(?:[A-Za-z]:[\\/]|~?/|\.{1,2}/)[^'"\n]*)(?P=quote)"""
)
# Unquoted: a drive, ~/, ./ or ../, or "/" followed by at least two parts (so that "/chat"
# or "and/or" stay as they are), never inside a URL or a word.
_BARE_PATH = re.compile(
    r"""(?<![\w:/.~\\-])(?P<path>(?:[A-Za-z]:[\\/]|~/|\.{1,2}/|/(?=[^\s'"(),;<>/]+/))"""
    r"""[^\s'"(),;<>]*)"""
)


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}@", text)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}", text)


def safe_database_url(url: str) -> str:
    """A database URL as it may be logged or printed: password hidden, even if malformed."""
    from sqlalchemy.engine import make_url

    try:
        return mask_url_passwords(make_url(url).render_as_string(hide_password=True))
    except Exception:  # unparsable: the pattern still finds user:password@
        return mask_url_passwords(url)


def _basename(path: str) -> str:
    parts = [part for part in re.split(r"[\\/]+", path) if part not in ("", "~", ".", "..")]
    return parts[-1] if parts else ""


def scrub_paths(text: str) -> str:
    """``text`` with every filesystem path cut to its last part (no host directories)."""
    text = _QUOTED_PATH.sub(lambda m: f"{m['quote']}{_basename(m['path'])}{m['quote']}", text)
    return _BARE_PATH.sub(lambda m: _basename(m["path"]), text)


def for_members(text: str) -> str:
    """An error text a member may see: no passwords, no host paths."""
    return scrub_paths(mask_url_passwords(text))
