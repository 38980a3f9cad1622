"""A certificate from an ACME CA on a host reached with -H: `deploy` checks the name and the
ACME server from that host, the hub there gets its certificate from Pebble (which validates
on the host's published challenge port), and `status` and `cert --renew` work over SSH.

Pebble runs on this machine (tests/integration/acme_support.py), its API on the gateway of
the network the remote host's container is on, which the hub inside reaches through the
remote host; Pebble's DNS says hub.test is the remote host's address, and so does the remote
host's /etc/hosts, so that the name leads there whoever asks. The tests run in file order.
"""
import json

import pytest

from acme_support import HUB_NAME, Pebble, TinyDNS, fingerprint, free_port, served_certificate
from conftest_support import copy_project_for_remote

pytestmark = pytest.mark.remote


@pytest.fixture(scope="module")
def acme_remote(remote_host, tmp_path_factory):
    folder = tmp_path_factory.mktemp("acme-remote")
    d = copy_project_for_remote(tmp_path_factory.mktemp("acme-remote-project"), remote_host)
    network = remote_host.container.attrs["NetworkSettings"]
    address, gateway = network["IPAddress"], network["Gateway"]
    added = remote_host.container.exec_run(["sh", "-c", f"echo '{address} {HUB_NAME}' >> /etc/hosts"])
    assert added.exit_code == 0, added.output
    dns = TinyDNS({HUB_NAME: address})
    http_port = free_port()  # on the remote host, where nothing else listens but sshd and the hub
    pebble = Pebble(folder, gateway, http_port, dns.port)
    pebble.start()
    d.env.update({"ACME_DOMAIN": HUB_NAME, "ACME_EMAIL": "hub-admin@example.org",
                  "ACME_DIRECTORY": pebble.directory, "ACME_CA_BUNDLE": str(pebble.ca_bundle),
                  "HUB_HTTP_PORT": str(http_port)})
    d.pebble, d.http_port, d.folder = pebble, http_port, folder
    yield d
    d.inv("down")
    pebble.stop()
    dns.close()


def test_deploy_over_ssh_serves_a_certificate_from_the_acme_server(acme_remote, remote_host):
    d = acme_remote
    result = d.inv_ok("deploy")
    print(f"deploy with ACME over SSH: {result.seconds:.1f} s; "
          + "; ".join(line for line in result.output.splitlines() if "certificate:" in line))
    assert f"answers at https://{HUB_NAME}:{d.port}/" in result.output
    root = d.folder / "root.pem"
    root.write_bytes(d.pebble.root())
    # The remote host's hub port comes out on 127.0.0.1 here: verified for hub.test.
    cert = served_certificate(d.port, HUB_NAME, root)
    assert cert.issuer.rfc4514_string().startswith("CN=Pebble Intermediate CA")
    assert f"Attempting to validate w/ HTTP: http://{HUB_NAME}:{d.http_port}/" in d.pebble.log()
    # The CA bundle went up with secrets/, private like the rest.
    modes = remote_host.container.exec_run(
        ["stat", "-c", "%a", "jupyterhub-deploy/secrets/acme-ca.pem"], workdir="/root").output
    assert modes.decode().strip() == "600"
    d.served = fingerprint(cert)
    d.root_pem = root


def test_status_and_renew_over_ssh(acme_remote, remote_host):
    d = acme_remote
    report = json.loads(d.inv_ok("status", "--json").stdout)["certificate"]
    assert report["source"] == "acme" and report["fits"] and report["sha256"] == d.served
    result = d.inv_ok("cert", "--renew")
    assert "certificate: renewed just now" in result.output, result.output
    renewed = fingerprint(served_certificate(d.port, HUB_NAME, d.root_pem))
    assert renewed != d.served
    # The quick check pinned the certificate before: one deploy takes every step (and
    # restarts nothing), pins the new one, and the next is a quick no-op again.
    hub = remote_host.docker("ps", "--filter", "name=hub", "--format", "{{.ID}} {{.Status}}").stdout
    assert "checking every step" in d.inv_ok("deploy").output
    assert remote_host.docker("ps", "--filter", "name=hub", "--format", "{{.ID}}").stdout.split()[0] \
        == hub.split()[0]
    again = d.inv_ok("deploy").output
    assert "nothing changed since the last `inv up`" in again and "checking every step" not in again
    assert fingerprint(served_certificate(d.port, HUB_NAME, d.root_pem)) == renewed
