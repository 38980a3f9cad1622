"""A deployment of a copy of the project, driven the way a user drives it (subprocesses)."""
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tasks.names import PROJECT_LABEL, ROLE_LABEL, label_filter

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["tasks.py", "tasks", "hub", "notebook", "docker-compose.yml", ".env", "userlist"]
USERLIST = "admin admin\nalice\n"


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
    # How the tasks are started: `inv` locally; `python -m tasks -H host` for a remote host.
    program: tuple = ("-m", "invoke")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def image(self, service: str) -> str:
        """The image `inv build` makes for a service (hub, notebook) of this deployment."""
        return f"{self.project}-{service}:latest"

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
            [sys.executable, *self.program, *args], cwd=self.root, env=run_env,
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

    def hub_container(self, client):
        """The deployment's hub container (the one compose started)."""
        return next(ct for ct in self.labelled(client, "containers")
                    if ct.labels.get(ROLE_LABEL) == "hub")

    def labelled(self, client, kind):
        filters = label_filter(self.project)
        if kind == "containers":
            return client.containers.list(all=True, filters=filters)
        return getattr(client, kind).list(filters=filters)


def backed_up(result):
    """(path, size, sha256) from `inv backup` output, one per archive."""
    import re

    found = re.findall(r"path:\s+(\S.*)\n\s+size:\s+(\d+) bytes.*\n\s+sha256:\s+([0-9a-f]{64})",
                       result.stdout)
    return [(path, int(size), digest) for path, size, digest in found]


def file_sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_state(client, d) -> dict:
    """What must not change when nothing should: the deployment's containers (id, state,
    start time, image), its images, volumes and networks."""
    containers = sorted((ct.name, ct.id, ct.status, ct.attrs["State"]["StartedAt"],
                         ct.attrs["Image"])
                        for ct in d.labelled(client, "containers"))
    return {"containers": containers,
            "images": sorted(image.id for image in d.labelled(client, "images")),
            "volumes": sorted(v.name for v in d.labelled(client, "volumes")),
            "networks": sorted(n.id for n in d.labelled(client, "networks"))}


def copy_project(root: Path) -> Path:
    """A copy of the project as a user would have it: tracked files, our userlist, no secrets."""
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / "userlist").write_text(USERLIST)
    return root


_session = {}  # "project": the throwaway copy whose images every suite may borrow


def session_image(service: str) -> str:
    """The session's image of a service (hub, notebook), built by ensure_images_built."""
    return f"{_session['project']}-{service}:latest"


def remove_images(client, project: str) -> None:
    """A project's images, found by their label: each tag goes, and with the last the image
    (an image a container still uses stays, untagged, until the container goes)."""
    import docker

    for image in client.images.list(filters=label_filter(project)):
        for name in image.tags or [image.id]:
            try:
                client.images.remove(name)
            except docker.errors.APIError as error:
                if error.status_code not in (404, 409):
                    raise


def lend_images(client, project: str, services=("hub",)) -> None:
    """The session's images under a copy's own names, for a copy that never runs
    `inv build`: a one-line build FROM each (instant, no layer), labelled with the copy's
    project so that it goes with the copy's other objects."""
    import io

    for service in services:
        client.images.build(fileobj=io.BytesIO(f"FROM {session_image(service)}\n".encode()),
                            tag=f"{project}-{service}:latest", labels={PROJECT_LABEL: project},
                            rm=True)


def ensure_images_built(tmp_root: Path) -> None:
    """Once per test session: `inv build` in a throwaway copy, so that the base image is
    there and BuildKit's cache is warm whatever order the suites run in (each deployment
    then builds its own images in seconds), and copies that never build can borrow them
    (lend_images). The copy's network and volume go at once, its images at exit, all by
    its project label."""
    if _session:
        return
    import atexit
    import uuid

    import docker

    project = f"jhi{uuid.uuid4().hex[:8]}"
    copy = Deployment(root=copy_project(tmp_root), project=project, port=free_port(),
                      env={"COMPOSE_PROJECT_NAME": project})
    result = copy.inv("build")
    client = docker.from_env()
    atexit.register(remove_images, client, project)
    for volume in client.volumes.list(filters=label_filter(project)):
        volume.remove(force=True)
    for network in client.networks.list(filters=label_filter(project)):
        network.remove()
    if result.returncode != 0:
        raise RuntimeError(f"inv build failed, so no suite can run:\n{result.output[-6000:]}")
    _session["project"] = project


def engine_for_tests(tmp_root: Path, tier: str):
    """This machine's Docker engine, with the images built; the tier fails, naming the fix,
    when no engine answers."""
    import docker
    import pytest

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"the {tier} needs a running Docker Engine ({error}); run bin/setup --test")
    ensure_images_built(tmp_root)
    return client
