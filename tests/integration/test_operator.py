"""What a new operator runs into, on the real engine: secrets others can read, two
operations at once, a refused run, a user with no server, a removed name's password, the
base image, and two deployments on one engine.

The tests share one deployment and run in file order; each leaves it up and unchanged.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from deployment_support import (Deployment, copy_project, engine_state, free_port,
                                remove_images)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def up(deployment):
    deployment.inv_ok("build", "up")
    return deployment


def record_of(d):
    return (d.root / ".state" / "applied.json").read_bytes()


# --- a user with no server ------------------------------------------------------------------------

def test_logs_of_a_user_without_a_server_fails_with_one_line(up):
    result = up.inv("logs", "--user", "alice")
    assert result.returncode == 1, result.output
    assert result.output.strip().splitlines() == [
        f"alice has no server in {up.project}: it starts when they log in, or from the "
        "admin panel; then run this again."]


# --- a refused run keeps the record ---------------------------------------------------------------

def test_a_refused_up_leaves_the_record_of_the_last_up_as_it_was(up, docker_client):
    before, record = engine_state(docker_client, up), record_of(up)
    result = up.inv("up", env={"DOCKER_NOTEBOOK_IMAGE": "jht-no-such-image:1"})
    assert result.returncode == 1, result.output
    assert "jht-no-such-image:1 is not on this host" in result.output, result.output
    assert record_of(up) == record
    assert engine_state(docker_client, up) == before
    assert "nothing changed since the last `inv up`" in up.inv_ok("up").output


# --- secrets others can read ----------------------------------------------------------------------

OPEN_SECRETS = {
    "secrets/jupyterhub.key": (0o644, "chmod 600 secrets/jupyterhub.key"),
    "secrets": (0o755, "chmod 700 secrets"),
    "secrets/initial-passwords": (0o640, "chmod 600 secrets/initial-passwords"),
    "secrets/hub-api-token": (0o604, "chmod 600 secrets/hub-api-token"),
}


@pytest.mark.parametrize("task", ["build", "up", "deploy"])
@pytest.mark.parametrize("path", sorted(OPEN_SECRETS))
def test_a_secret_others_can_read_is_refused_before_anything_changes(up, docker_client, path,
                                                                      task):
    mode, fix = OPEN_SECRETS[path]
    target = up.root / path
    saved = target.stat().st_mode & 0o7777
    before, record = engine_state(docker_client, up), record_of(up)
    target.chmod(mode)
    try:
        result = up.inv(task)
        modes_after = {p.name: p.stat().st_mode & 0o7777 for p in (up.root / "secrets").iterdir()}
    finally:
        target.chmod(saved)
    assert result.returncode == 1, result.output
    assert f"{path} can be read by other users (mode {mode:04o})" in result.output, result.output
    assert f"run `{fix}`" in result.output
    assert "nothing changed" not in result.output and "Traceback" not in result.output
    assert engine_state(docker_client, up) == before and record_of(up) == record
    assert modes_after.get(target.name, mode) == mode  # refused, not quietly changed


def test_the_certificate_may_be_read_by_everyone(up):
    assert (up.root / "secrets" / "jupyterhub.crt").stat().st_mode & 0o777 == 0o644
    assert "nothing changed since the last `inv up`" in up.inv_ok("up").output


# --- a removed name's password goes with it -------------------------------------------------------

def password_lines(d):
    text = (d.root / "secrets" / "initial-passwords").read_text()
    return {line.split()[0]: line.split()[1] for line in text.splitlines()
            if line.strip() and not line.startswith("#")}


def test_a_name_removed_from_userlist_loses_its_initial_password(up):
    from hubclient import HubClient

    userlist = up.root / "userlist"
    shipped = userlist.read_text()
    try:
        userlist.write_text(shipped + "carol\n")
        up.inv_ok("up")
        first = password_lines(up)["carol"]
        assert HubClient(up.url, up.cafile).login("carol", first).status_code == 302
        userlist.write_text(shipped)
        result = up.inv_ok("up")
        assert "carol" not in password_lines(up)
        assert "initial passwords: removed the line of carol (no longer in userlist)" in result.output
        userlist.write_text(shipped + "carol\n")
        up.inv_ok("up")
        second = password_lines(up)["carol"]
        assert second != first
        assert HubClient(up.url, up.cafile).login("carol", first).status_code == 200  # refused
        assert HubClient(up.url, up.cafile).login("carol", second).status_code == 302
    finally:
        userlist.write_text(shipped)
        up.inv_ok("up")


# --- the base image, quietly ----------------------------------------------------------------------

def test_build_uses_the_base_it_has_without_trying_a_pull(up):
    env_file = up.root / ".env"
    shipped = env_file.read_text()
    try:
        env_file.write_text(shipped + "# a comment: every step runs\n")
        out = up.inv_ok("build").output
    finally:
        env_file.write_text(shipped)
    base_lines = [line for line in out.splitlines() if line.startswith("base image:")]
    assert len(base_lines) == 1 and "jupyterhub-deploy-base:bookworm" in base_lines[0], out
    assert "Pulling" not in out and "cannot pull" not in out, out


def test_build_pull_tries_the_registry_even_with_nothing_changed(up):
    up.inv_ok("up")  # the record of this `inv up` holds: a plain build would stop at one look
    pulled = up.inv_ok("build", "--pull").output
    assert "Pulling base image debian:bookworm-slim..." in pulled, pulled
    assert "nothing changed" not in pulled


# --- one operation at a time ----------------------------------------------------------------------

def start_inv(d, *args):
    env = {**os.environ, **d.env, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *d.program, *args], cwd=d.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def read_until(process, text, deadline_s=300):
    """The lines the process printed up to the first holding `text`."""
    seen = []
    end = time.monotonic() + deadline_s
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return seen
        if time.monotonic() > end:
            break
    raise AssertionError(f"no line with {text!r} within {deadline_s} s; saw:\n{''.join(seen)}")


def test_a_second_operation_is_refused_while_one_runs_and_names_it(up, docker_client):
    userlist = up.root / "userlist"
    shipped = userlist.read_text()
    userlist.write_text(shipped + "dora\n")  # a change: the hub is recreated
    first = start_inv(up, "up")
    try:
        read_until(first, "certificate: kept")
        second = {task: up.inv(task) for task in ("up", "down", "build")}
        rest, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        userlist.write_text(shipped)
    assert first.returncode == 0, rest
    for task, result in second.items():
        assert result.returncode == 1, (task, result.output)
        assert (f"Another operation on deployment {up.project} is running: `inv up` started "
                in result.output), (task, result.output)
        assert f"by process {first.pid} on {os.uname().nodename}" in result.output
        assert "Conflict" not in result.output and "Traceback" not in result.output
    up.inv_ok("up")


def test_a_lock_left_by_a_killed_run_is_found_stale_and_removed(up, docker_client):
    userlist = up.root / "userlist"
    shipped = userlist.read_text()
    userlist.write_text(shipped + "dora\n")  # still changed for the next run: no quick check
    try:
        first = start_inv(up, "up")
        try:
            read_until(first, "certificate: kept")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        result = up.inv_ok("up")
    finally:
        userlist.write_text(shipped)
    assert (f"removed a stale lock on deployment {up.project} (`inv up` started "
            in result.output), result.output
    assert f"process {first.pid} that made it is no longer running" in result.output
    up.inv_ok("up")


# --- two deployments on one engine ---------------------------------------------------------------

def images_in_use(client, d) -> dict:
    """{image name: id} of what the deployment runs: the hub's image, by the name its
    container was made from, and the image it starts user servers from."""
    hub = d.hub_container(client)
    env = dict(line.split("=", 1) for line in hub.attrs["Config"]["Env"])
    names = (hub.attrs["Config"]["Image"], env["DOCKER_NOTEBOOK_IMAGE"])
    return {name: client.images.get(name).id for name in names}


def test_a_second_deployment_builds_its_own_images_and_leaves_the_firsts(up, docker_client,
                                                                          tmp_path_factory):
    import uuid

    from tasks.names import PROJECT_LABEL, label_filter

    ours = images_in_use(docker_client, up)
    project = f"jht{uuid.uuid4().hex[:8]}"
    other = Deployment(root=copy_project(tmp_path_factory.mktemp(project)), project=project,
                       port=free_port(), env={"COMPOSE_PROJECT_NAME": project})
    for folder in ("hub", "notebook"):  # other inputs: other images
        (other.root / folder / "NOTES.txt").write_text("a file the images do not even copy\n")
    try:
        result = other.inv_ok("build")
        print(f"inv build of a second deployment, its own images from BuildKit's cache: "
              f"{result.seconds:.1f} s")
        assert images_in_use(docker_client, up) == ours
        theirs = {service: docker_client.images.get(other.image(service))
                  for service in ("hub", "notebook")}
        assert not {image.id for image in theirs.values()} & set(ours.values())
        assert {image.labels[PROJECT_LABEL] for image in theirs.values()} == {project}
    finally:
        for network in docker_client.networks.list(filters=label_filter(project)):
            network.remove()
        for volume in docker_client.volumes.list(filters=label_filter(project)):
            volume.remove()
        remove_images(docker_client, project)
    assert docker_client.images.list(filters=label_filter(project)) == []
    assert images_in_use(docker_client, up) == ours
    assert "nothing changed since the last `inv up`" in up.inv_ok("up").output



# --- what only unit tests proved before: a certificate of the operator's, a pulled image --------

def test_a_certificate_the_operator_puts_in_secrets_is_what_the_hub_presents(up):
    import ssl
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.example.org")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("hub.example.org")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    secrets = up.root / "secrets"
    saved = {name: (secrets / name).read_bytes() for name in ("jupyterhub.crt", "jupyterhub.key")}
    (secrets / "jupyterhub.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (secrets / "jupyterhub.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    try:
        out = up.inv_ok("up").output
        presented = ssl.get_server_certificate(("127.0.0.1", up.port), timeout=10)
    finally:
        for name, data in saved.items():
            (secrets / name).write_bytes(data)
    assert "certificate: kept (warning: your secrets/jupyterhub.crt" in out, out
    assert ssl.PEM_cert_to_DER_cert(presented) == cert.public_bytes(serialization.Encoding.DER)
    up.inv_ok("up")  # the self-signed pair again


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry on a free loopback port, its storage in a temporary folder:
    the engine pushes and pulls there over plain HTTP (127.0.0.0/8 is an insecure registry
    by default). Yields its host:port."""
    import shutil
    import urllib.request

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: run bin/setup --test")
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    (folder / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'storage'}\nhttp:\n  addr: {address}\n")
    server = subprocess.Popen([binary, "serve", str(folder / "config.yml")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end, last = time.monotonic() + 30, None
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError as error:
                last = error
            if time.monotonic() > end or server.poll() is not None:
                raise AssertionError(f"the registry did not answer on {address} within 30 s; "
                                     f"last: {last!r}")
            time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_notebook_image_named_in_env_is_pulled_from_its_registry_and_spawned(
        up, registry, docker_client):
    from hubclient import HubClient

    name = f"{registry}/jht-notebook:1"
    docker_client.images.get(up.image("notebook")).tag(f"{registry}/jht-notebook", "1")
    for line in docker_client.images.push(f"{registry}/jht-notebook", "1", stream=True,
                                          decode=True):
        assert "error" not in line, line
    docker_client.images.remove(name)  # only the registry has it now
    env = {"DOCKER_NOTEBOOK_IMAGE": name}
    try:
        built = up.inv_ok("build", env=env).output
        up.inv_ok("up", env=env)
        alice = HubClient(up.url, up.cafile)
        assert alice.login("alice", up.password("alice")).status_code == 302
        alice.make_token("alice")
        alice.start_server("alice")
        assert alice.run_code("alice", "3*3") == "9"
        server = docker_client.containers.get(f"{up.project}-user-alice")
        ran = server.attrs["Config"]["Image"]
        alice.stop_server("alice")
    finally:
        up.inv_ok("up")
        docker_client.images.remove(name)
    assert f"Pulling notebook image {name}..." in built
    assert f"image {name}: pulled (" in built, built
    assert ran == name


# --- the hub's data on its own ---------------------------------------------------------------------

def test_backup_hub_alone_holds_a_whole_database_and_the_cookie_secret(up, tmp_path):
    import json
    import sqlite3
    import tarfile

    from deployment_support import backed_up, file_sha256

    result = up.inv_ok("backup", "--hub", "--dir", str(tmp_path))
    [(path, size, digest)] = backed_up(result)
    assert f"backup of the hub's data (volume {up.project}-hub-data):" in result.stdout
    archive = up.root / path  # the path as printed: relative to the project, or absolute
    assert archive.stat().st_size == size and file_sha256(archive) == digest
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("jupyterhub-deploy-backup.json").read())
        (tmp_path / "hub.sqlite").write_bytes(tar.extractfile("data/jupyterhub.sqlite").read())
    assert (meta["kind"], meta["hub_database"]) == ("hub", "online-backup")
    assert "data/jupyterhub_cookie_secret" in names
    assert not [n for n in names if n.endswith(("-journal", "-wal", "-shm"))]
    with sqlite3.connect(tmp_path / "hub.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert {"admin", "alice"} <= {row[0] for row in db.execute("SELECT name FROM users")}
