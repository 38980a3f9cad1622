"""Floors: what the machine allows without the hub. A user's server run straight on the
engine, the way DockerSpawner ran it (same image, command, environment, volume and
network), timed until it answers, and reached straight at its address."""
import http.client
import time
from dataclasses import dataclass

from bench.driver import HubUser
from tasks.names import labels

PORT = 8888  # DockerSpawner's default port inside the container


@dataclass(frozen=True)
class Template:
    """How DockerSpawner created a user's server, read back from the engine."""
    image: str        # the image ID, so the floor runs exactly what the hub ran
    command: list
    environment: list
    binds: list
    network: str
    user: str
    prefix: str       # JUPYTERHUB_SERVICE_PREFIX, e.g. /user/alice/


def template_of(attrs: dict) -> Template:
    """Read the template from `docker inspect` of a container the hub spawned."""
    env = dict(line.split("=", 1) for line in attrs["Config"]["Env"])
    return Template(
        image=attrs["Image"],
        command=attrs["Config"]["Cmd"],
        environment=attrs["Config"]["Env"],
        binds=attrs["HostConfig"]["Binds"] or [],
        network=attrs["HostConfig"]["NetworkMode"],
        user=env["JUPYTERHUB_USER"],
        prefix=env["JUPYTERHUB_SERVICE_PREFIX"],
    )


@dataclass
class Direct:
    """A server started straight on the engine, and how long each part took (s)."""
    container_id: str
    ip: str
    create_s: float
    start_s: float     # the engine's `start` call
    answer_s: float    # from `start` until the server answered
    cpu_s: float       # CPU time the container used until it answered
    answered_at: float = 0.0  # perf_counter() when it answered

    @property
    def total_s(self) -> float:
        """Create + start + answering: the floor of a spawn."""
        return self.create_s + self.start_s + self.answer_s

    @property
    def container_s(self) -> float:
        """The engine's part alone (create + start)."""
        return self.create_s + self.start_s

    def url(self, prefix: str) -> str:
        return f"http://{self.ip}:{PORT}{prefix}"


def wait_http(client, container_id: str, ip: str, path: str, deadline_s: float = 120,
              poll_s: float = 0.01) -> None:
    """Poll GET path until the server answers below 500, every poll_s (10 ms: the floor
    should be tight); fail early, with the log, if the container exits."""
    end = time.monotonic() + deadline_s
    next_state_check = time.monotonic() + 1
    last = "no answer yet"
    while time.monotonic() < end:
        conn = http.client.HTTPConnection(ip, PORT, timeout=2)
        try:
            conn.request("GET", path)
            status = conn.getresponse().status
            if status < 500:
                return
            last = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
        finally:
            conn.close()
        if time.monotonic() > next_state_check:
            next_state_check += 1
            state = client.api.inspect_container(container_id)["State"]
            if not state["Running"]:
                logs = client.api.logs(container_id, tail=40).decode(errors="replace")
                raise RuntimeError(f"the server exited ({state.get('ExitCode')}) before answering:\n{logs}")
        time.sleep(poll_s)
    raise RuntimeError(f"http://{ip}:{PORT}{path} did not answer within {deadline_s} s; last: {last}")


def cpu_seconds(client, container_id: str) -> float:
    stats = client.api.stats(container_id, stream=False, one_shot=True)
    return stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def start_direct(client, template: Template, name: str, project: str, image: str = "",
                 poll_s: float = 0.01) -> Direct:
    """Create and start a server as DockerSpawner does (same API calls and settings), under
    our own name and labels, and wait until it answers on the path the hub polls."""
    api = client.api
    started = time.perf_counter()
    created = api.create_container(
        image or template.image, command=template.command, environment=template.environment,
        name=name, ports=[PORT],
        labels=labels(project, "bench-floor"),
        host_config=api.create_host_config(binds=template.binds, network_mode=template.network,
                                           auto_remove=True),
    )
    container_id = created["Id"]
    created_at = time.perf_counter()
    api.start(container_id)
    start_done = time.perf_counter()
    ip = api.inspect_container(container_id)["NetworkSettings"]["Networks"][template.network]["IPAddress"]
    wait_http(client, container_id, ip, template.prefix + "api", poll_s=poll_s)
    answered = time.perf_counter()
    return Direct(container_id, ip, created_at - started, start_done - created_at,
                  answered - start_done, cpu_seconds(client, container_id), answered)


def stop_direct(client, container_id: str) -> float:
    """Stop and remove as DockerSpawner does; seconds taken."""
    import docker

    started = time.perf_counter()
    try:
        client.api.stop(container_id)
        client.api.remove_container(container_id, v=True)
    except docker.errors.NotFound:
        pass  # AutoRemove was quicker
    except docker.errors.APIError as error:
        if error.status_code != 409:  # removal already in progress
            raise
    wait_gone(client, container_id)
    return time.perf_counter() - started


def wait_gone(client, name_or_id: str, deadline_s: float = 60) -> None:
    import docker

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            client.api.inspect_container(name_or_id)
        except docker.errors.NotFound:
            return
        time.sleep(0.02)
    raise RuntimeError(f"container {name_or_id} still there after {deadline_s} s")


def direct_user(direct: Direct, token: str) -> HubUser:
    """A client that talks to the server at its own address, with no hub or proxy between."""
    user = HubUser(f"http://{direct.ip}:{PORT}", cafile=None)
    user.token = token
    return user


def direct_session(client, template: Template, name: str, project: str, token: str) -> dict:
    """The driver's session without the hub: start the server straight on the engine, open
    JupyterLab, start a kernel, run the check, stop. Phase -> seconds."""
    phases = {}
    direct = start_direct(client, template, name, project)
    phases["spawn"] = direct.total_s
    try:
        user = direct_user(direct, token)
        started = time.perf_counter()
        user.open_lab(template.user)
        phases["open"] = time.perf_counter() - started
        started = time.perf_counter()
        kernel = user.start_kernel(template.user)
        phases["kernel"] = time.perf_counter() - started
        started = time.perf_counter()
        user.run_check(template.user, kernel)
        phases["execute"] = time.perf_counter() - started
    finally:
        phases["stop"] = stop_direct(client, direct.container_id)
    return phases
