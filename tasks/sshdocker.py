"""The Docker SDK over a Fabric connection's own SSH session: the engine's API spoken over
channels of the connection the tasks already hold (`docker system dial-stdio` on the
remote host), so host keys are checked once, by our rules (tasks/program.py), and nothing
opens a second connection.

docker-py has no public way to do this. The adapter and the client set-up below rely on
its SSH transport's internals (docker/transport/sshconn.py, docker/api/client.py);
tests/unit/test_sshdocker.py fails, naming what moved, when a docker-py release changes them.
"""
# The API version to start with: given, docker-py asks nothing while the client is made
# (it would ask through its own `ssh` subprocess); the engine's own version replaces it.
START_VERSION = "1.41"


def client_over(c):
    """A Docker SDK client whose requests travel over the Connection `c`'s SSH session."""
    import docker

    from tasks.target import note_step

    c.open()
    client = docker.DockerClient(base_url=f"ssh://{c.host}", use_ssh_client=True,
                                 version=START_VERSION)
    adapter = connection_adapter(c.client, on_request=lambda step: note_step(c, step))
    client.api.mount("http+docker://ssh", adapter)
    client.api._custom_adapter = adapter
    client.api._version = client.api._retrieve_server_version()
    return client


def connection_adapter(ssh_client, on_request=None):
    """docker-py's SSH adapter, on an SSH client that is already connected (the Fabric
    Connection's), and never handing out a channel whose remote end has gone away:
    docker-py's pool skips urllib3's liveness check, and the engine drops idle
    `dial-stdio` streams during a long build. `on_request` hears of each API call."""
    import re
    from urllib.parse import urlsplit

    from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter

    class LivePool(SSHConnectionPool):
        def _get_conn(self, timeout):
            conn = super()._get_conn(timeout)
            channel = getattr(conn, "sock", None)
            if channel is not None and (channel.closed or channel.exit_status_ready()):
                conn.close()
                return self._new_conn()
            return conn

    class ConnectionAdapter(SSHHTTPAdapter):
        def __init__(self):
            super().__init__("ssh://deployment-host", shell_out=True)  # opens nothing itself
            self.ssh_client = ssh_client

        def send(self, request, *args, **kwargs):
            if on_request is not None:
                path = re.sub(r"^/v[0-9.]+/", "/", urlsplit(request.url).path)
                on_request(f"calling the Docker API ({request.method} {path})")
            return super().send(request, *args, **kwargs)

        def get_connection(self, url, proxies=None):
            # One pool for every URL: docker-py keys its pools by the request URL, so each
            # new URL would open (and keep) another channel; sshd allows 10 per connection.
            with self.pools.lock:
                pool = self.pools.get("engine")
                if pool is None:
                    pool = LivePool(ssh_client=self.ssh_client, timeout=self.timeout,
                                    maxsize=self.max_pool_size, host=self.ssh_host)
                    self.pools["engine"] = pool
            return pool

    return ConnectionAdapter()
