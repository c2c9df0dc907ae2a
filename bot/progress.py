"""Whether the hub draws its download progress bars (kept light: imports nothing heavy)."""

from __future__ import annotations

import os
from typing import TextIO

import bot


def show_hub_progress(stream: TextIO) -> bool:
    """Let the hub draw its download progress bars when ``stream`` is a terminal.

    Elsewhere (a log file, a pipe, a container's log) they stay off: a line per model is
    what a log wants. Call it before anything imports tqdm. With TQDM_DISABLE or
    HF_HUB_DISABLE_PROGRESS_BARS set by the operator, it changes nothing. Returns whether
    it turned the bars on.
    """
    if not bot.TQDM_DISABLE_IS_OURS or "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ:
        return False  # the operator's setting decides
    wanted = stream.isatty()
    if wanted:
        os.environ.pop("TQDM_DISABLE", None)  # read once, when tqdm is first imported
    from huggingface_hub.utils.tqdm import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if wanted else disable_progress_bars)()
    return wanted
