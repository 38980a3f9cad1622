"""A certificate from an ACME CA, end to end on the real engine, against Pebble (a private
ACME server with its own CA, acme_support.py) that validates the HTTP-01 challenge for real
on the hub's published port: bad settings refused before anything changes; issuance on
`inv up`; the answer verified against Pebble's CA; `inv cert`, `inv status` and the backup;
a restart that keeps account and certificate; a failed renewal that keeps the certificate and
says so; a short-lived certificate renewed by itself while a user's kernel keeps its state.

The tests share one deployment of the hub name hub.test and run in file order, each
building on the one before.
"""
import io
import json
import shutil
import socket
import stat
import tarfile
import time
import uuid

import pytest
import requests

from acme_support import (HUB_NAME, Pebble, TinyDNS, fingerprint, free_port, hosts_view,
                          served_certificate)
from browser import wait_until
from deployment_support import engine_state
from hubclient import HubClient

from tasks.names import labels

pytestmark = pytest.mark.integration

ELSEWHERE = "elsewhere.test"  # resolves, but to an address that is not this machine's
SHORT_LIFE_S = 60  # renewed by itself at two thirds: 40 s after it is issued


@pytest.fixture(scope="module")
def deployment(deployment, docker_client, tmp_path_factory):
    """conftest's deployment with ACME on against a Pebble of its own; `inv` runs where
    /etc/hosts says hub.test is 127.0.0.1 (Pebble's DNS says so too)."""
    if not shutil.which("pebble") or not shutil.which("unshare"):
        pytest.fail("the ACME tests need Debian's pebble and unshare: run bin/setup --test")
    folder = tmp_path_factory.mktemp("acme")
    # Pebble's API listens on the deployment network's gateway, this machine's address on the
    # network the hub is on: the network comes first (inv finds it there, labelled).
    network = docker_client.networks.create(f"{deployment.project}-network", driver="bridge",
                                            labels=labels(deployment.project, "network"))
    network.reload()
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    dns = TinyDNS({HUB_NAME: "127.0.0.1"})
    http_port = free_port()
    pebble = Pebble(folder, gateway, http_port, dns.port)
    deployment.program = hosts_view(folder, {HUB_NAME: "127.0.0.1", ELSEWHERE: "10.255.0.9"})
    deployment.env.update({
        "ACME_DOMAIN": HUB_NAME, "ACME_EMAIL": "hub-admin@example.org",
        "ACME_DIRECTORY": pebble.directory, "ACME_CA_BUNDLE": str(pebble.ca_bundle),
        "HUB_HTTP_PORT": str(http_port)})
    deployment.pebble, deployment.dns, deployment.folder = pebble, dns, folder
    deployment.http_port = http_port
    yield deployment
    pebble.stop()
    dns.close()
    print(f"\n----- pebble's log (tail)\n{pebble.log()[-4000:]}")


@pytest.fixture(scope="module")
def hub_name_here():
    """hub.test -> 127.0.0.1 for this process's own requests and websockets, so that they
    check the certificate against the name it is for."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host == HUB_NAME else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield
    socket.getaddrinfo = real


def hub_log(d, client, since=None) -> str:
    return d.hub_container(client).logs(since=since).decode(errors="replace")


def volume_file(d, client, path: str) -> tuple:
    """(bytes, mode) of a file in the hub's data volume, through the engine."""
    stream, _ = d.hub_container(client).get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        return tar.extractfile(member).read(), stat.S_IMODE(member.mode)


# --- refused before anything changes --------------------------------------------------------------

@pytest.mark.parametrize("setting, says", [
    ({"ACME_EMAIL": ""}, "ACME_EMAIL is empty"),
    ({"ACME_DOMAIN": "hub..test"}, "ACME_DOMAIN='hub..test' is not a DNS name"),
    ({"ACME_DOMAIN": "*.hub.test"}, "ACME_DOMAIN='*.hub.test' is not a DNS name"),
    ({"ACME_DIRECTORY": "http://127.0.0.1:14000/dir"}, "ACME_DIRECTORY='http://127.0.0.1:14000/dir' must be"),
    ({"ACME_DOMAIN": "nowhere.test"}, "ACME_DOMAIN=nowhere.test does not resolve on this machine"),
    ({"ACME_DOMAIN": ELSEWHERE}, f"ACME_DOMAIN={ELSEWHERE} resolves to 10.255.0.9, which is not this machine"),
    ({"ACME_CA_BUNDLE": "/nonexistent/ca.pem"}, "ACME_CA_BUNDLE='/nonexistent/ca.pem' cannot be read"),
])
def test_a_bad_setting_is_refused_naming_it_before_anything_changes(deployment, docker_client,
                                                                      setting, says):
    before = engine_state(docker_client, deployment)
    result = deployment.inv("up", env=setting)
    assert result.returncode == 1, result.output
    assert says in result.output, result.output
    assert engine_state(docker_client, deployment) == before
    assert not (deployment.root / "secrets" / "jupyterhub.crt").exists()


def test_an_acme_server_that_does_not_answer_is_refused_before_anything_changes(
        deployment, docker_client):
    before = engine_state(docker_client, deployment)  # Pebble has not started yet
    result = deployment.inv("up")
    assert result.returncode == 1, result.output
    assert f"The ACME server cannot be reached from this machine: {deployment.pebble.directory}" \
        in result.output, result.output
    assert engine_state(docker_client, deployment) == before


def test_a_challenge_port_in_use_is_refused_naming_its_setting(deployment, docker_client):
    before = engine_state(docker_client, deployment)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", deployment.http_port))
        taken.listen()
        result = deployment.inv("up")
    assert result.returncode == 1, result.output
    assert (f"Port {deployment.http_port} is already in use by another program. Stop it, or set "
            "HUB_HTTP_PORT in .env to a free port.") in result.output, result.output
    assert engine_state(docker_client, deployment) == before


# --- issuance -------------------------------------------------------------------------------------

def test_up_serves_a_certificate_from_the_acme_server(deployment, docker_client):
    deployment.pebble.start()
    deployment.inv_ok("build")
    result = deployment.inv_ok("up")
    print(f"inv up with the first certificate: {result.seconds:.1f} s; "
          + "; ".join(line for line in result.output.splitlines() if "certificate:" in line))
    assert f"certificate: from {deployment.pebble.directory.split('/')[2]} for {HUB_NAME}" \
        in result.output, result.output
    assert f"answers at https://{HUB_NAME}:{deployment.port}/" in result.output
    root = deployment.folder / "pebble-root-1.pem"
    root.write_bytes(deployment.pebble.root())
    # Verified against Pebble's CA, for the name, as a browser would.
    cert = served_certificate(deployment.port, HUB_NAME, root)
    assert cert.issuer.rfc4514_string().startswith("CN=Pebble Intermediate CA")
    # Pebble fetched the answer from the hub's published port, having looked the name up.
    assert f"Attempting to validate w/ HTTP: http://{HUB_NAME}:{deployment.http_port}/" \
        in deployment.pebble.log()
    assert (HUB_NAME, 1) in deployment.dns.questions
    assert "answered" in hub_log(deployment, docker_client)
    deployment.served = fingerprint(cert)
    deployment.root_pem = root


def test_the_account_key_and_certificate_stay_in_the_data_volume_only(deployment, docker_client):
    hub = deployment.hub_container(docker_client)
    for name in ("account.key", "current.pem", "account.json", "status.json"):
        _, mode = volume_file(deployment, docker_client, f"/data/acme/{name}")
        assert mode == 0o600, name
    listing = hub.exec_run(["stat", "-c", "%a", "/data/acme"]).output.decode().strip()
    assert listing == "700"
    assert not any("PRIVATE KEY" in item for item in hub.attrs["Config"]["Env"])
    probe = docker_client.containers.create(hub.image.id, command=["true"], labels=labels(
        deployment.project, "test"))
    try:
        with pytest.raises(Exception):
            probe.get_archive("/data/acme")  # the image has none: only the volume holds them
    finally:
        probe.remove()
    assert not (deployment.root / "secrets" / "current.pem").exists()


def test_plain_http_is_sent_to_https(deployment):
    response = requests.get(f"http://127.0.0.1:{deployment.http_port}/hub/login?next=x",
                            allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{HUB_NAME}:{deployment.port}/hub/login?next=x"


def test_cert_and_status_say_where_the_certificate_came_from(deployment):
    source = deployment.pebble.directory.split("/")[2]
    cert = deployment.inv_ok("cert").output
    assert f"certificate: from {source} (issuer Pebble Intermediate CA" in cert, cert
    assert "renewed from" in cert
    status = deployment.inv_ok("status").output
    assert f"certificate: from {source} (issuer Pebble Intermediate CA" in status, status
    report = json.loads(deployment.inv_ok("status", "--json").stdout)["certificate"]
    assert report["source"] == "acme" and report["fits"] and report["last_error"] is None
    assert report["sha256"] == deployment.served and report["names"] == [HUB_NAME]
    assert "nothing changed since the last `inv up`" in deployment.inv_ok("up").output


def test_backup_of_the_hub_holds_the_account_and_certificate(deployment, tmp_path):
    deployment.inv_ok("backup", "--hub", "--dir", str(tmp_path))
    archive = next(tmp_path.glob("*.tar"))
    with tarfile.open(archive) as tar:
        modes = {m.name: stat.S_IMODE(m.mode) for m in tar.getmembers()}
    assert modes["data/acme"] == 0o700
    assert modes["data/acme/account.key"] == 0o600 and modes["data/acme/current.pem"] == 0o600


# --- a restart, a failure -------------------------------------------------------------------------

def test_a_restart_keeps_the_account_and_certificate(deployment, docker_client):
    account, _ = volume_file(deployment, docker_client, "/data/acme/account.json")
    issued, accounts = deployment.pebble.issued(), deployment.pebble.log().count("POST /sign-me-up")
    deployment.inv_ok("down")
    deployment.inv_ok("up")
    assert fingerprint(served_certificate(deployment.port, HUB_NAME, deployment.root_pem)) \
        == deployment.served
    assert volume_file(deployment, docker_client, "/data/acme/account.json")[0] == account
    assert deployment.pebble.issued() == issued
    assert deployment.pebble.log().count("POST /sign-me-up") == accounts


def test_a_failed_renewal_keeps_the_certificate_and_says_so(deployment, docker_client):
    deployment.pebble.stop()
    pem_before, _ = volume_file(deployment, docker_client, "/data/acme/current.pem")
    result = deployment.inv("cert", "--renew")
    assert result.returncode == 1, result.output
    assert "renewal failed" in result.output and "cannot be reached" in result.output, result.output
    assert "keeps serving the certificate valid until" in result.output
    # Still served, still valid for its name against its CA, and the file is as it was.
    assert fingerprint(served_certificate(deployment.port, HUB_NAME, deployment.root_pem)) \
        == deployment.served
    assert volume_file(deployment, docker_client, "/data/acme/current.pem")[0] == pem_before
    status = deployment.inv_ok("status")  # the hub is up: a failed renewal is said, not fatal
    assert "certificate: the last attempt failed" in status.output, status.output
    assert "cannot be reached" in status.output
    report = json.loads(deployment.inv_ok("status", "--json").stdout)["certificate"]
    assert report["failures"] == 1 and report["last_error"]["kind"] == "unreachable"
    assert "attempt 1 failed, next in 60 s" in hub_log(deployment, docker_client)
    # Asked again at once: tried, failed, and the wait before the next try doubles.
    assert deployment.inv("cert", "--renew").returncode == 1
    assert "attempt 2 failed, next in 2 min" in hub_log(deployment, docker_client)


# --- renewal by itself ----------------------------------------------------------------------------

def test_a_short_lived_certificate_is_renewed_by_itself_while_a_kernel_keeps_its_state(
        deployment, docker_client, hub_name_here):
    d = deployment
    # A new Pebble: a new CA that knows no account, and certificates valid for a minute.
    d.pebble.start(validity_s=SHORT_LIFE_S)
    root = d.folder / "pebble-root-2.pem"
    root.write_bytes(d.pebble.root())
    result = d.inv_ok("cert", "--renew")
    assert "certificate: renewed just now" in result.output, result.output
    first = fingerprint(served_certificate(d.port, HUB_NAME, root))
    assert "registering it again" in hub_log(d, docker_client)  # the new CA forgot the account

    admin = HubClient(f"https://{HUB_NAME}:{d.port}", str(root))
    assert admin.login("admin", d.password("admin")).status_code == 302
    admin.make_token("admin")
    admin.start_server("admin")
    kernel = admin.start_kernel("admin")
    hub_before = d.hub_container(docker_client).attrs["State"]["StartedAt"]
    server = next(ct for ct in d.labelled(docker_client, "containers")
                  if ct.labels.get("org.jupyterhub-deploy.role") == "user-server")
    # One websocket, opened under the first certificate, kept open across the renewal.
    ws = admin._channels("admin", kernel, 30)
    try:
        def run(code):
            msg_id = uuid.uuid4().hex
            started = time.monotonic()
            ws.send(json.dumps(admin._execute_request("admin", msg_id, code)))
            while True:
                message = json.loads(ws.recv())
                if message.get("parent_header", {}).get("msg_id") == msg_id \
                        and message["msg_type"] == "execute_result":
                    return message["content"]["data"]["text/plain"], time.monotonic() - started

        ws.settimeout(30)
        assert run("x = 42; x")[0] == "42"
        slowest, count, renewed_at = 0.0, 0, None
        end = time.monotonic() + SHORT_LIFE_S + 30
        while time.monotonic() < end:
            value, took = run("x += 1; x")
            count += 1
            slowest = max(slowest, took)
            assert value == str(42 + count)
            if renewed_at is None and fingerprint(served_certificate(d.port, HUB_NAME, root)) != first:
                renewed_at = time.monotonic()
                end = min(end, renewed_at + 5)  # a few more round trips after the swap
            time.sleep(0.5)
        assert renewed_at is not None, f"no renewal within {SHORT_LIFE_S + 30} s"
        print(f"kernel round trips over one websocket across the renewal: {count}, slowest "
              f"{slowest * 1000:.0f} ms")
        assert slowest < 2.0
    finally:
        ws.close()
    # Nothing restarted: the hub, the user's server, and the kernel's state.
    assert d.hub_container(docker_client).attrs["State"]["StartedAt"] == hub_before
    server.reload()
    assert server.status == "running"
    assert admin.execute("admin", kernel, "x") == str(42 + count)
    log = hub_log(d, docker_client)
    assert "(renewal)" in log and "tls: serving the certificate in /data/acme/current.pem" in log
    took = [line for line in log.splitlines() if "certificate for hub.test from" in line][-1]
    print(f"the service's last renewal: {took.split('] ', 1)[-1]}")
    wait_until(lambda: json.loads(d.inv_ok("status", "--json").stdout)["certificate"]["fits"],
               "inv status to report the renewed certificate")
