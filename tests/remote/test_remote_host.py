"""The remote_host fixture is a real, separate Docker host: its own engine, storage and
ports, reached only through SSH with a checked host key."""
import shlex
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager

import docker
import paramiko
import pytest
from fabric import Config, Connection

from remotehost import BASE_IMAGE, TEST_LABEL, TEST_LABEL_VALUE, wait_until

pytestmark = pytest.mark.remote


def ssh_run(host, *argv, timeout=300):
    """Run argv on the remote host over a RejectPolicy SSH connection: (rc, stdout, stderr)."""
    client = host.ssh()
    try:
        _, stdout, stderr = client.exec_command(shlex.join(argv), timeout=timeout)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err
    finally:
        client.close()


def test_engine_over_ssh_is_not_this_machines(remote_host, outer_docker):
    rc, out, err = ssh_run(remote_host, "docker", "info", "--format", "{{.ID}}")
    assert rc == 0, err
    remote_id = out.strip()
    assert remote_id and remote_id != outer_docker.info()["ID"]
    # And `docker()` talks to that same engine.
    assert remote_host.docker("info", "--format", "{{.ID}}").stdout.strip() == remote_id


def test_seeded_base_image_is_on_the_remote_engine(remote_host):
    rc, out, err = ssh_run(remote_host, "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    assert rc == 0, err
    assert BASE_IMAGE in out.split()


def test_remote_engine_runs_containers(remote_host):
    rc, out, err = ssh_run(remote_host, "docker", "run", "--rm", BASE_IMAGE, "echo", "ok")
    assert (rc, out.strip()) == (0, "ok"), err


def test_remote_engine_volumes_are_writable(remote_host):
    volume = "remote-host-test-data"
    label = f"{TEST_LABEL}={TEST_LABEL_VALUE}"
    created = remote_host.docker("volume", "create", "--label", label, volume)
    assert created.returncode == 0, created.stderr
    try:
        rc, out, err = ssh_run(
            remote_host, "docker", "run", "--rm", "-v", f"{volume}:/data", BASE_IMAGE,
            "sh", "-c", "echo written >/data/file && cat /data/file",
        )
        assert (rc, out.strip()) == (0, "written"), err
        assert "read-only file system" not in err
    finally:
        remote_host.docker("volume", "rm", "-f", volume)


@contextmanager
def greeter(remote_host):
    """A container on the remote engine that publishes hub_port there and greets each
    connection; yields once the greeting reaches 127.0.0.1:hub_port here."""
    port = remote_host.hub_port
    server = (
        "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => $ARGV[0], "
        "Listen => 5, ReuseAddr => 1) or die $!; while (my $c = $s->accept) "
        "{ print $c qq(hello from the remote engine\\n); close $c }"
    )
    started = remote_host.docker(
        "run", "-d", "--rm", "--name", "remote-host-port-test", "-p", f"{port}:{port}",
        BASE_IMAGE, "perl", "-e", server, str(port),
    )
    assert started.returncode == 0, started.stderr
    try:
        def greets():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    sock.settimeout(2)
                    data = sock.recv(100)
            except OSError as error:
                return False, repr(error)
            return data.startswith(b"hello"), data

        yield wait_until(f"a greeting on 127.0.0.1:{port}", greets, timeout=20)
    finally:
        remote_host.docker("rm", "-f", "remote-host-port-test")


def test_hub_port_reaches_a_port_published_on_the_remote_engine(remote_host):
    """127.0.0.1:hub_port here -> the remote host -> a container publishing hub_port there."""
    with greeter(remote_host) as greeting:
        assert greeting.startswith(b"hello")


@contextmanager
def checked_connection(remote_host, monkeypatch, **config):
    """A Fabric Connection to the host as `jhremote`, rejecting unknown host keys."""
    monkeypatch.setenv("HOME", str(remote_host.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    connection = Connection(remote_host.alias, config=Config(overrides=config))
    # Fabric 3.2 auto-accepts unknown keys and never loads known_hosts (fabric#1804).
    connection.client.load_host_keys(str(remote_host.known_hosts))
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        yield connection
    finally:
        connection.close()


def test_hub_endpoint_over_ssh_connects_at_once_every_time(remote_host, monkeypatch):
    """tasks.target.hub_endpoint: each connection is an SSH channel, usable as it returns."""
    from tasks.target import hub_endpoint

    tries = 50
    with greeter(remote_host), checked_connection(remote_host, monkeypatch) as connection:
        with hub_endpoint(connection, remote_host.hub_port) as endpoint:
            greetings = []
            for _ in range(tries):
                with endpoint.connect(5) as sock:
                    greetings.append(sock.makefile("rb").readline())
    assert greetings == [b"hello from the remote engine\n"] * tries


def test_hub_endpoint_over_ssh_says_when_nothing_listens_there(remote_host, monkeypatch):
    from tasks.target import hub_endpoint

    port = remote_host.hub_port  # nothing publishes it now
    with checked_connection(remote_host, monkeypatch) as connection:
        with hub_endpoint(connection, port) as endpoint:
            with pytest.raises(ConnectionRefusedError) as refused:
                endpoint.connect(5)
    assert f"nothing accepts connections on its port {port}" in str(refused.value)


def test_fabric_runs_docker_compose_through_the_ssh_config(remote_host, monkeypatch):
    # Fabric reads ~/.ssh/config when its Config is made: the alias comes from the temp HOME.
    with checked_connection(remote_host, monkeypatch) as connection:
        result = connection.run("docker compose version", hide=True, warn=True, in_stream=False)
    assert result.ok, result.stderr
    assert "v2." in result.stdout


def test_hostile_values_reach_compose_on_the_remote_host_intact(remote_host, monkeypatch):
    """tasks.target.compose over a real SSH connection: a folder name and a variable full of
    shell syntax arrive as given, and the remote shell runs none of it."""
    import io
    import json

    from tasks.target import compose

    folder = "my deploy;$(touch pwned)"
    value = "/home/me/My CA.pem; touch pwned `id`"
    with checked_connection(remote_host, monkeypatch, remote_dir=folder) as connection:
        connection.run(shlex.join(["mkdir", "-p", folder]), hide=True, in_stream=False)
        connection.put(io.BytesIO(b"services:\n  s:\n    image: busybox\n"
                                  b"    environment:\n      V: ${BUILD_CA_FILE}\n"),
                       f"{folder}/docker-compose.yml")
        result = compose(connection, "config", "--format", "json", env={"BUILD_CA_FILE": value},
                         hide=True, in_stream=False)
        pwned = connection.run("find . -name pwned", hide=True, in_stream=False).stdout
        connection.run(shlex.join(["rm", "-rf", folder]), hide=True, in_stream=False)
    assert json.loads(result.stdout)["services"]["s"]["environment"]["V"] == value
    assert pwned.strip() == ""


def test_docker_sdk_reaches_the_remote_engine_over_ssh(remote_host, monkeypatch):
    # The SDK's ssh:// transport reads only ~/.ssh/config and ~/.ssh/known_hosts, and
    # rejects unknown keys; it puts port 22 into a URL without one, hence docker_url.
    monkeypatch.setenv("HOME", str(remote_host.home))
    client = docker.DockerClient(base_url=remote_host.docker_url, timeout=60)
    try:
        remote_id = client.info()["ID"]
    finally:
        client.close()
    assert remote_id == remote_host.docker("info", "--format", "{{.ID}}").stdout.strip()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client on this machine")
def test_docker_cli_reaches_the_remote_engine_through_openssh(remote_host):
    # The docker CLI runs `ssh ... docker system dial-stdio`; env() makes that `ssh` use
    # the temporary config, so the bare alias works as it would for a user.
    result = subprocess.run(
        ["docker", "-H", f"ssh://{remote_host.alias}", "info", "--format", "{{.ID}}"],
        env=remote_host.env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == remote_host.docker("info", "--format", "{{.ID}}").stdout.strip()


def test_changed_host_key_is_rejected_until_trusted(remote_host):
    started = time.monotonic()
    try:
        remote_host.recreate_host_key()
        with pytest.raises(paramiko.BadHostKeyException):
            remote_host.ssh().close()
    finally:
        remote_host.trust_current_key()
    remote_host.ssh().close()
    assert time.monotonic() - started < 30
