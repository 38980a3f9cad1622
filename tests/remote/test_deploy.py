"""`python -m tasks -H host deploy` against a real, separate Docker host over SSH.

The remote host (tests/remote/conftest.py) runs its own engine behind sshd; it starts with
nothing but the base image. The tests run in file order and build on each other.
"""
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest_support import copy_project_for_remote
from hubclient import HubClient
from remotehost import BASE_IMAGE
from tasks.target import REMOTE_CA_FILE

pytestmark = pytest.mark.remote


@pytest.fixture(scope="module")
def remote_deployment(remote_host, tmp_path_factory):
    d = copy_project_for_remote(tmp_path_factory.mktemp("remote-deployment"), remote_host)
    yield d
    d.inv("down")


def test_deploy_from_nothing_serves_https_and_spawns_on_the_remote(remote_deployment, remote_host):
    d = remote_deployment
    assert remote_host.docker("ps", "-q").stdout.strip() == ""
    result = d.inv_ok("deploy")
    print(f"first deploy: {result.seconds:.1f} s, ssh: {d.ssh_stats()}")
    d.first_deploy_output = result.output
    assert f"answers at https://{remote_host.host}:{d.port}/" in result.output
    # Through the remote host's published port, verified against the generated certificate.
    response = requests.get(f"{d.url}/hub/api", verify=d.cafile, timeout=10)
    assert response.status_code == 200 and response.json()["version"] == "6.1.1"
    hub = HubClient(d.url, d.cafile)
    assert hub.login("admin", d.password("admin")).status_code == 302
    hub.make_token("admin")
    hub.start_server("admin")
    assert hub.run_code("admin", "6*7") == "42"
    # The user's server runs on the remote engine, not on this machine's.
    names = remote_host.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert f"{d.project}-user-admin" in names
    assert f"{d.project}-user-admin" not in subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    # Secrets arrived with owner-only modes.
    modes = remote_host.container.exec_run(
        ["sh", "-c", "stat -c '%a %n' jupyterhub-deploy/secrets jupyterhub-deploy/secrets/*"],
        workdir="/root").output.decode()
    assert "700 jupyterhub-deploy/secrets\n" in modes
    assert "600 jupyterhub-deploy/secrets/jupyterhub.key" in modes


def test_second_deploy_is_a_quick_no_op(remote_deployment, remote_host):
    d = remote_deployment
    before = remote_host.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    result = d.inv_ok("deploy")
    stats = d.ssh_stats()
    print(f"no-op deploy: {result.seconds:.1f} s, ssh: {stats}")
    assert "nothing changed since the last `inv up`" in result.output  # the record for this host
    assert "unchanged" in result.output and "uploaded" not in result.output
    assert "Recreate" not in result.output and "Started" not in result.output
    ids = lambda text: sorted(line.split()[:2] for line in text.splitlines())
    assert ids(remote_host.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout) == ids(before)
    assert result.seconds <= 10, f"no-op deploy took {result.seconds:.1f} s"
    assert stats["connections"] == 1
    assert stats["channels"] <= 10, stats


def test_a_base_image_loaded_there_is_not_said_to_be_made_with_debootstrap(remote_deployment,
                                                                           remote_host):
    # The fixture loaded the base image with `docker load`: nothing was made with debootstrap.
    output = remote_deployment.first_deploy_output
    said = [line for line in output.splitlines() if BASE_IMAGE in line and "base image" in line.lower()]
    assert said and all("debootstrap" not in line for line in said), output
    assert f"already on {remote_host.alias}" in said[-1]


def project_files(root) -> dict:
    """path -> (size, mtime, mode) of every file in the project folder, but for what Python
    and the test's SSH counter write there."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(root.rglob("*"))
            if "__pycache__" not in p.parts and p.name != ".ssh-stats.json"}


def test_a_dry_run_down_leaves_the_users_server_and_the_files_alone(remote_deployment, remote_host):
    d = remote_deployment
    server = f"{d.project}-user-admin"
    inspect = ("inspect", "--format", "{{.Id}} {{.State.Running}}", server)
    before = remote_host.docker(*inspect).stdout.strip()
    assert before.endswith(" true"), before  # admin's server from the first test runs
    files = project_files(d.root)
    result = d.inv("-R", "down")
    assert remote_host.docker(*inspect).stdout.strip() == before, result.output
    assert project_files(d.root) == files
    assert result.returncode != 0 and "--dry" in result.output, result.output
    assert f"`python -m tasks -H {remote_host.alias} down`" in result.output


def test_status_over_ssh_finds_the_hub_up_every_time(remote_deployment):
    d = remote_deployment
    runs, failed = 30, []
    for _ in range(runs):
        result = d.inv("status")
        if result.returncode != 0 or "hub answers on port" not in result.output:
            failed.append(result.output.strip().splitlines()[-1:])
    print(f"status over ssh: {runs - len(failed)}/{runs} saw the hub up")
    assert not failed, f"{len(failed)}/{runs} runs said the hub was down; last lines: {failed}"


def remote_files(remote_host, folder: str) -> dict:
    """path -> sha256 of every file below folder in root's home on the remote host."""
    listing = remote_host.container.exec_run(
        ["sh", "-c", f"cd {folder} && find . -type f -exec sha256sum {{}} +"], workdir="/root"
    ).output.decode()
    return {line.split(None, 1)[1].strip()[2:]: line.split()[0] for line in listing.splitlines()}


def local_files(root) -> dict:
    import hashlib

    from tasks.upload import BUNDLE_MARK, PROJECT_FILES

    found = {}
    for name in PROJECT_FILES:
        paths = [root / name] if (root / name).is_file() else (root / name).rglob("*")
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {**found, BUNDLE_MARK: None}


def test_files_deleted_here_are_deleted_from_the_remote_copy_only(remote_deployment, remote_host):
    d = remote_deployment
    notes = d.root / "secrets" / "old-notes.txt"
    notes.write_text("written here, then deleted here\n")
    notes.chmod(0o600)
    d.inv_ok("deploy")
    assert "secrets/old-notes.txt" in remote_files(remote_host, "jupyterhub-deploy")
    # Beside the copy, and a file put into the copy by hand: only the latter may go.
    remote_host.container.exec_run(["sh", "-c", "mkdir -p jupyterhub-deploy-keep && echo kept > "
                                    "jupyterhub-deploy-keep/file && echo kept > jupyterhub-deploy.note "
                                    "&& echo stray > jupyterhub-deploy/hub/stray.txt"], workdir="/root")
    notes.unlink()
    result = d.inv_ok("deploy")
    there = remote_files(remote_host, "jupyterhub-deploy")
    there.pop(REMOTE_CA_FILE, None)  # the CA bundle for builds travels with the copy
    here = local_files(d.root)
    assert there.keys() == here.keys(), result.output
    assert all(there[path] == digest for path, digest in here.items() if digest), result.output
    beside = remote_host.container.exec_run(
        ["cat", "jupyterhub-deploy-keep/file", "jupyterhub-deploy.note"], workdir="/root").output
    assert beside == b"kept\nkept\n"


def test_a_changed_host_key_is_refused(remote_deployment, remote_host):
    d = remote_deployment
    remote_host.recreate_host_key()
    try:
        result = d.inv("status")
        assert result.returncode != 0
        assert "has CHANGED" in result.output and "ssh-keyscan" in result.output
        assert "Traceback" not in result.output
    finally:
        remote_host.trust_current_key()
    d.inv_ok("status")


def test_an_unknown_host_is_refused(remote_deployment, remote_host):
    d = remote_deployment
    saved = remote_host.known_hosts.read_text()
    remote_host.known_hosts.write_text("")
    try:
        result = d.inv("status")
        assert result.returncode != 0
        assert "not a known SSH host" in result.output and "ssh-keyscan" in result.output
    finally:
        remote_host.known_hosts.write_text(saved)


def test_a_dropped_connection_mid_deploy_converges_on_the_next_run(remote_deployment, remote_host):
    d = remote_deployment
    # A change that makes deploy upload files and recreate the hub.
    (d.root / "userlist").write_text((d.root / "userlist").read_text() + "bob\n")
    process = subprocess.Popen(
        [sys.executable, *d.program, "deploy"], cwd=d.root, env=d.full_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        seen.append(line)
        if "project files on" in line or time.monotonic() > deadline:
            break
    # Drop every SSH session from the server's side, as a network cut would.
    remote_host.container.exec_run(["pkill", "-f", "sshd: root"])
    try:
        rest, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        rest, _ = process.communicate()
    output = "".join(seen) + rest
    assert process.returncode != 0, output
    # One line at the end says what happened and what finishes it, and no traceback.
    last = output.strip().splitlines()[-1]
    assert f"The SSH connection to {remote_host.alias} was lost during `deploy`" in last, output
    assert f"`python -m tasks -H {remote_host.alias} deploy`" in last, output
    assert "Traceback" not in output
    result = d.inv_ok("deploy")
    assert "answers at" in result.output
    hub = HubClient(d.url, d.cafile)
    assert hub.login("bob", d.password("bob")).status_code == 302


def test_a_second_operation_over_ssh_is_refused_naming_the_first(remote_deployment, remote_host):
    """The operation lock lives on the remote engine: a second task from this laptop (or any
    other) is refused while a deploy runs there, with the command that removes a lock left
    by a machine that went away."""
    import os

    d = remote_deployment
    userlist = d.root / "userlist"
    shipped = userlist.read_text()
    userlist.write_text(shipped + "carl\n")  # a change: no quick path, the hub is recreated
    first = subprocess.Popen(
        [sys.executable, *d.program, "deploy"], cwd=d.root, env=d.full_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in first.stdout:
            seen.append(line)
            if "project files on" in line:
                break
        assert seen and "project files on" in seen[-1], "".join(seen)
        second = d.inv("down")
        rest, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
        userlist.write_text(shipped)
    assert first.returncode == 0, "".join(seen) + rest
    assert second.returncode == 1, second.output
    assert (f"Another operation on deployment {d.project} is running: "
            f"`python -m tasks -H {remote_host.alias} deploy` started") in second.output, second.output
    assert f"by process {first.pid} on {os.uname().nodename}" in second.output, second.output
    assert f"`docker rm {d.project}-operation.lock` on {remote_host.alias}." in second.output
    assert remote_host.docker("ps", "-q", "--filter", f"name={d.project}-hub").stdout.strip()
    d.inv_ok("deploy")  # the userlist as shipped again


def test_backup_over_ssh_round_trips_with_matching_checksums(remote_deployment, remote_host):
    """`-H host backup --user` lands the archive here; `-H host restore` puts it back there."""
    import hashlib
    import re

    d = remote_deployment
    hub = HubClient(d.url, d.cafile)
    assert hub.login("admin", d.password("admin")).status_code == 302
    hub.make_token("admin")
    hub.start_server("admin")
    hub.put_file("admin", "remote-notes.txt", "kept on the remote host")
    result = d.inv_ok("backup", "--user", "admin")
    path = d.root / re.search(r"path:\s+(\S+)", result.output).group(1)
    printed = re.search(r"sha256:\s+([0-9a-f]{64})", result.output).group(1)
    assert path.is_file(), result.output  # the archive is on this machine
    assert hashlib.sha256(path.read_bytes()).hexdigest() == printed
    # Lose the file on the remote host, then restore from the archive here.
    hub.put_file("admin", "remote-notes.txt", "overwritten by mistake")
    hub.stop_server("admin")
    d.inv_ok("restore", "--user", "admin", "--from", str(path), "--force")
    hub.start_server("admin")
    assert hub.get_file("admin", "remote-notes.txt") == "kept on the remote host"


def test_an_upgrade_over_ssh_replaces_the_hub_and_keeps_the_running_server(remote_deployment,
                                                                            remote_host):
    """`-H host upgrade` with a changed hub image: a backup lands here, the new hub on the
    remote host passes its check, and the admin's server runs on in the same container."""
    import re

    d = remote_deployment
    hub = HubClient(d.url, d.cafile)
    assert hub.login("admin", d.password("admin")).status_code == 302
    hub.make_token("admin")
    hub.start_server("admin")
    server = remote_host.docker("ps", "-q", "--filter", f"name={d.project}-user-admin").stdout.strip()
    old_hub = remote_host.docker("inspect", "-f", "{{.Image}}", f"{d.project}-hub-1").stdout.strip()
    dockerfile = d.root / "hub" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL org.jupyterhub-deploy.test-upgrade=1\n")
    result = d.inv_ok("upgrade")
    assert "checked: JupyterHub 6.1.1 answers" in result.output, result.output[-3000:]
    archive = re.search(r"the hub's data before the upgrade: (\S+)", result.output)[1]
    assert (d.root / archive).is_file(), f"the backup is on this machine: {archive}"
    new_hub = remote_host.docker("inspect", "-f", "{{.Image}}", f"{d.project}-hub-1").stdout.strip()
    assert new_hub != old_hub, "the hub runs the new image"
    assert remote_host.docker("ps", "-q", "--filter",
                              f"name={d.project}-user-admin").stdout.strip() == server, \
        "the admin's server ran on through the upgrade"
    assert hub.run_code("admin", "6*7") == "42"
