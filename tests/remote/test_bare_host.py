"""`python -m tasks -H admin@host deploy` on a bare Debian server: sshd, sudo and a non-root
user, no Docker. The deploy installs Docker Engine, the compose plugin and debootstrap
there (saying so), makes the base image with debootstrap (no registry answers here), builds,
and brings up a hub that spawns a server; a second run changes nothing. Before that, the
same host with sudo asking for a password is refused with nothing installed.

The tests run in file order and build on each other.
"""
import re

import pytest
import requests

from conftest_support import copy_project_for_remote
from hubclient import HubClient

pytestmark = pytest.mark.remote

SUDOERS = "/etc/sudoers.d/admin"


# The user image without its scientific packages: the host builds every image from nothing,
# and these are most of its download; what is tested here is the host, not the image.
HEAVY = re.compile(r"(numpy|scipy|pandas|matplotlib)==")


@pytest.fixture(scope="module")
def bare_deployment(bare_host, tmp_path_factory):
    d = copy_project_for_remote(tmp_path_factory.mktemp("bare-deployment"), bare_host)
    requirements = d.root / "notebook" / "requirements.txt"
    requirements.write_text("".join(line for line in requirements.read_text().splitlines(True)
                                    if not HEAVY.match(line)))
    yield d
    d.inv("down")


def on_host(host, *argv):
    result = host.container.exec_run(list(argv))
    return result.exit_code, result.output.decode(errors="replace")


def test_a_host_whose_sudo_asks_for_a_password_is_refused_with_nothing_installed(
        bare_host, bare_deployment):
    assert on_host(bare_host, "mv", SUDOERS, "/root/sudoers-admin")[0] == 0
    try:
        result = bare_deployment.inv("deploy")
    finally:
        assert on_host(bare_host, "mv", "/root/sudoers-admin", SUDOERS)[0] == 0
    assert result.returncode == 1, result.output[-3000:]
    assert "installing it needs root: sudo there asks for a password for admin" in result.output
    assert "`admin ALL=(ALL) NOPASSWD: ALL`" in result.output
    assert on_host(bare_host, "sh", "-c", "command -v dockerd")[0] != 0, "nothing was installed"


def test_deploy_installs_docker_and_brings_up_a_hub_that_spawns(bare_host, bare_deployment):
    d = bare_deployment
    result = d.inv_ok("deploy", timeout=1800)
    print(f"deploy on a bare host: {result.seconds:.1f} s")
    out = result.output
    assert "setup on jhremote: installing docker.io, debootstrap with apt" in out, out[-4000:]
    assert "setup on jhremote: copying this machine's docker compose plugin" in out
    assert "setup on jhremote: starting dockerd in the background" in out
    assert "setup on jhremote: adding admin to the docker group" in out
    assert "made with debootstrap on jhremote" in out, out[-4000:]
    response = requests.get(f"{d.url}/hub/api", verify=d.cafile, timeout=10)
    assert response.status_code == 200
    hub = HubClient(d.url, d.cafile)
    assert hub.login("admin", d.password("admin")).status_code == 302
    hub.make_token("admin")
    hub.start_server("admin")
    assert hub.run_code("admin", "6*7") == "42"
    code, names = on_host(bare_host, "docker", "ps", "--format", "{{.Names}}")
    assert f"{d.project}-user-admin" in names.split(), names
    # The project's copy is the SSH user's, in their home, with the files' own modes (a
    # non-root user's umask made them 0600, and the user image's config unreadable to it).
    assert on_host(bare_host, "stat", "-c", "%U", "/home/admin/jupyterhub-deploy")[1].strip() == "admin"
    assert on_host(bare_host, "stat", "-c", "%a",
                   "/home/admin/jupyterhub-deploy/notebook/Dockerfile")[1].strip() == "644"


def test_a_second_deploy_installs_nothing_and_changes_nothing(bare_host, bare_deployment):
    d = bare_deployment
    before = on_host(bare_host, "docker", "ps", "--format", "{{.ID}} {{.Status}}")[1]
    result = d.inv_ok("deploy")
    assert "setup on" not in result.output, result.output[-3000:]
    assert "nothing changed since the last `inv up`" in result.output
    after = on_host(bare_host, "docker", "ps", "--format", "{{.ID}} {{.Status}}")[1]
    assert sorted(line.split()[0] for line in after.splitlines()) == \
        sorted(line.split()[0] for line in before.splitlines())
