"""The second Docker host the remote tests deploy to, and the steps that make it.

A container holding sshd in front of its own dockerd (see sshhost/), reached over SSH on a
127.0.0.1 port. Everything made here carries the remote-host test label plus a
per-session label; the image is tagged by a hash of what it is built from and kept.
The pytest wiring (fixture, teardown, logs) is in conftest.py.
"""
import hashlib
import io
import logging
import os
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

BASE_IMAGE = "jupyterhub-deploy-base:bookworm"
CONTEXT_FILES = ("entrypoint.sh", "sshd.conf")


@dataclass(frozen=True)
class Kind:
    """What a test host is built from and how it is reached."""
    dockerfile: str      # in sshhost/, with entrypoint.sh and sshd.conf
    image_repo: str
    user: str            # the SSH user the tasks log in as
    home: str            # that user's home, where authorized_keys goes
    uid: int
    engine: bool         # whether it runs a Docker engine from the start (then seeded)


CONTEXT = Path(__file__).resolve().parent / "sshhost"
# sshd in front of its own dockerd, root logs in (sshhost/Dockerfile).
SSH_HOST = Kind("Dockerfile", "jupyterhub-deploy-remote-host", "root", "/root", 0, True)
# A bare Debian: sshd and sudo only, a non-root `admin` with sudo (sshhost/Dockerfile.bare).
BARE_HOST = Kind("Dockerfile.bare", "jupyterhub-deploy-bare-host", "admin", "/home/admin", 1000,
                 False)
TEST_LABEL = "org.jupyterhub-deploy.test"
TEST_LABEL_VALUE = "remote-host"
# Other engineers run this fixture at the same time: teardown removes only this session's.
SESSION_LABEL = "org.jupyterhub-deploy.test.session"
ALIAS = "jhremote"
LOOPBACK = "127.0.0.1"
# Where the docker CLI looks for plugins, in its own order (the user's folder first).
PLUGIN_DIRS = [
    Path("~/.docker/cli-plugins").expanduser(),
    Path("/usr/local/lib/docker/cli-plugins"),
    Path("/usr/local/libexec/docker/cli-plugins"),
    Path("/usr/lib/docker/cli-plugins"),
    Path("/usr/libexec/docker/cli-plugins"),
]
READY_TIMEOUT = 90
SEED_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(what: str, probe, timeout: float, interval: float = 0.2):
    """Call `probe()` until it returns (True, value); fail saying what it saw last.

    `probe` returns (done, seen): `seen` is the value on success, or a description
    of the last state otherwise (kept for the failure message).
    """
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while True:
        done, seen = probe()
        if done:
            return seen
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}; last seen: {seen}")
        time.sleep(interval)


def compose_plugin() -> Path:
    """This machine's compose v2 plugin binary, copied into the remote host's image."""
    for folder in PLUGIN_DIRS:
        candidate = folder / "docker-compose"
        if candidate.is_file():
            return candidate
    pytest.fail(
        "the remote host image needs the docker compose v2 plugin of this machine, found in "
        f"none of {', '.join(map(str, PLUGIN_DIRS))}; run bin/setup --test"
    )


def file_digest(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def image_tag(base_id: str, plugin, kind: Kind = SSH_HOST) -> str:
    """A tag that changes whenever anything the image is built from changes."""
    digest = hashlib.sha256()
    for name in (kind.dockerfile, *CONTEXT_FILES):
        digest.update(name.encode() + b"\0" + (CONTEXT / name).read_bytes() + b"\0")
    digest.update(base_id.encode() + b"\0" + (file_digest(plugin) if plugin else "").encode())
    return f"{kind.image_repo}:{digest.hexdigest()[:16]}"


def ensure_image(client, plugin, kind: Kind = SSH_HOST):
    """Return (tag, seconds spent building, or None when the cached image was reused)."""
    try:
        base = client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the remote host is built FROM {BASE_IMAGE}, which is missing; run `inv build`")
    tag = image_tag(base.id, plugin, kind)
    try:
        client.images.get(tag)
        return tag, None
    except docker.errors.ImageNotFound:
        pass
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="remote-host-context-") as context:
        for name in (kind.dockerfile, *CONTEXT_FILES):
            shutil.copy2(CONTEXT / name, Path(context) / name)
        if plugin:
            shutil.copy2(plugin, Path(context) / "docker-compose")
        output = []
        # The low-level API streams the build; images.build() would hold it all until the end.
        for chunk in client.api.build(
            path=context, dockerfile=kind.dockerfile, tag=tag, buildargs={"BASE_IMAGE": BASE_IMAGE},
            labels={TEST_LABEL: TEST_LABEL_VALUE}, rm=True, forcerm=True, pull=False, decode=True,
        ):
            output.append(chunk.get("stream", ""))
            if "error" in chunk:
                tail = "".join(output)[-4000:]
                pytest.fail(f"building {tag} failed: {chunk['error']}\n{tail}")
    return tag, time.monotonic() - started


def new_client_key(ssh_dir: Path) -> Path:
    """An ed25519 key pair in OpenSSH format, made without ssh-keygen (it may be absent)."""
    key = Ed25519PrivateKey.generate()
    private = ssh_dir / "id_ed25519"
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ))
    private.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH,
    )
    (ssh_dir / "id_ed25519.pub").write_bytes(public + b" remote-host-test\n")
    return private


def authorized_keys_archive(public_key: bytes, uid: int = 0) -> bytes:
    """A tar of HOME/.ssh/authorized_keys with the owner and modes sshd insists on."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(".ssh")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        folder.uid = folder.gid = uid
        tar.addfile(folder)
        entry = tarfile.TarInfo(".ssh/authorized_keys")
        entry.mode, entry.size = 0o600, len(public_key)
        entry.uid = entry.gid = uid
        tar.addfile(entry, io.BytesIO(public_key))
    return buffer.getvalue()


def read_container_file(container, path: str) -> str:
    """A file's text through the archive API, which works on a stopped container too."""
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.APIError as error:
        return f"({path} unreadable: {error.explanation})"
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        return tar.extractfile(member).read().decode(errors="replace")


# Probing sshd while it restarts fails on purpose until it is back; paramiko's transport
# thread would log each of those as an ERROR with a traceback, which reads like a fault.
PROBE_LOG = "remotehost.host-key-probe"
logging.getLogger(PROBE_LOG).setLevel(logging.CRITICAL)


def served_host_key(host: str, port: int) -> str:
    """`TYPE BASE64` of the key sshd presents now, or raise if it does not answer."""
    with socket.create_connection((host, port), timeout=5) as sock:
        transport = paramiko.Transport(sock)
        transport.set_log_channel(PROBE_LOG)
        try:
            transport.start_client(timeout=5)
            key = transport.get_remote_server_key()
        finally:
            transport.close()
    return f"{key.get_name()} {key.get_base64()}"


@dataclass
class RemoteHost:
    """The second Docker host, as the tests and the deploy tasks under test see it."""

    alias: str
    host: str
    ssh_port: int
    hub_port: int
    home: Path
    key_path: Path
    container: object
    timings: dict = field(default_factory=dict)
    user: str = "root"

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.home / ".ssh" / "config"

    def docker(self, *args, input=None, timeout=600):
        """Run `docker ARGS` on the remote host's engine; a CompletedProcess (text)."""
        stdin = ["-i"] if input is not None else []
        return subprocess.run(
            ["docker", "exec", *stdin, self.container.name, "docker", *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )

    @property
    def docker_url(self) -> str:
        """For the Docker SDK: it fills in port 22 itself and so never uses the config's Port."""
        return f"ssh://{self.alias}:{self.ssh_port}"

    def env(self) -> dict:
        """Environment for a subprocess that should reach the host as `jhremote`.

        HOME serves paramiko, Fabric and the Docker SDK; the OpenSSH client reads ~/.ssh
        from the passwd entry instead, so an `ssh` first on PATH adds `-F` for it (and for
        the docker CLI's ssh:// hosts, which run `ssh`).
        """
        env = {**os.environ, "HOME": str(self.home)}
        env["PATH"] = os.pathsep.join([str(self.home / "bin"), env.get("PATH", os.defpath)])
        # Only the fixture's key: an agent of the engineer running the tests has no place here.
        env.pop("SSH_AUTH_SOCK", None)
        return env

    def ssh(self, policy=None) -> paramiko.SSHClient:
        """A connected paramiko client checking the temporary known_hosts (RejectPolicy)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(policy or paramiko.RejectPolicy())
        client.connect(
            self.host, port=self.ssh_port, username=self.user, key_filename=str(self.key_path),
            look_for_keys=False, allow_agent=False, timeout=10,
        )
        return client

    def host_keys(self) -> list:
        """`TYPE BASE64` of every host key the container holds now."""
        result = self.container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
        if result.exit_code != 0:
            raise RuntimeError(f"reading the host keys failed: {result.output.decode(errors='replace')}")
        return [" ".join(line.split()[:2]) for line in result.output.decode().splitlines() if line.strip()]

    def trust_current_key(self) -> None:
        """Rewrite this host's lines of known_hosts with the keys it holds now (other hosts'
        lines, of a swarm's other nodes in the same HOME, stay)."""
        mine = f"[{self.host}]:{self.ssh_port} "
        others = [line for line in (self.known_hosts.read_text().splitlines(True)
                                    if self.known_hosts.exists() else [])
                  if not line.startswith(mine)]
        self.known_hosts.write_text(
            "".join(others) + "".join(f"{mine}{key}\n" for key in self.host_keys()))
        self.known_hosts.chmod(0o600)

    def recreate_host_key(self) -> None:
        """New host keys and a restarted sshd: known_hosts is stale until trust_current_key()."""
        old = set(self.host_keys())
        result = self.container.exec_run([
            "sh", "-c", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A",
        ])
        if result.exit_code != 0:
            raise RuntimeError(f"ssh-keygen -A failed: {result.output.decode(errors='replace')}")
        new = set(self.host_keys())
        # SIGHUP makes sshd re-execute itself, which reloads the host keys; the listening
        # process keeps its pid, so the container (and the inner engine) stay up.
        result = self.container.exec_run(["sh", "-c", 'kill -HUP "$(cat /run/sshd.pid)"'])
        if result.exit_code != 0:
            raise RuntimeError(f"restarting sshd failed: {result.output.decode(errors='replace')}")

        def serves_new_key():
            try:
                served = served_host_key(self.host, self.ssh_port)
            except (OSError, paramiko.SSHException) as error:
                return False, f"no SSH answer ({error!r})"
            return served in new and served not in old, f"served key {served[:40]}..."

        wait_until("sshd to serve the new host key", serves_new_key, timeout=30)


def write_ssh_files(host: RemoteHost) -> None:
    """~/.ssh/config naming the host (after the blocks of other hosts in the same HOME), and
    an `ssh` that reads it (see RemoteHost.env)."""
    before = host.ssh_config.read_text() if host.ssh_config.exists() else ""
    host.ssh_config.write_text(
        before +
        f"Host {host.alias}\n"
        f"    HostName {host.host}\n"
        f"    Port {host.ssh_port}\n"
        f"    User {host.user}\n"
        f"    IdentityFile {host.key_path}\n"
        "    IdentitiesOnly yes\n"
        # Spelled out because OpenSSH would otherwise use the real ~/.ssh/known_hosts.
        f"    UserKnownHostsFile {host.known_hosts}\n"
        "    StrictHostKeyChecking yes\n"
    )
    openssh = shutil.which("ssh")
    if openssh is None:
        return  # nothing to wrap: paramiko-based clients need only HOME
    wrapper = host.home / "bin" / "ssh"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(openssh)} -F {shlex.quote(str(host.ssh_config))} \"$@\"\n"
    )
    wrapper.chmod(0o755)


def remove_labelled(client, session: str) -> None:
    filters = {"label": [f"{TEST_LABEL}={TEST_LABEL_VALUE}", f"{SESSION_LABEL}={session}"]}
    for container in client.containers.list(all=True, filters=filters):
        container.remove(force=True)
    for volume in client.volumes.list(filters=filters):
        volume.remove(force=True)


def start_container(client, tag: str, labels: dict, volume, public_key: bytes, session: str,
                    kind: Kind = SSH_HOST, alias: str = ALIAS, network: str | None = None):
    """Create, fill and start the host; retried when the chosen hub port was taken meanwhile."""
    for _ in range(3):
        hub_port = free_port()
        host_config = client.api.create_host_config(
            # MACHINE.md: --privileged fails on this VM (no CAP_SYS_RESOURCE in the bounding
            # set); this is the set that lets the inner engine run containers.
            cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=["a *:* rwm"], cgroupns="private",
            # An init reaps what SSH sessions leave behind; sshd then is not pid 1.
            init=True,
            # The inner engine's storage must not be overlay on overlay.
            binds={volume.name: {"bind": "/var/lib/docker", "mode": "rw"}},
            # sshd on a port Docker picks; the hub on the same number inside and out, so a
            # deployment there with HUB_PORT=P answers at 127.0.0.1:P here.
            port_bindings={22: (LOOPBACK, None), hub_port: (LOOPBACK, hub_port)},
        )
        # `--security-opt systempaths=unconfined` is a docker CLI option, not an engine one
        # (the engine answers "invalid --security-opt"): the CLI sends it as these two
        # empty lists, which the SDK has no parameter for.
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
        created = client.api.create_container(
            tag, name=f"jh-remote-{session}", hostname=alias, labels=labels,
            ports=[22, hub_port], host_config=host_config,
            networking_config=(client.api.create_networking_config(
                {network: client.api.create_endpoint_config(aliases=[alias])})
                if network else None),
        )
        container = client.containers.get(created["Id"])
        container.put_archive(kind.home, authorized_keys_archive(public_key, kind.uid))
        try:
            container.start()
        except docker.errors.APIError as error:
            container.remove(force=True)
            if "already allocated" in str(error) or "address already in use" in str(error):
                continue
            raise
        container.reload()
        ssh_port = int(container.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        return container, ssh_port, hub_port
    pytest.fail("could not publish a free hub port for the remote host in 3 attempts")


def wait_for_host(container, ssh_port: int, engine: bool = True) -> None:
    """Until sshd greets on the published port and the inner engine answers."""

    def ready():
        container.reload()
        if container.status != "running":
            raise RuntimeError(
                f"the remote host container stopped ({container.status}, "
                f"{container.attrs['State']}):\n{container.logs(tail=80).decode(errors='replace')}"
            )
        try:
            with socket.create_connection((LOOPBACK, ssh_port), timeout=2) as sock:
                sock.settimeout(2)
                banner = sock.recv(64)
        except OSError as error:
            return False, f"sshd port {ssh_port}: {error!r}"
        if not banner.startswith(b"SSH-"):
            # docker-proxy accepts before anything listens inside, then closes.
            return False, f"sshd port {ssh_port} answered {banner!r}"
        if not engine:
            return True, banner.decode(errors="replace").strip()
        info = container.exec_run(["docker", "info", "--format", "{{.ServerVersion}}"])
        if info.exit_code != 0:
            return False, f"inner `docker info`: {info.output.decode(errors='replace').strip()}"
        return True, info.output.decode().strip()

    try:
        wait_until("the remote host's sshd and dockerd", ready, timeout=READY_TIMEOUT)
    except TimeoutError as error:
        raise TimeoutError(f"{error}\ncontainer log:\n{container.logs(tail=80).decode(errors='replace')}")


def seed_image(container_name: str, image: str) -> None:
    """`docker save IMAGE | docker exec -i HOST docker load`, streamed (no registry there)."""
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        load = subprocess.Popen(
            ["docker", "exec", "-i", container_name, "docker", "load"],
            stdin=save.stdout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        save.stdout.close()  # so `docker save` sees a broken pipe if the load dies
        output, _ = load.communicate(timeout=SEED_TIMEOUT)
        save_rc = save.wait(timeout=SEED_TIMEOUT)
    if save_rc != 0 or load.returncode != 0:
        pytest.fail(f"seeding the remote host with {image} failed (save {save_rc}, load "
                    f"{load.returncode}): {output.strip()}")


@contextmanager
def started_host(client, home: Path, on_exit=None, on_setup_failure=None, kind: Kind = SSH_HOST,
                 alias: str = ALIAS, network: str | None = None, seed: bool = True):
    """Build (or reuse) the image, start the host, trust its key, seed the base image;
    yield a RemoteHost; remove everything this call made by its session label. Several
    hosts (a swarm's nodes) share one HOME under their own aliases, and `network` puts them
    on one Docker network, where each reaches the others by alias."""
    started = time.monotonic()
    tag, build_seconds = ensure_image(client, compose_plugin() if kind.engine else None, kind)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = ssh_dir / "id_ed25519"
    if not key_path.exists():  # the first host in this HOME; the others share its key
        key_path = new_client_key(ssh_dir)
    session = uuid.uuid4().hex[:10]
    labels = {TEST_LABEL: TEST_LABEL_VALUE, SESSION_LABEL: session}
    container = None
    ready_for_use = False
    try:
        volume = client.volumes.create(name=f"jh-remote-{session}-docker", labels=labels)
        container, ssh_port, hub_port = start_container(
            client, tag, labels, volume, (ssh_dir / "id_ed25519.pub").read_bytes(), session,
            kind, alias, network,
        )
        container_started = time.monotonic()
        wait_for_host(container, ssh_port, kind.engine)
        host = RemoteHost(
            alias=alias, host=LOOPBACK, ssh_port=ssh_port, hub_port=hub_port, home=home,
            key_path=key_path, container=container, user=kind.user,
        )
        host.trust_current_key()
        write_ssh_files(host)
        host.ssh().close()  # the first real login, checked against known_hosts
        ready = time.monotonic()
        if kind.engine and seed:  # a bare host has no engine: deploy makes its own
            seed_image(container.name, BASE_IMAGE)
        seeded = time.monotonic()
        host.timings = {
            "image_build_s": build_seconds,
            "ready_s": ready - container_started,
            "seed_s": seeded - ready,
            "setup_total_s": seeded - started,
        }
        ready_for_use = True
        yield host
    finally:
        if container is not None:
            hook = on_exit if ready_for_use else on_setup_failure
            if hook:
                hook(container)
        remove_labelled(client, session)
