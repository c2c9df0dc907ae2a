"""Errors shown in the page: friendly messages for known errors, an id for the rest."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import ParamSpec, TypeVar

import gradio as gr

from bot.errors import UserFacingError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def as_page_error(error: Exception) -> gr.Error:
    """The gr.Error a handler raises for ``error`` (unknown errors are logged with an id)."""
    if isinstance(error, UserFacingError):
        return gr.Error(error.message, print_exception=False)
    error_id = uuid.uuid4().hex[:8]
    log.error("web handler failed (error id %s)", error_id, exc_info=error)
    return gr.Error(
        f"Something went wrong on our side (error id {error_id}); the operators can find it "
        "in the log.",
        print_exception=False,
    )


def friendly(handler: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Wrap an async handler so that its errors reach the page as friendly messages."""

    @functools.wraps(handler)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            raise as_page_error(error) from error

    return wrapped


def friendly_stream(
    handler: Callable[P, AsyncGenerator[T, None]],
) -> Callable[P, AsyncGenerator[T, None]]:
    """``friendly`` for async generators (streamed answers)."""

    @functools.wraps(handler)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[T, None]:
        stream = handler(*args, **kwargs)
        try:
            async for item in stream:
                yield item
        except gr.Error:
            raise
        except Exception as error:
            raise as_page_error(error) from error
        finally:
            await stream.aclose()

    return wrapped
