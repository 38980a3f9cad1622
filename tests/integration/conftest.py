"""A real deployment for the integration tier: a copy of the project, run with `inv` under a
unique compose project and port, on the real Docker engine; everything it creates carries
the project label and is removed by that label afterwards."""
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["tasks.py", "tasks", "hub", "notebook", "docker-compose.yml", ".env", "userlist"]
PROJECT_LABEL = "org.jupyterhub-deploy.project"
USERLIST = "admin admin\nalice\n"
ARTIFACTS = REPO / "tests" / "artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Deployment:
    root: Path
    project: str
    port: int
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cafile(self) -> str:
        return str(self.root / "secrets" / "jupyterhub.crt")

    def inv(self, *args, env=None, timeout=1800):
        """Run `inv ARGS` in the copy as a user would; returns the CompletedProcess."""
        run_env = {**os.environ, **self.env, **(env or {})}
        for key in [k for k, v in run_env.items() if v is None]:
            del run_env[key]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=self.root, env=run_env,
            capture_output=True, text=True, timeout=timeout,
        )
        result.seconds = time.monotonic() - started
        result.output = result.stdout + result.stderr
        return result

    def inv_ok(self, *args, **kwargs):
        result = self.inv(*args, **kwargs)
        assert result.returncode == 0, f"inv {' '.join(args)} failed:\n{result.output[-6000:]}"
        return result

    def password(self, name: str) -> str:
        for line in (self.root / "secrets" / "initial-passwords").read_text().splitlines():
            if line and not line.startswith("#") and line.split()[0] == name:
                return line.split(None, 1)[1]
        raise KeyError(name)

    def labelled(self, client, kind):
        filters = {"label": f"{PROJECT_LABEL}={self.project}"}
        if kind == "containers":
            return client.containers.list(all=True, filters=filters)
        return getattr(client, kind).list(filters=filters)


def remove_labelled(client, project: str) -> None:
    filters = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=filters):
        container.remove(force=True, v=False)
    for volume in client.volumes.list(filters=filters):
        volume.remove(force=True)
    for network in client.networks.list(filters=filters):
        network.remove()


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"the integration tier needs a running Docker Engine ({error}); run bin/setup --test")
    return client


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, docker_client):
    root = tmp_path_factory.mktemp("deployment")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / "userlist").write_text(USERLIST)
    project = f"jht{uuid.uuid4().hex[:8]}"
    # Shell variables win over .env, as with compose: the copy keeps the shipped .env.
    d = Deployment(root=root, project=project, port=free_port(),
                   env={"COMPOSE_PROJECT_NAME": project})
    d.env["HUB_PORT"] = str(d.port)
    yield d
    d.inv("down")
    remove_labelled(docker_client, project)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def logs_on_failure(request, docker_client):
    """On a failed test only: every container of the deployment, its state and its log."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or "deployment" not in request.fixturenames:
        return
    d = request.getfixturevalue("deployment")
    for container in d.labelled(docker_client, "containers"):
        container.reload()
        print(f"\n===== {container.name} ({container.status}, {container.attrs['State']})")
        print(container.logs(tail=300).decode(errors="replace"))
