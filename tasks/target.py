"""The one place that knows where the deployment runs: this machine, or a remote host
reached over SSH (`python -m tasks -H host ...`, where `c` is a Fabric Connection).

Tasks get a Docker client, run compose, reach the hub's port and learn the host's name
through these functions, and never ask which of the two they run on. The project folder
on this machine stays the source of truth: settings, userlist and secrets are read and
written here, and a remote host gets a copy (`sync_project`).
"""
import hashlib
import io
import json
import os
import re
import shlex
import socket
import weakref
from contextlib import contextmanager
from pathlib import Path

from invoke.exceptions import Exit

from tasks.applied import RECORD

ROOT = Path(__file__).resolve().parent.parent
# What a remote host needs to run the deployment; secrets/ travels with mode 0600/0700.
PROJECT_FILES = ("docker-compose.yml", ".env", "userlist", "hub", "notebook", "secrets")
REMOTE_DIR = "jupyterhub-deploy"  # relative to the remote user's home
BUNDLE_MARK = ".bundle-sha256"
REMOTE_CA_FILE = ".build/ca-bundle.pem"


def is_remote(c) -> bool:
    return hasattr(c, "host") and hasattr(c, "client")


def project_dir(c) -> Path:
    """The project folder on this machine: docker-compose.yml, .env, userlist, secrets/."""
    return Path(c.config.get("project_dir") or ROOT)


def deploy_dir(c) -> str:
    """Where compose runs: the project folder here, or its copy on the remote host."""
    if is_remote(c):
        return c.config.get("remote_dir") or REMOTE_DIR
    return str(project_dir(c))


def host_name(c) -> str:
    """The name people use to reach the hub: this machine's name, or the SSH target's."""
    return c.host if is_remote(c) else socket.gethostname()


def applied_record(c) -> Path:
    """Where the record of the last applied state is kept (tasks/applied.py): in the project
    folder on this machine, one for this machine's engine and one per remote host."""
    if not is_remote(c):
        return project_dir(c) / RECORD
    where = re.sub(r"[^A-Za-z0-9._-]", "_", f"{c.user}@{c.host}:{c.port}")
    return project_dir(c) / RECORD.with_name(f"{RECORD.stem}-{where}{RECORD.suffix}")


def inspect_engine(c, container_id: str, image_names) -> tuple | None:
    """(the container's inspection, or {} when gone; {image name: id, or None when gone})
    from the deployment's engine, for the quick check; None when the engine cannot be asked,
    and the caller then takes every step. Here straight on the engine's socket; on a remote
    host with the Docker SDK over the SSH connection, as every task does."""
    if is_remote(c):
        return _inspect_with_sdk(c, container_id, image_names)
    from urllib.parse import quote

    answers = engine_json(c, [f"/containers/{container_id}/json",
                              *(f"/images/{quote(name, safe='/:@')}/json" for name in image_names)])
    if answers is None:
        return None
    container, *images = answers
    return container, {name: image.get("Id") for name, image in zip(image_names, images)}


def _inspect_with_sdk(c, container_id: str, image_names) -> tuple | None:
    import docker

    def inspect(method, name):
        try:
            return method(name)
        except docker.errors.NotFound:
            return {}

    try:
        client = docker_client(c)
        container = inspect(client.api.inspect_container, container_id)
        return container, {name: inspect(client.api.inspect_image, name).get("Id") for name in image_names}
    except (Exit, docker.errors.DockerException):
        return None


def engine_json(c, paths) -> list | None:
    """GET each Engine API path on this machine's engine socket: its JSON, or {} for 404.
    Without the Docker SDK, whose import alone is slower than a no-op `docker compose up`.
    None when this cannot answer: a remote host, DOCKER_HOST not a local socket, an engine
    that does not answer (the caller then takes the path with every check)."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if is_remote(c) or not host.startswith("unix://") or os.environ.get("DOCKER_CONTEXT"):
        return None
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(host[len("unix://"):])

    connection = UnixConnection("localhost", timeout=5)
    answers = []
    try:
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            if response.status == 404:
                answers.append({})
            elif response.status == 200:
                answers.append(json.loads(body))
            else:
                return None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
    return answers


_REMOTE_CLIENTS = weakref.WeakKeyDictionary()


def docker_client(c):
    """A Docker SDK client for the engine the deployment runs on, checked to answer. Over
    SSH, one per connection: each opens channels, and sshd allows 10 per connection."""
    import docker  # imported here: `inv --list` should not pay for it

    if is_remote(c) and c in _REMOTE_CLIENTS:
        return _REMOTE_CLIENTS[c]
    try:
        if is_remote(c):
            c.open()
            # Speak the Docker API over channels of the Connection's own SSH session
            # (`docker system dial-stdio` on the remote), so host keys are checked once,
            # by our rules, and nothing opens a second connection.
            client = docker.DockerClient(base_url=f"ssh://{c.host}", use_ssh_client=True,
                                         version="1.41")
            adapter = _connection_adapter(c.client)
            client.api.mount("http+docker://ssh", adapter)
            client.api._custom_adapter = adapter
            client.api._version = client.api._retrieve_server_version()
        else:
            client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        where = f"on {c.host}" if is_remote(c) else "on this machine"
        raise Exit(
            f"Cannot reach the Docker Engine {where} ({error}).\nStart it (`sudo systemctl "
            "start docker`, or run bin/setup, which installs and starts it on Debian/Ubuntu), "
            "and check that you may use it (root, or a member of the docker group)."
        )
    if is_remote(c):
        _REMOTE_CLIENTS[c] = client
    return client


def _connection_adapter(ssh_client):
    """docker-py's SSH adapter, on an SSH client that is already connected (the Fabric
    Connection's), and never handing out a channel whose remote end has gone away:
    docker-py's pool skips urllib3's liveness check, and the engine drops idle
    `dial-stdio` streams during a long build."""
    from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter

    class LivePool(SSHConnectionPool):
        def _get_conn(self, timeout):
            conn = super()._get_conn(timeout)
            channel = getattr(conn, "sock", None)
            if channel is not None and (channel.closed or channel.exit_status_ready()):
                conn.close()
                return self._new_conn()
            return conn

    class ConnectionAdapter(SSHHTTPAdapter):
        def __init__(self):
            super().__init__("ssh://deployment-host", shell_out=True)  # opens nothing itself
            self.ssh_client = ssh_client

        def get_connection(self, url, proxies=None):
            # One pool for every URL: docker-py keys its pools by the request URL, so each
            # new URL would open (and keep) another channel; sshd allows 10 per connection.
            with self.pools.lock:
                pool = self.pools.get("engine")
                if pool is None:
                    pool = LivePool(ssh_client=self.ssh_client, timeout=self.timeout,
                                    maxsize=self.max_pool_size, host=self.ssh_host)
                    self.pools["engine"] = pool
            return pool

    return ConnectionAdapter()


def compose_argv(c, *args, env=None) -> list:
    """`env K=V... docker compose ... ARGS` for the deployment folder, as one argv. The
    variables ride in the argv (quoted by shlex.join) rather than in Fabric's inline
    `export K=V`, which does not quote; and no `cd`, which invoke does not quote either."""
    where = deploy_dir(c)
    assigns = [f"{key}={value}" for key, value in sorted((env or {}).items())]
    return ["env", *assigns, "docker", "compose", "--project-directory", where,
            "--file", f"{where}/docker-compose.yml", *args]


def compose(c, *args, env=None, **run_kwargs):
    """Run `docker compose ARGS` for the deployment; argv only, never a shell string from input."""
    return c.run(shlex.join(compose_argv(c, *args, env=env)), **run_kwargs)


def build_ca_file(c, local_file: str) -> str:
    """The CA bundle path compose should use for builds, as seen where compose runs."""
    if local_file and is_remote(c):
        return REMOTE_CA_FILE  # travels in the project bundle
    return local_file


@contextmanager
def hub_address(c, port: int):
    """(host, port) on this machine that reaches the hub's published port on the
    deployment's host: the port itself, or a local end of an SSH tunnel to it."""
    if not is_remote(c):
        yield ("127.0.0.1", port)
        return
    with socket.socket() as spare:  # a free local port for the tunnel's near end
        spare.bind(("127.0.0.1", 0))
        local_port = spare.getsockname()[1]
    with c.forward_local(local_port, remote_port=port, remote_host="127.0.0.1"):
        yield ("127.0.0.1", local_port)


def port_in_use(c, port: int) -> bool:
    """Whether something already listens on the port where the hub would publish it."""
    if is_remote(c):
        result = c.run(shlex.join(["ss", "-Htln", f"sport = :{int(port)}"]), hide=True, warn=True)
        return result.ok and bool(result.stdout.strip())
    import errno

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers (and Docker's port proxy) do: lingering TIME_WAIT connections from a
        # hub that just stopped do not count, only a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def bundle(root: Path, ca_file: str = "") -> bytes:
    """The project files a remote host needs, as one tar (small: no images, no backups)."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def clean(info):
            if "__pycache__" in info.name:
                return None
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # the same files give the same bytes, so the digest means "unchanged"
            return info

        for name in PROJECT_FILES:
            if (root / name).exists():
                tar.add(root / name, arcname=name, filter=clean)
        if ca_file:
            tar.add(ca_file, arcname=REMOTE_CA_FILE, filter=clean)
    return buffer.getvalue()


def _remote_mark(c) -> str:
    """The digest of the project files last uploaded in full to the remote host, or ""."""
    where = shlex.quote(deploy_dir(c))
    return c.run(f"cat {where}/{BUNDLE_MARK} 2>/dev/null || true", hide=True).stdout.strip()


def project_copy_current(c, ca_file_of) -> bool:
    """Whether compose's folder holds the current project files: always here; on a remote
    host, when it holds what sync_project would upload now. `ca_file_of()` gives the CA
    bundle that travels with them (asked only for a remote host)."""
    if not is_remote(c):
        return True
    return _remote_mark(c) == hashlib.sha256(bundle(project_dir(c), ca_file_of())).hexdigest()


def sync_project(c, ca_file: str = "") -> str:
    """Give a remote host the current project files (no-op locally). One tar stream into
    `tar -x` over an SSH channel: no temporary file, nothing in shell history. The digest
    is written last, so an upload cut short is simply done again next time."""
    if not is_remote(c):
        return ""
    data = bundle(project_dir(c), ca_file)
    digest = hashlib.sha256(data).hexdigest()
    where = shlex.quote(deploy_dir(c))
    mark = _remote_mark(c)
    if mark == digest:
        return f"project files on {c.host}: unchanged"
    script = (f"umask 077 && mkdir -p {where} && tar -x -m -C {where} "
              f"&& printf %s {digest} > {where}/{BUNDLE_MARK}")
    channel = c.client.get_transport().open_session()
    try:
        channel.exec_command(shlex.join(["sh", "-c", script]))
        channel.sendall(data)
        channel.shutdown_write()
        errors = channel.makefile_stderr("rb").read().decode(errors="replace")
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if status != 0:
        raise Exit(f"Uploading the project to {c.host}:{deploy_dir(c)} failed: {errors.strip()}")
    return f"project files on {c.host}: uploaded ({len(data) // 1024} KiB)"
