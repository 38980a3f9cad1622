"""A real second Docker host for the remote tests.

`remote_host` runs a container holding sshd in front of its own dockerd (see sshhost/),
reached over SSH on a 127.0.0.1 port, seeded with the base image, and makes a temporary
HOME whose ~/.ssh/config names it `jhremote` and whose known_hosts holds its host key.
A deployment made there with `-H jhremote` publishes the hub on the inner engine; the
outer container forwards the same port number from 127.0.0.1 on this machine.

Everything created here carries the remote-host test label plus a per-session label,
and is removed by those labels; the image stays, tagged by a hash of what it is built
from, so later sessions reuse it. The steps themselves are in remotehost.py.
"""
import time
import uuid

import docker
import pytest

from remotehost import (
    ALIAS, BASE_IMAGE, LOOPBACK, SESSION_LABEL, TEST_LABEL, TEST_LABEL_VALUE, RemoteHost,
    compose_plugin, ensure_image, new_client_key, read_container_file, remove_labelled,
    seed_image, start_container, wait_for_host, write_ssh_files,
)


def dump_logs(request, host_container) -> None:
    """Print the outer container's log and the inner engine's log, past pytest's capture."""
    text = (
        f"\n===== remote host {host_container.name}: container log\n"
        + host_container.logs(tail=300).decode(errors="replace")
        + f"\n===== remote host {host_container.name}: /var/log/dockerd.log (last 300 lines)\n"
        + "\n".join(read_container_file(host_container, "/var/log/dockerd.log").splitlines()[-300:])
    )
    show(request, text)


def show(request, text: str) -> None:
    """Print now, past pytest's output capture (a session fixture has no report of its own)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(text, flush=True)


@pytest.fixture(scope="session")
def outer_docker():
    """This machine's engine: the one the remote host runs on, not the one it serves."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"the remote tests need a running Docker Engine ({error}); run bin/setup --test")
    return client


@pytest.fixture(scope="session")
def remote_host(request, tmp_path_factory, outer_docker):
    """A separate Docker host over SSH at 127.0.0.1, known as `jhremote` in a temporary HOME."""
    client = outer_docker
    started = time.monotonic()
    tag, build_seconds = ensure_image(client, compose_plugin())

    home = tmp_path_factory.mktemp("remote-home")
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    key_path = new_client_key(ssh_dir)

    session = uuid.uuid4().hex[:10]
    labels = {TEST_LABEL: TEST_LABEL_VALUE, SESSION_LABEL: session}
    container = None
    setup_failed = True
    try:
        volume = client.volumes.create(name=f"jh-remote-{session}-docker", labels=labels)
        container, ssh_port, hub_port = start_container(
            client, tag, labels, volume, (ssh_dir / "id_ed25519.pub").read_bytes(), session,
        )
        container_started = time.monotonic()
        wait_for_host(container, ssh_port)
        host = RemoteHost(
            alias=ALIAS, host=LOOPBACK, ssh_port=ssh_port, hub_port=hub_port, home=home,
            key_path=key_path, container=container,
        )
        host.trust_current_key()
        write_ssh_files(host)
        host.ssh().close()  # the first real login, checked against known_hosts
        ready = time.monotonic()
        seed_image(container.name, BASE_IMAGE)
        seeded = time.monotonic()
        host.timings = {
            "image_build_s": build_seconds,
            "ready_s": ready - container_started,
            "seed_s": seeded - ready,
            "setup_total_s": seeded - started,
        }
        build = "cached" if build_seconds is None else f"built in {build_seconds:.1f} s"
        show(request, (
            f"\nremote_host {container.name}: image {tag} {build}; sshd+dockerd ready "
            f"{host.timings['ready_s']:.1f} s; seeded {BASE_IMAGE} in "
            f"{host.timings['seed_s']:.1f} s; setup {host.timings['setup_total_s']:.1f} s"
        ))
        setup_failed = False
        yield host
    finally:
        if container is not None and (setup_failed or request.session.testsfailed):
            dump_logs(request, container)
        remove_labelled(client, session)
