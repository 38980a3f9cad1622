"""The deployment the benchmarks run against: a copy of the project brought up with
`inv build up` under a unique compose project and port, exactly as a user would, and
removed by label afterwards (containers, volumes, network, and the bench's own images)."""
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.driver import Credentials, HubUser
from bench.floors import Template, template_of, wait_gone
from tasks.names import label_filter, labels, user_volume

# The integration tier's "copy of the project, driven by subprocess `inv`" (see bench/__init__).
from deployment_support import Deployment, copy_project, free_port


class BenchError(Exception):
    """The bench could not do what it needs to measure anything."""


@dataclass
class Bench:
    """A running deployment and what the benchmarks share: the engine, the admin's API
    client, the bench users and the floor samples measured so far."""
    d: Deployment
    client: object
    users: list          # for spawns and bursts: b01, b02, ...
    driver_user: str = "d01"  # for the load driver's sessions
    admin: HubUser = None
    templates: dict = field(default_factory=dict)
    floor_samples: list = field(default_factory=list)  # floors.Direct, from every benchmark

    @property
    def project(self) -> str:
        return self.d.project

    def credentials(self, name: str) -> Credentials:
        return Credentials(name, password=self.d.password(name))

    def admin_client(self) -> HubUser:
        """A new client with the admin's token (one per thread: requests sessions are not
        meant to be shared between threads)."""
        user = HubUser(self.d.url, self.d.cafile)
        user.token = self.admin.token
        return user

    def server_container(self, name: str):
        """The user's server container the hub started, or None."""
        import docker

        try:
            found = self.client.containers.list(
                all=True, filters=label_filter(self.project, "user-server", user=name))
        except docker.errors.NotFound:
            return None  # the previous server was removed between listing and inspecting it
        return found[0] if found else None

    def hub_container(self):
        found = self.client.containers.list(all=True, filters=label_filter(self.project, "hub"))
        if not found:
            raise BenchError("the hub container is gone")
        return found[0]

    def stop_server(self, name: str, client: HubUser = None) -> None:
        """Stop through the hub and wait until the engine has removed the container, so
        the next start of the same name does not find it still going."""
        container = self.server_container(name)
        (client or self.admin).stop(name)
        if container is not None:
            wait_gone(self.client, container.id)

    def template(self, name: str) -> Template:
        """How the hub runs `name`'s server (spawned once through the hub if not known)."""
        if name not in self.templates:
            self.admin.spawn(name)
            self.templates[name] = template_of(self.server_container(name).attrs)
            self.stop_server(name)
        return self.templates[name]

    def ensure_volume(self, name: str) -> None:
        """The user's volume, as the hub's pre-spawn hook makes it, so a burst measures the
        spawns of returning users rather than first-time volume creation."""
        import docker

        volume = user_volume(self.project, name)
        try:
            self.client.volumes.get(volume)
        except docker.errors.NotFound:
            self.client.volumes.create(volume, labels=labels(self.project, "user-volume", user=name))


def userlist(users: list) -> str:
    return "admin admin\n" + "".join(f"{name}\n" for name in users)


def up(users: list, driver_user: str = "d01", workdir: Path = None, env: dict = None,
       prepare=None) -> Bench:
    """Copy the project, write a userlist with the bench users, `inv build up` with `env`
    on top of the shell's (settings such as USER_MEM_LIMIT: they beat the copy's .env);
    `prepare(root)`, when given, changes the copy first."""
    import docker

    root = Path(workdir or tempfile.mkdtemp(prefix="jupyterhub-bench-"))
    copy_project(root)
    (root / "userlist").write_text(userlist([*users, driver_user]))
    if prepare is not None:
        prepare(root)
    project = f"jhbench{uuid.uuid4().hex[:8]}"
    d = Deployment(root=root, project=project, port=free_port(),
                   env={**(env or {}), "COMPOSE_PROJECT_NAME": project})
    d.env["HUB_PORT"] = str(d.port)
    bench = Bench(d=d, client=docker.from_env(), users=users, driver_user=driver_user)
    print(f"deploying {project} on port {d.port} from {root} (inv build up)...", flush=True)
    try:
        result = d.inv("build", "up")
        if result.returncode != 0:
            raise BenchError(f"inv build up failed:\n{result.output[-4000:]}")
    except BaseException:  # a failure or Ctrl-C: leave nothing behind
        teardown(bench)
        raise
    print(f"  up in {result.seconds:.1f} s", flush=True)
    bench.admin = HubUser(d.url, d.cafile)
    bench.admin.login_form("admin", d.password("admin"))
    return bench


def teardown(bench: Bench, keep_dir: bool = False) -> None:
    """`inv down`, then everything with the project's label, then the copy."""
    import docker

    bench.d.inv("down")
    client, label = bench.client, label_filter(bench.project)
    for container in client.containers.list(all=True, filters=label):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for image in client.images.list(filters=label):
        client.images.remove(image.id, force=True)
    if not keep_dir:
        shutil.rmtree(bench.d.root, ignore_errors=True)


def wait_api(bench: Bench, deadline_s: float = 120, interval_s: float = 0.05) -> float:
    """Seconds until GET /hub/api answers 200 through the proxy (a 404 right after a start
    does not count)."""
    import requests

    started = time.perf_counter()
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            response = requests.get(f"{bench.d.url}/hub/api", verify=bench.d.cafile, timeout=2)
            if response.status_code == 200:
                return time.perf_counter() - started
            last = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            last = f"{type(error).__name__}"
        time.sleep(interval_s)
    raise BenchError(f"the hub API did not answer 200 within {deadline_s} s; last: {last}")
