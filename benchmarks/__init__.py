"""Benchmarks: `python -m benchmarks.inference`."""

import bot  # noqa: F401  (first, so that its settings for progress bars apply here too)
