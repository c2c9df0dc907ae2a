"""Who may open the web app, and how a browser session maps to a stored conversation.

Pure helpers without gradio, so that the CLI checks settings before importing it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable

from bot.errors import InvalidInputError
from bot.settings import Settings

# The pseudo-guild of web conversations: Discord never hands out the snowflake 0.
WEB_GUILD_ID = 0
WEB_GUILD_NAME = "web"
# Ids stay positive and below 2**62: they fit a signed BIGINT on every backend.
_ID_BITS = 62
MAX_ID_CHARS = 20  # a snowflake has at most 20 digits


class WebSetupError(Exception):
    """The web app must not start with these settings; the message says what to set."""


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable only from this machine."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def web_password(settings: Settings) -> str | None:
    """WEB_PASSWORD, or None when it is unset or blank."""
    if settings.web_password is None:
        return None
    return settings.web_password.get_secret_value().strip() or None


def check_exposure(settings: Settings) -> None:
    """Refuse to serve beyond this machine without a password."""
    if web_password(settings) is None and not is_loopback(settings.web_host):
        raise WebSetupError(
            f"WEB_HOST={settings.web_host} serves the web app beyond this machine: set "
            "WEB_PASSWORD (and WEB_USERNAME, default admin) so that only operators can log in, "
            "or keep WEB_HOST=127.0.0.1"
        )


def login_check(settings: Settings) -> Callable[[str, str], bool] | None:
    """Gradio's ``auth`` callable for WEB_USERNAME/WEB_PASSWORD (None: no login)."""
    password = web_password(settings)
    if password is None:
        return None
    expected_user, expected_password = settings.web_username.encode(), password.encode()

    def check(username: str, given: str) -> bool:
        # Both compared in full, in constant time: a wrong name and a wrong password look alike.
        user_ok = hmac.compare_digest(str(username).encode(), expected_user)
        password_ok = hmac.compare_digest(str(given).encode(), expected_password)
        return user_ok and password_ok

    return check


def web_channel_id(session_hash: str) -> int:
    """The stored channel of one browser session: stable, positive, below 2**62."""
    digest = hashlib.sha256(session_hash.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - _ID_BITS) or 1


def parse_id(text: str | None, what: str) -> int | None:
    """A Discord id typed or picked in the dashboard (None when blank).

    InvalidInputError for anything that is not a non-negative id below 2**63.
    """
    value = (text or "").strip()
    if not value:
        return None
    value = value.split(" ", 1)[0]  # choices read "123 (name)"
    if len(value) > MAX_ID_CHARS or not value.isascii() or not value.isdigit():
        raise InvalidInputError(f"The {what} must be a number such as 123456789012345678.")
    number = int(value)
    if number >= 2**63:
        raise InvalidInputError(f"That {what} is too large to be a Discord id.")
    return number
