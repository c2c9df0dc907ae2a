"""Start a ``transformers serve`` (OpenAI-compatible server) on 127.0.0.1 and wait for it.

Used by the scale-out benchmark and by the tests that talk to a real server. It runs on the
CPU with continuous batching and a small KV cache (``--cb-num-blocks 64``: the library sizes
the cache from free RAM otherwise, about 10 GiB on a CPU). Starting takes about 20 s on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
KV_CACHE_BLOCKS = 64


@dataclass
class ServeProcess:
    """A running server: its API base (``http://127.0.0.1:PORT/v1``) and model setting."""

    process: subprocess.Popen[bytes]
    port: int
    model: str  # a folder or hub id, as the bot's CHAT_MODEL names it
    log_path: Path

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate the server and wait for it (killed if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_command() -> str:
    """The ``transformers`` console script of this interpreter's environment."""
    found = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("no `transformers` script next to python: pip install -e '.[serving]'")
    return found


def servable_folder(model: str, folder: Path) -> str:
    """``model`` as ``transformers serve`` can load it: a ``.gguf`` file becomes a folder.

    ``transformers serve`` names a GGUF file ``<folder>:<file>.gguf``, but (transformers
    5.23) fails on one whose config lists no architectures, as SmolLM2's GGUF does
    (``config.architectures[0]`` of None). So the weights are dequantized, as the bot's own
    loader does, and saved with their tokenizer (and chat template) in ``folder``. Anything
    else is returned unchanged.
    """
    if not model.lower().endswith(".gguf"):
        return model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model).expanduser()
    source = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    AutoTokenizer.from_pretrained(**source).save_pretrained(folder)
    model_ = AutoModelForCausalLM.from_pretrained(**source)
    # The weights are plain tensors once loaded; only the "quantized with gguf" marks remain.
    model_.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model_.config, "quantization_config"):
        del model_.config.quantization_config
    model_.save_pretrained(folder)
    return str(folder)


@contextmanager
def transformers_serve(
    model: str, *, threads: int = 1, extra_args: Sequence[str] = ()
) -> Iterator[ServeProcess]:
    """``transformers serve`` of ``model`` on a free port, ready (GET /health is 200).

    ``threads`` is the server's torch thread count (``OMP_NUM_THREADS``).
    """
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="serve-"))
    log_path = log_dir / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    command = [
        serve_command(),
        "serve",
        model,
        "--continuous-batching",
        "--device",
        "cpu",
        "--cb-num-blocks",
        str(KV_CACHE_BLOCKS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "info",
        *extra_args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = ServeProcess(process, port, model, log_path)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)


def wait_until_healthy(server: ServeProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"transformers serve exited early:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"transformers serve not ready in {START_TIMEOUT_S:g} s")
