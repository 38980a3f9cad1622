"""`inv build up` end to end on the real engine: HTTPS, login, a kernel, persistence across
down/up and hub restarts, idempotence, and bad input refused before anything changes.

The tests share one deployment and run in file order, each building on the one before.
"""
import hashlib
import io
import json
import socket
import stat
import tarfile
import time

import docker
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from datetime import datetime, timedelta, timezone

from hubclient import HubClient

pytestmark = pytest.mark.integration


def containers_by_role(client, d, role):
    return [
        ct for ct in d.labelled(client, "containers")
        if ct.labels.get("org.jupyterhub-deploy.role") == role
    ]


def running_state(client, d):
    """What must not change when nothing should: containers (id, start time), images, volumes."""
    containers = sorted(
        (ct.name, ct.id, ct.status, ct.attrs["State"]["StartedAt"])
        for ct in d.labelled(client, "containers")
    )
    images = sorted(client.images.get(d.image(service)).id for service in ("hub", "notebook"))
    volumes = sorted(v.name for v in d.labelled(client, "volumes"))
    networks = sorted(n.id for n in d.labelled(client, "networks"))
    secrets = {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted((d.root / "secrets").iterdir())
    }
    return {"containers": containers, "images": images, "volumes": volumes,
            "networks": networks, "secrets": secrets}


def wait_for_api(d, deadline_s=90):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            response = requests.get(f"{d.url}/hub/api", verify=d.cafile, timeout=5)
            if response.status_code == 200:
                return response.json()
            last = response.status_code
        except requests.RequestException as error:
            last = error
        time.sleep(0.25)
    raise AssertionError(f"hub API did not answer 200 within {deadline_s} s; last: {last}")


@pytest.fixture(scope="module")
def admin(deployment):
    """The admin's browser session after `inv build up`, logged in through the form."""
    return HubClient(deployment.url, deployment.cafile)


def test_build_up_from_clean_serves_https_with_generated_cert(deployment, docker_client):
    assert deployment.labelled(docker_client, "containers") == []
    result = deployment.inv_ok("build", "up")
    print(f"inv build up: {result.seconds:.1f} s")
    # Verified against the generated certificate, not with verification off.
    response = requests.get(f"{deployment.url}/hub/api", verify=deployment.cafile, timeout=10)
    assert response.status_code == 200
    assert response.json()["version"] == "6.1.1"
    key = deployment.root / "secrets" / "jupyterhub.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    passwords = deployment.root / "secrets" / "initial-passwords"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    # The certificate is mounted, never baked in; the build's CA bundle left no trace.
    probe = docker_client.containers.create(deployment.image("hub"), labels={
        "org.jupyterhub-deploy.project": deployment.project})
    try:
        stream, _ = probe.get_archive("/srv/jupyterhub")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            names = sorted(tar.getnames())
        # Only the hub's own Python files: no certificate, key, password or OAuth file.
        assert "jupyterhub/jupyterhub_config.py" in names
        assert all(n == "jupyterhub" or n.endswith(".py") for n in names), names
        with pytest.raises(docker.errors.NotFound):
            probe.get_archive("/run/secrets/build_ca")
    finally:
        probe.remove()


def test_admin_logs_in_starts_server_and_runs_code(deployment, admin):
    response = admin.login("admin", "not-the-password")
    assert response.status_code == 200 and "Invalid username or password" in response.text
    response = admin.login("admin", deployment.password("admin"))
    assert response.status_code == 302, response.text[:500]
    admin.make_token("admin")
    server = admin.start_server("admin")
    assert server["ready"]
    assert admin.run_code("admin", "5*4") == "20"
    # The browser's way in: JupyterLab opens through the hub's OAuth handshake.
    lab = admin.browse("/user/admin/lab?reset")
    assert lab.status_code == 200 and lab.url.endswith("/user/admin/lab?reset"), lab.url


def test_a_stranger_cannot_sign_up_or_log_in(deployment, admin):
    stranger = HubClient(deployment.url, deployment.cafile)
    assert stranger.login("mallory", "a-long-password-123").status_code == 200
    assert stranger.browse("/hub/signup").status_code == 404  # sign-up is off
    # With the form's XSRF token, so that only a missing page can refuse it: no second way in
    # for an admin name.
    xsrf = stranger.session.cookies.get("_xsrf", path="/hub/")
    signup = stranger.session.post(f"{deployment.url}/hub/signup", verify=deployment.cafile,
                                   data={"username": "admin", "signup_password": "x" * 20,
                                         "_xsrf": xsrf})
    assert signup.status_code == 404
    # alice is in userlist but has not logged in: her account exists only with her password.
    assert stranger.login("alice", "guessed-password-1").status_code == 200


def test_work_survives_down_and_up(deployment, admin, docker_client):
    admin.put_file("admin", "notes.txt", "written before down")
    deployment.inv_ok("down")
    assert deployment.labelled(docker_client, "containers") == []
    volumes = {v.name for v in deployment.labelled(docker_client, "volumes")}
    assert f"{deployment.project}-user-admin" in volumes
    deployment.inv_ok("up")
    admin.start_server("admin")
    assert admin.get_file("admin", "notes.txt") == "written before down"
    # Files are the user's (uid 1000), not root's, on the volume.
    server = containers_by_role(docker_client, deployment, "user-server")[0]
    owner = server.exec_run(["stat", "-c", "%u", "/home/jovyan/work/notes.txt"]).output.strip()
    assert owner == b"1000"


def test_hub_restart_keeps_user_server_and_session(deployment, admin, docker_client):
    # The browser opens JupyterLab (the OAuth handshake gives it the server's cookie).
    assert admin.browse("/user/admin/lab").status_code == 200
    assert admin.browse("/user/admin/api/status").status_code == 200
    server_before = containers_by_role(docker_client, deployment, "user-server")[0]
    hub = containers_by_role(docker_client, deployment, "hub")[0]
    hub.restart(timeout=20)
    wait_for_api(deployment)
    server_after = containers_by_role(docker_client, deployment, "user-server")[0]
    assert server_after.id == server_before.id
    assert server_after.status == "running"
    assert server_after.attrs["State"]["StartedAt"] == server_before.attrs["State"]["StartedAt"]
    # No new login: the browser's cookies still work, for the hub and for the server.
    me = admin.session.get(f"{deployment.url}/hub/api/user", verify=deployment.cafile,
                           headers={"X-XSRFToken": admin.session.cookies.get("_xsrf", path="/hub/")})
    assert me.status_code == 200 and me.json()["name"] == "admin"
    status = admin.browse("/user/admin/api/status")
    assert status.status_code == 200 and "last_activity" in status.json()


def wait_healthy(container, deadline_s=60):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        container.reload()
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{container.name} not healthy within {deadline_s} s")


def test_second_build_up_changes_nothing(deployment, docker_client):
    # The test before restarted the hub: until its next health check it is "starting", and
    # `inv` would rightly take every step then.
    wait_healthy(containers_by_role(docker_client, deployment, "hub")[0])
    before = running_state(docker_client, deployment)
    result = deployment.inv_ok("build", "up")
    after = running_state(docker_client, deployment)
    assert after == before
    out = result.output
    # The record of the last `inv up` still describes everything: no step had work to do.
    assert "nothing changed since the last `inv up`" in out
    assert f"image {deployment.image('hub')}: unchanged" in out
    assert f"image {deployment.image('notebook')}: unchanged" in out
    assert f"answers at https://" in out
    assert "Recreate" not in out and "checking every step" not in out
    print(f"no-op inv build up: {result.seconds:.1f} s")


def test_the_quick_check_reads_the_engine_as_the_sdk_does(deployment, docker_client):
    """quick.engine_json asks the engine's socket without the Docker SDK: the real engine
    must answer it exactly as it answers the SDK, and a missing object reads as {}."""
    from invoke import Context

    from tasks.quick import engine_json

    hub = deployment.hub_container(docker_client)
    image = docker_client.images.get(deployment.image("hub"))
    container, found, missing = engine_json(Context(), [
        f"/containers/{hub.id}/json", f"/images/{deployment.image('hub')}/json",
        "/containers/no-such-container-here/json"])
    sdk = docker_client.api.inspect_container(hub.id)
    assert container["Id"] == hub.id
    assert (container["Image"], container["Config"]["Labels"]) == (sdk["Image"], sdk["Config"]["Labels"])
    assert container["State"]["Running"] is True and "Health" in container["State"]
    assert found["Id"] == image.id
    assert missing == {}


def test_a_changed_input_takes_every_step_again(deployment, docker_client):
    env_file = deployment.root / ".env"
    saved = env_file.read_text()
    before = running_state(docker_client, deployment)
    try:
        env_file.write_text(saved + "# a comment changes no setting\n")
        out = deployment.inv_ok("build", "up").output
    finally:
        env_file.write_text(saved)
    assert "inputs changed; checking every step" in out
    assert "certificate: kept" in out and f"network {deployment.project}-network: exists" in out
    # Neither image's inputs changed: no build at all, not even one answered from the cache.
    assert f"image {deployment.image('hub')}: unchanged" in out and "Built" not in out
    assert out.count("and its base as it was built from") == 2
    assert running_state(docker_client, deployment) == before  # a comment recreates nothing
    out = deployment.inv_ok("build", "up").output  # .env is back as it was: once more in full
    assert "inputs changed; checking every step" in out
    assert "nothing changed since" in deployment.inv_ok("up").output


def test_a_changed_hub_folder_rebuilds_the_hub_and_keeps_user_servers(deployment, admin, docker_client):
    assert admin.browse("/user/admin/api/status").status_code == 200  # the server runs
    server = containers_by_role(docker_client, deployment, "user-server")[0]
    hub_before = containers_by_role(docker_client, deployment, "hub")[0]
    note = deployment.root / "hub" / "NOTES.txt"
    note.write_text("a file in hub/ that the image does not even copy\n")
    try:
        out = deployment.inv_ok("build", "up").output
    finally:
        note.unlink()
    assert f"image {deployment.image('hub')}: rebuilt" in out
    assert f"image {deployment.image('notebook')}: unchanged" in out
    hub_after = containers_by_role(docker_client, deployment, "hub")[0]
    assert hub_after.id != hub_before.id  # recreated from the new image
    server.reload()
    assert server.status == "running"
    assert containers_by_role(docker_client, deployment, "user-server")[0].id == server.id
    deployment.inv_ok("build", "up")  # back to the image of the files as shipped


def test_a_hub_that_does_not_answer_as_recorded_takes_every_step(deployment):
    record = deployment.root / ".state" / "applied.json"
    data = json.loads(record.read_text())
    data["cert_sha256"] = "0" * 64  # as if the hub now served another certificate
    record.write_text(json.dumps(data))
    out = deployment.inv_ok("up").output
    assert "the hub does not answer as the last `inv up` left it" in out
    assert "another certificate" in out and "checking every step" in out and "answers at" in out
    assert json.loads(record.read_text())["cert_sha256"] == hashlib.sha256(
        x509.load_pem_x509_certificate(deployment.root.joinpath("secrets", "jupyterhub.crt").read_bytes())
        .public_bytes(serialization.Encoding.DER)).hexdigest()


def test_a_stopped_hub_is_started_again(deployment, docker_client):
    hub = containers_by_role(docker_client, deployment, "hub")[0]
    hub.stop(timeout=20)
    out = deployment.inv_ok("build", "up").output
    assert "the hub container is exited; checking every step" in out
    hub.reload()
    assert hub.status == "running"
    wait_for_api(deployment)
    assert "nothing changed since" in deployment.inv_ok("up").output


def _user_cert(key, name="hub.example.org"):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _edit(path, text):
    def apply(d):
        (d.root / path).write_text(text(d, (d.root / path).read_text()))
    return apply


def _secrets(cert_pem, key_pem):
    def apply(d):
        (d.root / "secrets" / "jupyterhub.crt").write_bytes(cert_pem)
        (d.root / "secrets" / "jupyterhub.key").write_bytes(key_pem)
    return apply


_key_a, _key_b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

BAD_INPUTS = {
    "userlist-uppercase": (_edit("userlist", lambda d, t: t + "Bob\n"), {},
                           ["userlist:3", "'Bob'", "lowercase"]),
    "userlist-unknown-role": (_edit("userlist", lambda d, t: t + "carol teacher\n"), {},
                              ["userlist:3", "unknown role 'teacher'"]),
    "userlist-duplicate": (_edit("userlist", lambda d, t: t + "alice\n"), {},
                           ["userlist:3", "alice is listed twice (first on line 2)"]),
    "userlist-hostile-name": (_edit("userlist", lambda d, t: t + "$(id)\n"), {},
                              ["userlist:3", "not a valid user name"]),
    "env-missing-key": (_edit(".env", lambda d, t: t.replace("BASE_IMAGE=", "#BASE_IMAGE=")), {},
                        ["Missing in .env: BASE_IMAGE"]),
    "env-bad-project": (None, {"COMPOSE_PROJECT_NAME": "Bad Name"},
                        ["COMPOSE_PROJECT_NAME='Bad Name'"]),
    "cert-key-mismatch": (_secrets(_user_cert(_key_a), _pem_key(_key_b)), {},
                          ["secrets/jupyterhub.key does not match secrets/jupyterhub.crt"]),
    "cert-unreadable": (_secrets(b"not a certificate\n", _pem_key(_key_a)), {},
                        ["secrets/jupyterhub.crt cannot be read as a PEM certificate"]),
    "no-engine": (None, {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
                  ["Cannot reach the Docker Engine", "bin/setup"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_before_anything_changes(case, deployment, docker_client):
    mutate, env, expected = BAD_INPUTS[case]
    saved = {p: p.read_bytes() for p in [deployment.root / "userlist", deployment.root / ".env",
                                         *(deployment.root / "secrets").iterdir()]}
    try:
        if mutate:
            mutate(deployment)
        before = running_state(docker_client, deployment)
        record = (deployment.root / ".state" / "applied.json").read_bytes()
        result = deployment.inv("build", "up", env=env)
        assert result.returncode != 0
        for text in expected:
            assert text in result.output, result.output
        assert "Traceback" not in result.output
        assert running_state(docker_client, deployment) == before
        assert (deployment.root / ".state" / "applied.json").read_bytes() == record
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_port_in_use_is_refused_before_anything_changes(deployment, docker_client):
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        before = running_state(docker_client, deployment)
        result = deployment.inv("up", env={"HUB_PORT": str(port)})
        assert result.returncode != 0
        assert f"Port {port} is already in use" in result.output and "HUB_PORT" in result.output
        assert running_state(docker_client, deployment) == before
