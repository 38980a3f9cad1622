"""tasks/sshdocker.py speaks the Docker API over the SSH session a Fabric Connection already
holds. docker-py has no public way to do that, so the adapter leans on its SSH transport's
internals; each test here names those it relies on, so that a docker-py release that moves
one fails here, loudly, rather than in a deploy over SSH."""
import inspect

import docker
import pytest
import urllib3
from docker.api.client import APIClient
from docker.transport import sshconn

from tasks import sshdocker


class FakeChannel:
    """What docker-py and the adapter use of a paramiko Channel."""

    def __init__(self):
        self.closed, self.exited, self.commands = False, False, []

    def settimeout(self, timeout):
        pass

    def exec_command(self, command):
        self.commands.append(command)

    def exit_status_ready(self):
        return self.exited

    def close(self):
        self.closed = True


class FakeSSHClient:
    """A connected paramiko SSHClient, as far as docker-py's pool asks: its transport."""

    def __init__(self):
        self.channels = []

    def get_transport(self):
        return self

    def open_session(self):
        self.channels.append(FakeChannel())
        return self.channels[-1]


def parameters(function) -> list:
    return list(inspect.signature(function).parameters)


def test_the_pool_it_extends_has_the_methods_it_overrides_and_calls():
    pool = sshconn.SSHConnectionPool
    assert issubclass(pool, urllib3.connectionpool.HTTPConnectionPool)
    assert "_get_conn" in vars(pool) and parameters(pool._get_conn) == ["self", "timeout"]
    assert "_new_conn" in vars(pool) and parameters(pool._new_conn) == ["self"]
    assert {"ssh_client", "timeout", "maxsize", "host"} <= set(parameters(pool.__init__))


def test_the_adapter_it_extends_opens_nothing_and_has_what_it_reads():
    adapter_class = sshconn.SSHHTTPAdapter
    assert "shell_out" in parameters(adapter_class.__init__)
    assert parameters(adapter_class.get_connection) == ["self", "url", "proxies"]
    adapter = adapter_class("ssh://deployment-host", shell_out=True)
    assert adapter.ssh_client is None  # shell_out: no paramiko client of its own
    assert adapter.ssh_host == "deployment-host"
    assert isinstance(adapter.max_pool_size, int) and adapter.timeout
    with adapter.pools.lock:
        assert adapter.pools.get("engine") is None


def test_one_pool_for_every_url_on_the_connections_own_ssh_session():
    ssh = FakeSSHClient()
    adapter = sshdocker.connection_adapter(ssh)
    assert isinstance(adapter, sshconn.SSHHTTPAdapter) and adapter.ssh_client is ssh
    pool = adapter.get_connection("http+docker://ssh/v1.41/info")
    assert adapter.get_connection("http+docker://ssh/v1.41/containers/json") is pool
    conn = pool._get_conn(timeout=1)
    conn.connect()
    assert ssh.channels and ssh.channels[0].commands == ["docker system dial-stdio"]
    assert conn.sock is ssh.channels[0]


@pytest.mark.parametrize("gone", ["closed", "exited"])
def test_a_channel_whose_remote_end_has_gone_is_never_handed_out(gone):
    ssh = FakeSSHClient()
    pool = sshdocker.connection_adapter(ssh).get_connection("http+docker://ssh/v1.41/info")
    conn = pool._get_conn(timeout=1)
    conn.connect()
    pool._put_conn(conn)
    setattr(ssh.channels[0], gone, True)
    again = pool._get_conn(timeout=1)
    assert again is not conn and ssh.channels[0].closed
    kept = pool._get_conn(timeout=1)
    kept.connect()
    pool._put_conn(kept)
    assert pool._get_conn(timeout=1) is kept  # a live one is kept


def test_the_client_is_made_with_the_attributes_it_sets(monkeypatch):
    class Connection:
        host, client, opened = "deployment-host", FakeSSHClient(), False

        def open(self):
            self.opened = True

    assert callable(APIClient._retrieve_server_version)
    monkeypatch.setattr(APIClient, "_retrieve_server_version", lambda self: "1.43")
    c = Connection()
    client = sshdocker.client_over(c)
    api = client.api
    assert c.opened and isinstance(client, docker.DockerClient)
    assert isinstance(api._custom_adapter, sshconn.SSHHTTPAdapter)
    assert api._custom_adapter.ssh_client is c.client
    assert api.get_adapter("http+docker://ssh/v1.43/info") is api._custom_adapter  # mounted
    assert api._version == api.api_version == "1.43"
