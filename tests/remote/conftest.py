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
import pytest

from deployment_support import engine_for_tests
from remotehost import BARE_HOST, BASE_IMAGE, SSH_HOST, read_container_file, started_host


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
def outer_docker(tmp_path_factory):
    """This machine's engine: the one the remote host runs on, not the one it serves. The
    remote host is seeded with the base image `inv build` makes here."""
    return engine_for_tests(tmp_path_factory.mktemp("images"), "remote tier")


@pytest.fixture(scope="session")
def remote_host(request, tmp_path_factory, outer_docker):
    """A separate Docker host over SSH at 127.0.0.1, known as `jhremote` in a temporary HOME."""
    def on_failure(container):
        if request.session.testsfailed:
            dump_logs(request, container)

    with started_host(outer_docker, tmp_path_factory.mktemp("remote-home"),
                      on_exit=on_failure, on_setup_failure=lambda ct: dump_logs(request, ct)) as host:
        build = host.timings["image_build_s"]
        build = "cached" if build is None else f"built in {build:.1f} s"
        show(request, (
            f"\nremote_host {host.container.name}: image {build}; sshd+dockerd ready "
            f"{host.timings['ready_s']:.1f} s; seeded {BASE_IMAGE} in "
            f"{host.timings['seed_s']:.1f} s; setup {host.timings['setup_total_s']:.1f} s"
        ))
        yield host


@pytest.fixture(scope="module")
def bare_host(request, tmp_path_factory, outer_docker):
    """A bare Debian server over SSH (see barehost/): sshd, sudo, a non-root `admin`, no
    Docker; known as `jhremote` in a temporary HOME, as remote_host is."""
    def on_failure(container):
        if request.session.testsfailed:
            dump_logs(request, container)

    with started_host(outer_docker, tmp_path_factory.mktemp("bare-home"), on_exit=on_failure,
                      on_setup_failure=lambda ct: dump_logs(request, ct), kind=BARE_HOST) as host:
        build = host.timings["image_build_s"]
        show(request, f"\nbare_host {host.container.name}: image "
                      f"{'cached' if build is None else f'built in {build:.1f} s'}; sshd ready "
                      f"{host.timings['ready_s']:.1f} s")
        yield host


SWARM_ALIASES = ("jhmanager", "jhworker1", "jhworker2")


@pytest.fixture(scope="module")
def swarm_hosts(request, tmp_path_factory, outer_docker):
    """Three hosts over SSH on one labelled Docker network, where each reaches the others by
    name, known by their aliases in one temporary HOME: `jhmanager` and `jhworker1` run
    Docker (the manager seeded with the base image), and `jhworker2` is a bare Debian server
    with a non-root `admin` and sudo (as bare_host). Not yet a swarm: the tool makes it one."""
    import contextlib
    import uuid

    from remotehost import SESSION_LABEL, TEST_LABEL, TEST_LABEL_VALUE

    def on_failure(container):
        if request.session.testsfailed:
            dump_logs(request, container)

    home = tmp_path_factory.mktemp("swarm-home")
    network = outer_docker.networks.create(
        f"jh-swarm-{uuid.uuid4().hex[:10]}",
        labels={TEST_LABEL: TEST_LABEL_VALUE, SESSION_LABEL: "swarm"})
    try:
        with contextlib.ExitStack() as stack:
            hosts = [stack.enter_context(started_host(
                outer_docker, home, on_exit=on_failure,
                on_setup_failure=lambda ct: dump_logs(request, ct), alias=alias,
                network=network.name, seed=alias == "jhmanager",
                kind=BARE_HOST if alias == "jhworker2" else SSH_HOST)) for alias in SWARM_ALIASES]
            show(request, "\nswarm_hosts: " + ", ".join(
                f"{h.alias} ({h.container.name}, ready {h.timings['ready_s']:.1f} s)" for h in hosts))
            yield hosts
    finally:
        network.remove()
