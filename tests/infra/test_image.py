"""The node image (infra/Dockerfile) and what uses it: compose, KubeRay, benchmarks/gpu_smoke.sh.

The static checks run everywhere (< 1 s). Building the image and running the smoke sweep in it needs a docker
daemon: without one that test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
WORKDIR = "/work/facefoundry"  # the repo's path in the image: the same on every Ray node
TAG = "facefoundry-node:test"


def _instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_installs_through_install_sh_only():
    ins = _instructions()
    assert ins[0] == "FROM python:3.11-slim"
    assert any(i.startswith("ARG TORCH_INDEX=") for i in ins)
    assert f"WORKDIR {WORKDIR}" in ins and "COPY . ." in ins
    runs = [i for i in ins if i.startswith("RUN ")]
    assert any(r.endswith("bash infra/install.sh") and "TORCH_INDEX=" in r for r in runs), runs
    installers = ("pip", "uv ", "conda", "torch", "mlflow", "ray[", "setup.py")
    dup = [r for r in runs if "infra/install.sh" not in r and any(s in r for s in installers)]
    assert not dup, f"the stack is installed by infra/install.sh alone, not again in the Dockerfile: {dup}"
    assert ins[-1] == 'CMD ["facefoundry", "--help"]'
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "outputs", "mlruns", ".dvc/cache", ".stack", "shared"} <= set(ignored)


def _fake_venv(tmp_path: Path) -> Path:
    """A copy of infra/install.sh beside a stub .venv whose pip records its arguments."""
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    shutil.copy(ROOT / "infra" / "install.sh", repo / "infra" / "install.sh")
    (repo / "pyproject.toml").write_text("[project]\n")
    (repo / "data").mkdir()
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text('#!/bin/sh\n[ "$2" = "import torch" ] && exit 1\nexit 0\n')  # torch missing
    (bin_ / "pip").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/pip.log\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    return repo


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["install -q torch==2.13.0", "install -q -e .[test]"]),  # infra/run.sh, test.sh, .ci/run: as before
        (
            {"TORCH_INDEX": "https://download.pytorch.org/whl/cpu", "FACEFOUNDRY_EXTRA_REQ": "ray[default]"},
            [
                "install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
                "install -q -e .[test] ray[default]",
            ],
        ),
    ],
)
def test_install_sh_pip_calls(tmp_path, env, expected):
    repo = _fake_venv(tmp_path)
    base = {k: v for k, v in os.environ.items() if k not in ("TORCH_SPEC", "TORCH_INDEX", "FACEFOUNDRY_EXTRA_REQ")}
    proc = subprocess.run(
        ["bash", str(repo / "infra" / "install.sh")], env={**base, **env}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pip.log").read_text().splitlines() == expected


def test_compose_and_kuberay_run_the_node_image():
    compose_text = (ROOT / "infra" / "docker-compose.yml").read_text()
    kuberay_text = (ROOT / "infra" / "kuberay-cluster.yaml").read_text()
    assert "rayproject/ray" not in compose_text + kuberay_text
    services = yaml.safe_load(compose_text)["services"]
    for name in ("mlflow", "ray-head", "ray-worker"):
        s = services[name]
        assert s["image"].startswith("facefoundry-node:"), (name, s["image"])
        assert s["build"]["context"] == ".." and s["build"]["dockerfile"] == "infra/Dockerfile"
    for name in ("ray-head", "ray-worker"):
        assert f"outputs:{WORKDIR}/outputs" in services[name]["volumes"]  # one outputs/ for every node
    ports = [p for s in services.values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    spec = yaml.safe_load(kuberay_text)["spec"]
    pods = [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]
    for pod in pods:
        (container,) = pod["containers"]
        assert container["image"].split("/")[-1].startswith("facefoundry-node:"), container["image"]
        assert {"name": "outputs", "mountPath": f"{WORKDIR}/outputs"} in container["volumeMounts"]


def test_gpu_smoke_stops_at_once_without_cuda(tmp_path):
    script = ROOT / "benchmarks" / "gpu_smoke.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")  # a machine without GPUs, whatever this one has
    (tmp_path / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert (proc.stdout + proc.stderr).strip().startswith("no CUDA:") and len(proc.stderr.splitlines()) == 1
    assert time.perf_counter() - t0 < 5  # before installing or importing anything


def _docker_unreachable() -> str | None:
    """Why no docker daemon answers here (None when one does)."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 10 s"
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return (lines[-1] if lines else f"`docker info` exit code {proc.returncode}") if proc.returncode else None


@pytest.mark.services
def test_image_builds_and_runs_the_smoke_sweep():
    reason = _docker_unreachable()
    if reason:
        pytest.skip(f"no docker daemon reachable: {reason}")

    def docker(*args: str, timeout: float) -> str:
        proc = subprocess.run(["docker", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"docker {' '.join(args)}:\n{(proc.stdout + proc.stderr)[-3000:]}"
        return proc.stdout

    docker("build", "-t", TAG, "-f", "infra/Dockerfile", ".", timeout=3600)
    assert "sweep" in docker("run", "--rm", TAG, "facefoundry", "--help", timeout=120)
    assert docker("run", "--rm", TAG, "pwd", timeout=60).strip() == WORKDIR
    out = docker(
        "run", "--rm", "--shm-size=1g", TAG, "bash", "-c",
        "facefoundry sweep experiments/sweep_smoke.yaml && cat outputs/sweeps/sweep_smoke/results.md",
        timeout=1200,
    )  # fmt: skip
    assert "sweep_smoke" in out and "|" in out, out[-2000:]
