"""Errors whose message is written for the Discord user who caused them.

These live outside the discord glue so that services and the inference engine can
raise them; the tree's error handler in ``bot.cogs.errors`` turns them into replies.
"""

from __future__ import annotations

import math

from bot.redaction import for_members


class UserFacingError(Exception):
    """An error whose message can be shown to the user as it is."""

    # Already said in this window: a flood of channel messages is told once, not once each
    # (a slash command is always answered).
    repeated = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(UserFacingError):
    """The user's input cannot be processed (empty, too long, wrong format)."""


class CooldownError(UserFacingError):
    """The user asked again too soon."""

    def __init__(self, retry_after_s: float, *, repeated: bool = False) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(f"You're going a bit fast - try again in {seconds} s.")
        self.retry_after_s = retry_after_s
        self.repeated = repeated


class BusyError(UserFacingError):
    """A model's queue is full."""

    def __init__(self, model_role: str, retry_after_s: float) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(f"The {model_role} model is busy right now - try again in {seconds} s.")
        self.retry_after_s = retry_after_s


class ModelUnavailableError(UserFacingError):
    """A model could not be loaded; other models keep working."""

    def __init__(self, model_role: str, model_id: str, reason: str) -> None:
        # The reason comes from exceptions and may name files of the host: members see
        # only their last part (the full text is in the operator's log).
        super().__init__(
            f"The {model_role} model isn't available right now ({for_members(reason)}). "
            "The bot's operator has been told; other commands still work."
        )
        self.model_role = model_role
        self.model_id = model_id
        self.reason = reason


class InferenceError(UserFacingError):
    """A model failed on this request (other requests are unaffected)."""


class InferenceTimeoutError(InferenceError):
    """A request took longer than the configured limit."""

    def __init__(self, model_role: str, timeout_s: float) -> None:
        super().__init__(
            f"The {model_role} model took longer than {timeout_s:g} s - try a shorter input."
        )


class StorageError(UserFacingError):
    """The database failed; nothing the user sent was applied.

    Raised at the repository boundary, which logs the original error at ERROR under
    ``error_id``; the member sees that id so the operator can find the log line.
    """

    def __init__(self, error_id: str | None = None) -> None:
        message = "The bot's database is not answering - please try again in a moment."
        if error_id:
            message += f" If it keeps happening, tell the bot's operator: error id `{error_id}`."
        super().__init__(message)
        self.error_id = error_id


class PermissionDeniedError(UserFacingError):
    """The member may not do this."""
