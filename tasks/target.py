"""The one place that knows where the deployment runs: this machine, or a remote host
reached over SSH (`python -m tasks -H host ...`, where `c` is a Fabric Connection).

Tasks get a Docker client, run compose, reach the hub's port and learn the host's name
through these functions, and never ask which of the two they run on. The project folder
on this machine stays the source of truth: settings, userlist and secrets are read and
written here, and a remote host gets a copy (tasks/upload.py).
"""
import os
import re
import shlex
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from invoke.exceptions import Exit

from tasks.applied import RECORD

ROOT = Path(__file__).resolve().parent.parent
REMOTE_DIR = "jupyterhub-deploy"  # relative to the remote user's home
REMOTE_CA_FILE = ".build/ca-bundle.pem"  # in the remote copy; the upload carries it there
# The settings the tasks read from invoke's config, with their defaults (tasks/root.py
# declares them, so INVOKE_PROJECT_DIR, a config file or -f can set them).
CONFIG_DEFAULTS = {"project_dir": str(ROOT), "remote_dir": REMOTE_DIR}


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


def given_host(c) -> str:
    """The remote host as the operator gave it to -H (`admin@hub.example.org`, or an alias
    from ~/.ssh/config), for messages; tasks/program.py keeps it on the connection."""
    return getattr(c, "given_host", "") or c.original_host


def place(c) -> str:
    """Where the deployment runs, as messages say it: this machine, or the host's name."""
    return given_host(c) if is_remote(c) else "this machine"


def command_line(c, *words) -> str:
    """The command that runs a task where the operator is: `inv up` here (or with no `c`);
    over SSH `python -m tasks -H HOST up`, with the host as they gave it. Every message that
    tells the operator to run a task renders the command here."""
    if c is not None and is_remote(c):
        return shlex.join(["python", "-m", "tasks", "-H", given_host(c), *words])
    return shlex.join(["inv", *words])


def note_step(c, step: str) -> None:
    """Say what the run is doing on a remote host now ("uploading the project files"), for
    the line that names it if the SSH connection drops (tasks/program.py)."""
    if is_remote(c) and hasattr(type(c), "doing"):
        c.doing = step


def host_name(c) -> str:
    """The name people use to reach the hub: this machine's name, or the SSH target's."""
    return c.host if is_remote(c) else socket.gethostname()


def engine_id(c) -> str:
    """Which engine the deployment runs on: "" for this machine's, user@host:port for a
    remote host's. Each has its own record of the last `inv up` and its own Run."""
    return f"{c.user}@{c.host}:{c.port}" if is_remote(c) else ""


def applied_record(c) -> Path:
    """Where the record of the last applied state is kept (tasks/applied.py): in the project
    folder on this machine, one for this machine's engine and one per remote host."""
    engine = engine_id(c)
    if not engine:
        return project_dir(c) / RECORD
    where = re.sub(r"[^A-Za-z0-9._-]", "_", engine)
    return project_dir(c) / RECORD.with_name(f"{RECORD.stem}-{where}{RECORD.suffix}")


def engine_socket(c) -> str | None:
    """The Unix socket of this machine's engine, for asking it straight (tasks/quick.py);
    None for a remote host, or when DOCKER_HOST or DOCKER_CONTEXT point elsewhere."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if is_remote(c) or not host.startswith("unix://") or os.environ.get("DOCKER_CONTEXT"):
        return None
    return host[len("unix://"):]


def docker_client(c):
    """A Docker SDK client for the engine the deployment runs on, checked to answer. Make
    it once per run (tasks/run.py holds it): over SSH each client opens channels of its
    own, and sshd allows 10 per connection."""
    import docker  # imported here: `inv --list` should not pay for it

    try:
        if is_remote(c):
            from tasks import sshdocker

            client = sshdocker.client_over(c)
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
    return client


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
def hub_endpoint(c, port: int, host: str = "127.0.0.1"):
    """How this machine reaches the hub's published port on the deployment's host
    (a tasks.probe.HubEndpoint): a TCP connection here; on a remote host, one SSH
    direct-tcpip channel to its 127.0.0.1:port per connection. With `host`, another
    address as the deployment's host reaches it (the ACME server, checked from there).

    No local port listens for the remote case, so nothing can be asked before it is
    ready (Fabric's forward_local yields before its thread listens: a probe then found
    its port closed about one run in ten). Channels still open at the end are closed."""
    from tasks.probe import HubEndpoint, local_endpoint

    if not is_remote(c):
        yield local_endpoint(port, host)
        return
    import paramiko

    c.open()
    transport = c.client.get_transport()
    opened = []

    def connect(timeout: float) -> socket.socket:
        note_step(c, f"asking the hub on port {port}")
        try:
            channel = transport.open_channel("direct-tcpip", (host, port),
                                             ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as error:  # the host could not connect there
            raise ConnectionRefusedError(
                f"{given_host(c)} answered that nothing accepts connections on its port {port} "
                f"({error.text})") from None
        except paramiko.SSHException as error:
            raise ConnectionError(f"the SSH connection to {given_host(c)} failed: {error}") from None
        opened.append(channel)
        return _socket_over(channel)

    try:
        yield HubEndpoint(connect, f"port {port} on {given_host(c)} (through SSH)")
    finally:
        for channel in opened:
            channel.close()


def _socket_over(channel) -> socket.socket:
    """A socket whose other end is the SSH channel: http.client and ssl need a real socket,
    which a paramiko channel is not. Two threads copy the bytes, one each way; each passes
    an end of stream on, and they close everything once both are done."""
    near, far = socket.socketpair()
    done = []

    def copy(read, write, end):
        try:
            while data := read(1 << 16):
                write(data)
            end()
        except Exception:  # noqa: BLE001  an end is gone (even the SSH connection): the copy is over
            pass
        done.append(True)
        if len(done) == 2:
            channel.close()
            near.close()

    threads = [
        threading.Thread(target=copy, args=(channel.recv, near.sendall,
                                            lambda: near.shutdown(socket.SHUT_WR)), daemon=True),
        threading.Thread(target=copy, args=(near.recv, channel.sendall, channel.shutdown_write),
                         daemon=True),
    ]
    for thread in threads:
        thread.start()
    return far


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
