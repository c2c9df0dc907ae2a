"""A real ``transformers serve`` (OpenAI-compatible server) on 127.0.0.1, for tests.

It runs the tiny chat model on the CPU with continuous batching and a small KV cache; the
start and wait logic is shared with the scale-out benchmark (``benchmarks/serving.py``).
Starting takes about 20 s on 2 cores, so the fixture that uses it is session-scoped.
"""

from __future__ import annotations

from benchmarks.serving import ServeProcess, free_port, transformers_serve

__all__ = ["ServeProcess", "free_port", "transformers_serve"]
