"""`models download`: the hub's own progress bars on a terminal, one line per model in a log."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# What the CLI does before downloading, in its order, then one bar the way the hub draws them.
DRAW_A_HUB_BAR = """
import sys
import bot.__main__
from bot.progress import show_hub_progress
turned_on = show_hub_progress(sys.stderr) if sys.argv[1] == "show" else None
import bot.inference.loading
from huggingface_hub.utils import tqdm
for _ in tqdm(range(3), desc="model.safetensors"):
    pass
print("turned on:", turned_on)
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "DATABASE_", "TQDM_", "HF_HUB_DISABLE"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env | extra


def run_in_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run a command with a terminal (80 columns) as its stdin, stdout and stderr."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
    return process.wait(timeout=30), output.decode(errors="replace").replace("\r\n", "\n")


def run_in_pipe(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    return result.returncode, result.stdout + result.stderr


def bar_drawn(output: str) -> bool:
    return "model.safetensors: 100%" in output and "3/3" in output


@pytest.mark.parametrize("run", [run_in_terminal, run_in_pipe], ids=["terminal", "pipe"])
def test_the_hub_draws_its_bars_only_on_a_terminal(run: object, tmp_path: Path) -> None:
    python = [sys.executable, "-c", DRAW_A_HUB_BAR]
    assert callable(run)
    in_terminal = run is run_in_terminal

    code, shown = run([*python, "show"], clean_env(), tmp_path)
    assert code == 0, shown
    assert f"turned on: {in_terminal}" in shown
    assert bar_drawn(shown) == in_terminal

    # Without it (the bot itself), and when the operator set TQDM_DISABLE: never.
    code, hidden = run([*python, "leave"], clean_env(), tmp_path)
    assert code == 0 and not bar_drawn(hidden), hidden
    code, operator = run([*python, "show"], clean_env(TQDM_DISABLE="1"), tmp_path)
    assert code == 0 and "turned on: False" in operator and not bar_drawn(operator), operator


def cached_hub_model(hub: Path, repo_id: str) -> None:
    """A model in the hub cache's layout, as a finished download leaves it."""
    folder = hub / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")


@pytest.mark.parametrize("run", [run_in_terminal, run_in_pipe], ids=["terminal", "pipe"])
def test_models_download_says_one_line_per_model(run: object, tmp_path: Path) -> None:
    assert callable(run)
    hub = tmp_path / "hf" / "hub"
    cached_hub_model(hub, "tiny/sentiment")
    local = tmp_path / "local-model"
    local.mkdir()
    env = clean_env(
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_CACHE=str(hub),
        HF_HUB_OFFLINE="1",
        SENTIMENT_MODEL="tiny/sentiment",
        EMOTION_MODEL="tiny/not-downloaded",
        MODERATION_MODEL=str(local),
        SUMMARIZATION_MODEL=str(local),
        CHAT_MODEL=str(local),
    )

    code, output = run([sys.executable, "-m", "bot", "models", "download"], env, tmp_path)

    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1, output  # one model is not in the cache and the hub is offline
    assert len(lines) == 5, output
    assert lines[0] == f"SENTIMENT_MODEL: tiny/sentiment -> {hub}/models--tiny--sentiment/" + (
        f"snapshots/{COMMIT}"
    )
    assert lines[1].startswith("EMOTION_MODEL: FAILED tiny/not-downloaded: ")
    assert lines[2:] == [
        f"MODERATION_MODEL: local ({local})",
        f"SUMMARIZATION_MODEL: local ({local})",
        f"CHAT_MODEL: local ({local})",
    ]
